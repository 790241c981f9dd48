"""The Train tab: the form, a real tiny training run in a child process, stop, crash, resume."""

from __future__ import annotations

import math

import pytest
from textual.widgets import Input, Static

from minigpt_tui.core.config import RunConfig
from minigpt_tui.core.data.corpus import PREFIX_BYTES
from minigpt_tui.core.runs import events as ev
from minigpt_tui.tui.app import MiniGPTApp
from minigpt_tui.tui.formatting import fmt_duration
from minigpt_tui.tui.palette import colour
from minigpt_tui.tui.train.form import check_form, describe_corpus
from minigpt_tui.tui.train.process import TrainerProcess
from minigpt_tui.tui.train.form import EXTRA, FORM_KEYS, config_value, field_id, format_value

from kit import make_fake_run
from tui_helpers import wait_for


def fill(app, **fields) -> None:
    """Set form fields by config key (train__max_steps=...) or 'extra'."""
    for key, value in fields.items():
        widget_id = "f-extra" if key == "extra" else "f-" + key.replace("__", "-").replace("_", "-")
        app.query_one("#" + widget_id, Input).value = str(value)


def tiny_form(app, corpus, max_steps=100_000) -> None:
    fill(app, data__path=corpus, model__n_layer=1, model__n_head=2, model__n_embd=16, model__context_length=16,
         train__max_steps=max_steps, train__batch_size=4, train__eval_interval=5, train__device="cpu",
         extra="train.log_interval=1 train.sample_tokens=10 train.eval_batches=1 train.warmup_steps=2 "
               "train.threads=1")


async def test_form_errors_show_next_to_the_field_and_block_start():
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        fill(app, train__max_steps=0)
        await pilot.pause()
        error = app.query_one("#f-train-max-steps-error", Static)
        assert error.display and "train.max_steps must be an integer >= 1, got 0." in str(error.render())
        fill(app, train__max_steps="lots")
        await pilot.pause()
        assert "train.max_steps must be an integer" in str(error.render())
        await pilot.press("s")
        assert not app.train.training
        assert any("train.max_steps" in n.message for n in app._notifications)
        fill(app, train__max_steps=200)
        await pilot.pause()
        assert not error.display and app.train.config is not None
        # A cross-field rule is reported at the field it names.
        fill(app, model__n_embd=18)
        await pilot.pause()
        head_error = app.query_one("#f-model-n-head-error", Static)
        assert head_error.display and "model.n_head must be a divisor of model.n_embd (18)" in str(head_error.render())
        fill(app, model__n_embd=128, extra="train.bogus=1")
        await pilot.pause()
        assert "Unknown config key train.bogus" in str(app.query_one("#f-extra-error", Static).render())


async def test_corpus_path_is_checked_as_you_type(tmp_path, tiny_corpus):
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        hint = app.query_one("#corpus-hint", Static)
        fill(app, data__path=tmp_path / "nope.txt")
        await pilot.pause()
        assert "no such file" in str(hint.render())
        assert app.train.config is None
        fill(app, data__path=tiny_corpus)
        await pilot.pause()
        assert "text file" in str(hint.render()) and app.train.config is not None
        (tmp_path / "wiki").mkdir()
        fill(app, data__path=tmp_path / "wiki")
        await pilot.pause()
        assert "no wiki.train.tokens" in str(hint.render())
        fill(app, data__path="")
        await pilot.pause()
        assert "built-in" in str(hint.render())


def test_corpus_and_duration_helpers(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert describe_corpus(str(empty)) == (False, "empty file")
    (tmp_path / "wt").mkdir()
    (tmp_path / "wt" / "wiki.train.tokens").write_text("a")
    (tmp_path / "wt" / "wiki.valid.tokens").write_text("a")
    assert describe_corpus(str(tmp_path / "wt")) == (True, "WikiText folder (.tokens)")
    assert fmt_duration(5) == "5s" and fmt_duration(125) == "2m 05s" and fmt_duration(7260) == "2h 01m"
    assert fmt_duration(math.nan) == "-"


@pytest.mark.slow
async def test_enter_in_a_field_starts_training_and_leaves_the_stop_key_working(tiny_corpus, tui_home):
    """Issue 13, defect 1: the field with focus is disabled when training starts; focus must
    land on Stop, so that the footer keeps the tab's keys and x stops the run."""
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        tiny_form(app, tiny_corpus)
        await pilot.pause()
        app.query_one("#f-train-max-steps").focus()
        await pilot.pause()
        await pilot.press("end", "0", "enter")
        train = app.train
        assert await wait_for(pilot, lambda: train.training and app.focused is not None)
        assert app.focused.id == "stop"
        assert await wait_for(pilot, lambda: train.state.status == "training", timeout=60)
        assert app.screen.active_bindings["x"].enabled
        await pilot.press("x")
        assert await wait_for(pilot, lambda: not train.training, timeout=60)
        assert train.state.status == "stopped"
        assert await wait_for(pilot, lambda: any("Stopped" in n.message for n in app._notifications))


@pytest.mark.slow
async def test_tiny_training_run_streams_and_stops(tiny_corpus, tui_home):
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        tiny_form(app, tiny_corpus)
        await pilot.pause()
        assert app.train.config is not None, app.train.errors
        await pilot.press("s")
        train = app.train
        assert train.training
        assert await wait_for(pilot, lambda: len(train.plot.train) >= 3 and train.plot.val, timeout=60)
        s = train.state
        assert s.status == "training" and s.run_name.startswith("tiny-char-transformer")
        assert s.step >= 2 and s.loss is not None and s.ln_vocab == pytest.approx(math.log(s_vocab(s)), rel=1e-6)
        status = app.query_one("#train-status")
        assert await wait_for(pilot, lambda: f"/{100_000:,}" in str(status.render()))  # the 4 Hz display tick
        assert "ln V" in str(status.render())
        assert await wait_for(pilot, lambda: s.checkpoints, timeout=60)  # first checkpoint (step 5)
        assert app.screen.active_bindings["x"].enabled and not app.screen.active_bindings["s"].enabled
        await pilot.press("x")
        assert await wait_for(pilot, lambda: not train.training, timeout=60)
        assert s.status == "stopped"
        assert (tui_home / "runs" / s.run_name / "checkpoints" / "last.pt").is_file()
        assert await wait_for(pilot, lambda: any("Stopped" in n.message for n in app._notifications))
        # The new run is listed on the Checkpoints tab.
        await pilot.press("2")
        assert await wait_for(pilot, lambda: any(r.name == s.run_name for r in app.checkpoints.runs))


def s_vocab(state) -> int:
    return round(math.exp(state.ln_vocab))


@pytest.mark.slow
async def test_a_crashing_trainer_is_a_message_and_the_app_keeps_running(tmp_path):
    # The form checks only a corpus's first PREFIX_BYTES: a bad byte after them is the trainer's to find.
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"the cat sat\n" * (PREFIX_BYTES // 12 + 10) + "caf\u00e9\n".encode("latin-1"))
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        tiny_form(app, latin1, max_steps=10)
        await pilot.pause()
        assert app.train.config is not None, app.train.errors
        await pilot.press("s")
        assert await wait_for(pilot, lambda: not app.train.training and app.train.state.status == "failed",
                              timeout=60)
        message = app.train.state.message
        assert "not UTF-8" in message and "Traceback" not in message
        assert await wait_for(pilot, lambda: any(n.severity == "error" and "not UTF-8" in n.message
                                                 for n in app._notifications))
        await pilot.press("2")  # still alive and responsive
        assert app.tabs.active == "checkpoints"


async def test_events_update_state_and_the_plot_is_throttled():
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        train = app.train
        plot = train.plot
        train.handle_event(ev.Started("r", "/nowhere/r", "transformer", "char", "kjv", 65, math.log(65), 1000, 0, 5000,
                                      1024, "cpu", "float32"))
        await pilot.pause(0.3)
        before = plot.redraws
        for i in range(2000):  # far faster than any trainer
            train.handle_event(ev.Step(i, 4.0 - i / 1000, 1e-3, 5000.0, i / 100, 100.0))
        await pilot.pause(0.6)
        assert len(plot.train) == 2000
        assert plot.redraws - before <= 6  # a few redraws, not 2000
        train.handle_event(ev.Eval(2000, 2.1, 2.2, 2.2))
        train.handle_event(ev.Sample(2000, "And God said"))
        train._render_status()
        assert "And God said" in str(app.query_one("#train-sample", Static).render())
        assert plot.val == [(2000, 2.2)]


async def test_resume_from_checkpoints_fills_the_form(tui_home):
    make_fake_run(tui_home, "old-run", step=400, max_steps=1000)
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        assert await wait_for(pilot, lambda: app.checkpoints.runs)
        await pilot.press("r")
        assert app.tabs.active == "train"
        train = app.train
        assert train.resume_dir == tui_home / "runs" / "old-run"
        assert app.query_one("#f-model-n-layer", Input).disabled
        assert not app.query_one("#f-train-max-steps", Input).disabled
        fill(app, train__max_steps=2000)
        await pilot.pause()
        assert train.command_line() == ["--train", "--resume", str(tui_home / "runs" / "old-run"),
                                        "--set", "train.max_steps=2000"]
        await pilot.press("n")  # back to a new run from the recipe
        assert train.resume_dir is None and not app.query_one("#f-model-n-layer", Input).disabled


async def test_command_line_lists_only_changed_fields():
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        fill(app, train__max_steps=300, extra="train.sample_tokens=50")
        await pilot.pause()
        args = app.train.command_line()
        assert args[0] == "--train" and args[1].endswith("kjv-char-transformer.toml")
        assert args[2:] == ["--set", "train.max_steps=300", "--set", "train.sample_tokens=50"]
        fill(app, train__time_budget="ten minutes")
        await pilot.pause()
        error = app.query_one("#f-train-time-budget-error", Static)
        assert error.display and 'train.time_budget must be "" (off) or a duration' in str(error.render())
        fill(app, train__time_budget="10m")
        await pilot.pause()
        assert not error.display and app.train.config.train.time_budget == "10m"
        assert app.train.command_line()[2:6] == ["--set", "train.max_steps=300", "--set", 'train.time_budget="10m"']


def form_of(config: RunConfig) -> dict[str, str]:
    return {key: format_value(config_value(config, key)) for key in FORM_KEYS}


def test_check_form_puts_each_error_at_the_field_it_names():
    base = RunConfig()
    ok = check_form(base, form_of(base), "")
    assert ok.errors == {} and ok.config == base
    # A field's own rule and a rule between two fields are both reported, each at its field.
    check = check_form(base, {**form_of(base), "train.max_steps": "0", "model.n_embd": "18"}, "")
    assert check.config is None
    assert check.errors["train.max_steps"] == "train.max_steps must be an integer >= 1, got 0."
    assert check.errors["model.n_head"].startswith("model.n_head must be a divisor of model.n_embd (18)")
    # A rule about a key the form lacks shows at the form field it compares against...
    check = check_form(base, {**form_of(base), "train.learning_rate": "1e-5"}, "")
    assert check.errors["train.learning_rate"].startswith("train.min_lr must be between 0 and")
    # ...unless --set gave that key, or overrode a form field: then --set is what to fix.
    check = check_form(base, form_of(base), "model.n_head=3")
    assert list(check.errors) == [EXTRA] and "model.n_head" in check.errors[EXTRA]
    assert check_form(base, form_of(base), "train.x='1").errors == {EXTRA: "The --set field has an unclosed quote."}
    assert check_form(base, {**form_of(base), "train.device": " "}, "").errors["train.device"].startswith(
        "train.device must be")


async def test_a_cnn_is_a_family_choice_and_n_head_is_only_for_the_transformer():
    from textual.widgets import Select

    base = RunConfig()
    check = check_form(base, {**form_of(base), "model.family": "cnn"}, "model.kernel_size=2 model.dilation_cycle=7")
    assert check.errors == {} and check.config.model.family == "cnn" and check.config.model.kernel_size == 2
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        head = app.query_one("#f-model-n-head", Input)
        assert not head.disabled
        for family, disabled in (("cnn", True), ("gru", True), ("transformer", False)):
            app.query_one("#f-model-family", Select).value = family
            await pilot.pause()
            assert head.disabled == disabled, family
        assert app.train.config is not None and app.train.config.model.family == "transformer"


def test_a_dead_trainer_is_explained_by_its_own_sentence_then_signal_then_stderr():
    trainer = TrainerProcess(["--train", "x.toml"])
    assert trainer.argv[-2:] == ["--events", "jsonl"]
    trainer.returncode, trainer.stderr_lines = -9, ["minigpt-tui: The corpus is binary.", "Traceback"]
    assert trainer.crash_message() == "The corpus is binary."
    trainer.stderr_lines = ["Traceback (most recent call last):", "MemoryError"]
    assert trainer.crash_message() == "The trainer was killed by SIGKILL."
    trainer.returncode = 1
    assert trainer.crash_message() == "The trainer exited with status 1: MemoryError"
    trainer.stderr_lines = []
    assert trainer.crash_message() == "The trainer exited with status 1 without saying why."


async def test_a_theme_change_recolours_the_run_status():
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        train = app.train
        train.handle_event(ev.Started("r", "/nowhere/r", "transformer", "char", "kjv", 65, math.log(65), 1000, 0, 5000,
                                      1024, "cpu", "float32"))
        train.handle_event(ev.Step(10, 3.0, 1e-3, 5000.0, 10, 100.0))
        train._render_status()

        def loss_style() -> str:  # the first bold coloured span of the status lines: the loss
            return next(str(s.style) for s in app.query_one("#train-status").render().spans
                        if str(s.style).startswith("bold #"))

        before = loss_style()
        assert before == f"bold {colour(app, 'train')}"
        app.theme = "textual-light" if app.theme != "textual-light" else "textual-dark"
        await pilot.pause()
        await pilot.pause()
        assert loss_style() == f"bold {colour(app, 'train')}" != before


def _on_screen(app, selector: str) -> bool:
    """The widget is displayed and lies wholly inside the terminal."""
    widget = app.query_one(selector)
    region = widget.region
    return widget.display and region.area > 0 and region.right <= app.size.width and region.bottom <= app.size.height


@pytest.mark.slow
async def test_at_60x20_the_buttons_and_status_are_on_screen_idle_and_training(tiny_corpus, tui_home):
    """Issue 13, defect 6: at 60x20 the Stop button and the status were off-screen. Narrow
    screens stack the form above the run while idle and show the run alone while training."""
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(60, 20)) as pilot:
        tiny_form(app, tiny_corpus)
        await pilot.pause()
        assert all(_on_screen(app, s) for s in ("#start", "#stop", "#train-status", "#train-form"))
        await pilot.press("s")
        train = app.train
        assert await wait_for(pilot, lambda: train.state.status == "training" and len(train.plot.train) >= 2,
                              timeout=60)
        await pilot.pause()
        assert all(_on_screen(app, s) for s in ("#stop", "#train-status", "#train-plot"))
        assert not app.query_one("#train-form").display
        await pilot.press("x")
        assert await wait_for(pilot, lambda: not train.training, timeout=60)
        await pilot.pause()
        assert _on_screen(app, "#train-form") and _on_screen(app, "#start")


async def test_at_80x24_every_form_field_and_button_can_be_reached():
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert _on_screen(app, "#start") and _on_screen(app, "#stop") and _on_screen(app, "#train-status")
        for key in FORM_KEYS:  # the form scrolls: each field comes into view when focused
            field = app.query_one("#" + field_id(key))
            field.focus()
            await pilot.pause()
            assert _on_screen(app, "#" + field_id(key)), key
