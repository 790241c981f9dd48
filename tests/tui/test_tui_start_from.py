"""Fine-tuning from the app: F on a run in the Checkpoints tab sets the Train tab up for a new run
that starts from its weights (--train --from RUN); r on an imported model points to F instead."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from textual.widgets import Select, Static

from minigpt_tui.core.runs.run_dir import RunDir
from minigpt_tui.tui.app import MiniGPTApp
from minigpt_tui.tui.train.form import FORM_KEYS, config_value, field_id, format_value
from minigpt_tui.tui.train.pane import TrainPane

from kit import make_fake_run
from tui_helpers import wait_for

MODEL_SHAPE = ("data.tokenizer", "data.vocab_size", "model.family", "model.n_layer", "model.n_head", "model.n_embd")
FREE = ("data.path", "model.context_length", "model.dropout", "train.max_steps", "train.learning_rate")


def field(app, key: str):
    return app.query_one("#" + field_id(key))


def error_at(app, key: str) -> str:
    line = app.query_one("#" + field_id(key) + "-error", Static)
    return str(line.render()) if line.display else ""


async def open_from(pilot, app, count: int = 1) -> TrainPane:
    await pilot.press("2")
    assert await wait_for(pilot, lambda: len(app.checkpoints.runs) == count)
    await pilot.press("F")
    assert app.tabs.active == "train"
    await pilot.pause()
    return app.train


async def test_F_sets_up_a_new_run_from_the_selected_one_with_its_model_locked(tui_home):
    run = make_fake_run(tui_home, "old-run", step=400, max_steps=1000, overrides=("train.learning_rate=0.002",))
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        assert await wait_for(pilot, lambda: app.checkpoints.runs)
        assert app.screen.active_bindings["F"].enabled  # in the footer, as r is
        train = await open_from(pilot, app)
        assert train.from_dir == run and train.resume_dir is None
        assert "Start from old-run (step 400)" in str(app.query_one("#form-mode", Static).render())
        assert "Press s to fine-tune from old-run" in str(app.query_one("#train-status").render())
        own = RunDir(run).config()
        assert all(str(field(app, key).value) == format_value(config_value(own, key)) for key in FORM_KEYS)
        assert all(field(app, key).disabled for key in MODEL_SHAPE)
        assert not any(field(app, key).disabled for key in FREE)
        assert app.query_one("#recipe", Select).disabled
        assert train.command_line() == ["--train", "--from", str(run)]  # nothing changed: the run's own fields
        field(app, "train.max_steps").value = "50"
        shorter = own.model.context_length // 2
        field(app, "model.context_length").value = str(shorter)  # allowed
        await pilot.pause()
        assert train.command_line() == ["--train", "--from", str(run), "--set", f"model.context_length={shorter}",
                                        "--set", "train.max_steps=50"]
        # A longer context, or a change of shape through --set, is one sentence at its field.
        field(app, "model.context_length").value = str(own.model.context_length * 2)
        await pilot.pause()
        assert error_at(app, "model.context_length") == (
            f"model.context_length must stay at most {own.model.context_length} when starting from old-run, "
            f"got {own.model.context_length * 2}.")
        assert train.command_line() == []
        field(app, "model.context_length").value = str(own.model.context_length)
        field(app, "extra").value = "model.n_layer=9"
        await pilot.pause()
        assert error_at(app, "model.context_length") == ""
        assert error_at(app, "extra").startswith(f"model.n_layer must stay {own.model.n_layer}, as the run's")
        field(app, "extra").value = ""
        await pilot.pause()
        assert train.config is not None
        await pilot.press("n")  # back to a new run from the recipe
        assert train.from_dir is None and not field(app, "model.n_layer").disabled
        assert not app.query_one("#form-mode", Static).display


async def test_s_starts_the_trainer_with_from_and_the_changed_fields(tui_home, monkeypatch):
    """The argv the child gets, read back by the CLI's own parser and load_training_config (a real
    child run costs ~20 s here; a --from training run in the CLI is tested in tests/test_pretrained_import.py)."""
    from minigpt_tui.cli.dispatch import build_parser
    from minigpt_tui.cli.train import load_training_config

    run = make_fake_run(tui_home, "old-run")
    started: list[list[str]] = []
    monkeypatch.setattr(TrainPane, "start_process", lambda self, args: started.append(args))
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_from(pilot, app)
        field(app, "train.max_steps").value = "3"
        field(app, "extra").value = "train.sample_tokens=5"
        await pilot.pause()
        await pilot.press("s")
    assert started == [["--train", "--from", str(run), "--set", "train.max_steps=3",
                        "--set", "train.sample_tokens=5"]]
    config, name, resume, source = load_training_config(build_parser().parse_args(started[0]))
    assert resume is None and source.path == run and name == "old-run"
    assert config.model == RunDir(run).config().model
    assert (config.train.max_steps, config.train.sample_tokens) == (3, 5)


def imported_run(home: Path, tmp_path: Path) -> Path:
    from minigpt_tui.core.pretrained.importer import import_model

    from pretrained_kit import gpt2_folder

    folder = gpt2_folder(tmp_path / "gpt2-folder")
    run = import_model(str(folder), name="tiny-gpt2", runs_root=home / "runs", progress=False,
                       fetch=lambda s, progress=True: SimpleNamespace(path=Path(s), source=s, revision=None))
    return run.path


async def test_r_on_an_imported_model_says_to_fine_tune_it_and_F_does(tui_home, tmp_path):
    run = imported_run(tui_home, tmp_path)
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        assert await wait_for(pilot, lambda: app.checkpoints.runs)
        await pilot.press("r")
        assert app.tabs.active == "checkpoints" and app.train.resume_dir is None
        assert app._notifications and list(app._notifications)[-1].message == (
            "tiny-gpt2 is an imported model, so it has no training to resume; press F to fine-tune from it.")
        train = await open_from(pilot, app)
        tokenizer = field(app, "data.tokenizer")
        assert tokenizer.value == "hf" and tokenizer.disabled  # its own tokenizer, though no recipe offers it
        assert train.config is not None, train.errors
        assert train.command_line() == ["--train", "--from", str(run)]
        await pilot.press("n")
        assert field(app, "data.tokenizer").value != "hf"  # a recipe: the usual choices again
