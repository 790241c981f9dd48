"""Issue 13, defect 3 and "watch any run live": training you can trust at a glance.

The state of a run being trained shows in a bar at the top of every tab, its row in the
Checkpoints tab follows the live step (meta.json, written at checkpoints, lags), and a
run trained by another process (a headless `minigpt-tui --train`) shows there too and
can be watched in the Train tab, followed from its files."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
from test_tui_train import fill, tiny_form
from textual.widgets import DataTable

from minigpt_tui.core.runs import events as ev
from minigpt_tui.core.runs.run_dir import RunDir
from minigpt_tui.tui import live
from minigpt_tui.tui.app import MiniGPTApp

from kit import make_fake_run
from tui_helpers import wait_for

TINY = ["--set", "model.n_layer=1", "--set", "model.n_embd=16", "--set", "model.n_head=2",
        "--set", "model.context_length=16", "--set", "train.batch_size=4", "--set", "train.eval_batches=1",
        "--set", "train.sample_tokens=10", "--set", "train.device=cpu", "--set", "train.threads=1",
        "--set", "train.log_interval=1"]


def bar_text(app) -> str:
    bar = app.query_one("#training-bar")
    return str(bar.render()) if bar.display else ""


def row_step(app, name: str) -> int:
    """The step the Checkpoints tab shows in the row of run `name` (-1 while it has none)."""
    table = app.checkpoints.query_one(DataTable)
    try:
        cells = table.get_row(name)
    except Exception:  # not listed yet
        return -1
    steps = next((str(c) for c in cells if "/" in str(c) and str(c).split("/")[0].strip().replace(",", "").isdigit()),
                 None)
    return int(steps.split("/")[0].replace(",", "")) if steps else -1


@pytest.mark.slow
async def test_the_bar_and_the_checkpoints_row_follow_the_run_on_every_tab(tiny_corpus, tui_home):
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert not app.query_one("#training-bar").display  # nothing trains: no bar, no row taken
        tiny_form(app, tiny_corpus)
        fill(app, train__eval_interval=100_000)  # no checkpoint for a long while: meta.json stays at step 0
        await pilot.pause()
        await pilot.press("s")
        train = app.train
        assert await wait_for(pilot, lambda: train.state.step >= 20, timeout=60)
        name = train.state.run_name
        await pilot.press("2")
        assert await wait_for(pilot, lambda: row_step(app, name) >= 20)
        step = train.state.step
        assert await wait_for(pilot, lambda: row_step(app, name) > step)  # it follows the trainer
        assert RunDir(train.state.run_dir).read_meta().step == 0  # (what the row showed before)
        text = bar_text(app)
        assert "training" in text and name[:20] in text and "step" in text and "/100,000" in text, text
        await pilot.press("3")
        await pilot.pause(0.6)
        text = bar_text(app)
        assert "training" in text and "ETA" in text and "loss" in text, text
        app.tabs.active = "train"  # (keys would go into the Generate prompt)
        await pilot.pause()
        await pilot.press("x")
        assert await wait_for(pilot, lambda: not train.training, timeout=60)
        assert await wait_for(pilot, lambda: bar_text(app) == "")  # nothing trains any more


async def test_the_bar_shows_a_run_another_process_trains(tui_home, monkeypatch):
    """A run whose lock another process holds is shown, with its step from events.jsonl."""
    monkeypatch.setattr(live, "POLL_S", 0.1)
    run = RunDir(make_fake_run(tui_home, "elsewhere-run", step=0, max_steps=5000))
    run.lock()  # held by this test; the app tells its own pid apart, so pretend it is another's
    (run.path / ".lock").write_text("999999\n")
    with open(run.events_path, "w") as f:
        f.write(ev.encode(ev.Started("elsewhere-run", str(run.path), "transformer", "char", "kjv", 65, math.log(65),
                                     1000, 0, 5000, 1024, "cpu", "float32")) + "\n")
        f.write(ev.encode(ev.Step(1100, 1.83, 1e-3, 5000.0, 60.0, 420.0)) + "\n")
    app = MiniGPTApp(save=False)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            assert await wait_for(pilot, lambda: "elsewhere-run" in bar_text(app))
            text = bar_text(app)
            assert "1,100/5,000" in text and "w" in text, text
            assert app.screen.active_bindings["w"].enabled
            await pilot.press("2")
            assert await wait_for(pilot, lambda: row_step(app, "elsewhere-run") == 1100)
    finally:
        run.release()


@pytest.mark.slow
async def test_a_headless_run_can_be_watched_in_the_train_tab(tiny_corpus, tui_home, tmp_path, monkeypatch):
    monkeypatch.setattr(live, "POLL_S", 0.2)
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert not app.screen.active_bindings.get("w") or not app.screen.active_bindings["w"].enabled
        out = open(tmp_path / "trainer.out", "w")
        proc = subprocess.Popen([sys.executable, "-m", "minigpt_tui", "--train", *TINY,
                                 "--set", f"data.path={tiny_corpus}", "--set", "train.max_steps=3000",
                                 "--set", "train.eval_interval=1000", "--events", "jsonl"],
                                env={**os.environ, "MINIGPT_TUI_HOME": str(tui_home)}, stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            assert await wait_for(pilot, lambda: "tiny-char-transformer" in bar_text(app), timeout=30)
            assert "training" in bar_text(app)
            told: list[str] = []  # every notification (a toast expires after 5 s: a slow machine lost one)
            notify = app.notify
            monkeypatch.setattr(app, "notify", lambda message, *a, **k: (told.append(message), notify(message, *a, **k))[1])
            await pilot.press("2", "w")  # from any tab
            train = app.train
            assert await wait_for(pilot, lambda: train.watching)
            assert app.tabs.active == "train" and not train.training  # watched, not ours
            assert await wait_for(pilot, lambda: train.state.status == "finished", timeout=60), train.state
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)  # (reaped: a Popen dropped while its process runs warns)
            out.close()
        steps = [line for line in (tmp_path / "trainer.out").read_text().splitlines() if '"type": "step"' in line]
        assert len(train.plot.train) == len(steps) == 3000  # every loss the trainer reported
        assert train.plot.val and train.state.sample  # evaluations and samples too
        assert not train.watching
        assert any(m.startswith("Finished tiny-char-transformer") for m in told), told
