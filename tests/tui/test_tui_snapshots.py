"""Snapshot tests (pytest-textual-snapshot) of each tab in a pinned state at 80x24.

Everything that could change between runs is pinned: runs are written by hand with
fixed dates (UTC), the recipe is a fixed file, trainer events are fed in directly,
and generation is the tiny trained run's (conftest's `tiny_run`, the same weights at every
run) with default settings (seed 1337), a fixed prompt and a pinned tokens/s figure.
Update with: pytest tests/tui/test_tui_snapshots.py --snapshot-update
"""

from __future__ import annotations

import math

import pytest

from minigpt_tui.core import paths
from minigpt_tui.core.runs import events as ev
from minigpt_tui.tui.app import MiniGPTApp
from minigpt_tui.tui.settings import AppSettings

from kit import PINNED_TIME, make_fake_run
from tui_helpers import wait_for, wait_loaded

PINNED_RECIPE = """\
[data]
path = ""
tokenizer = "char"
vocab_size = 256

[model]
family = "transformer"
n_layer = 4
n_head = 4
n_embd = 128
context_length = 128

[train]
max_steps = 5000
batch_size = 16
learning_rate = 2e-3
eval_interval = 200
"""


@pytest.fixture(autouse=True)
def pinned_recipes(tmp_path, monkeypatch):
    """One recipe with fixed contents, whatever models/ holds today."""
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / f"{paths.DEFAULT_RECIPE}.toml").write_text(PINNED_RECIPE)
    monkeypatch.setattr(paths, "list_recipes", lambda: sorted(folder.glob("*.toml")))


def app(run=None) -> MiniGPTApp:
    return MiniGPTApp(settings=AppSettings(), run=run, save=False)


def test_train_tab_first_launch(snap_compare):
    assert snap_compare(app(), terminal_size=(80, 24))


async def feed_a_run(pilot):
    """Trainer events of 1,200 steps fed straight into the Train tab (no process)."""
    train = pilot.app.train
    train.handle_event(ev.Started("kjv-char-transformer-20260101-000000", "/runs/x", "transformer", "char", "kjv",
                                  65, math.log(65), 812_672, 0, 5000, 2048, "cpu", "float32"))
    for step in range(0, 1201, 10):
        loss = 1.6 + 2.6 * 0.996 ** step
        train.handle_event(ev.Step(step, loss, 1e-3, 8432.0, step * 0.2, 785.0))
        if step % 200 == 0:
            train.handle_event(ev.Eval(step, loss, loss + 0.07, loss + 0.07))
    train.handle_event(ev.Sample(1200, "\n1:3 And God said unto them, Let there be light: and there was light.\n"
                                       "1:4 And the LORD spake unto Moses, saying,"))
    train._render_status()
    train.plot.request_redraw(now=True)
    await pilot.pause()


def test_train_tab_during_a_run(snap_compare):
    assert snap_compare(app(), terminal_size=(80, 24), run_before=feed_a_run)


def test_train_tab_during_a_run_at_120x36(snap_compare):
    assert snap_compare(app(), terminal_size=(120, 36), run_before=feed_a_run)


def test_train_tab_first_launch_at_60x20(snap_compare):
    assert snap_compare(app(), terminal_size=(60, 20))


@pytest.mark.parametrize("size", [(120, 36)], ids=["120x36"])
def test_checkpoints_tab_with_long_names(snap_compare, tui_home, size):
    make_fake_run(tui_home, "tinyshakespeare-char-transformer-20260101-120000", created=PINNED_TIME, step=400)
    make_fake_run(tui_home, "wikitext2-word-lstm-20251231-093000", created=PINNED_TIME - 86400, family="lstm")

    async def run_before(pilot):
        await pilot.press("2")
        assert await wait_for(pilot, lambda: len(pilot.app.checkpoints.runs) == 2)
        assert await wait_for(pilot, lambda: pilot.app.query_one("#run-plot").train)
        await pilot.pause()

    assert snap_compare(app(), terminal_size=size, run_before=run_before)


def test_checkpoints_tab(snap_compare, tui_home, corrupt_run):
    make_fake_run(tui_home, "kjv-char-transformer-20260101", created=PINNED_TIME, step=400, max_steps=1000)
    make_fake_run(tui_home, "kjv-char-gru-20251231", created=PINNED_TIME - 86400, step=1000, max_steps=1000,
                  best=2.01, family="gru", params=1_234_567)

    async def run_before(pilot):
        await pilot.press("2")
        assert await wait_for(pilot, lambda: len(pilot.app.checkpoints.runs) == 3)
        assert await wait_for(pilot, lambda: pilot.app.query_one("#run-plot").train)
        await pilot.pause()

    assert snap_compare(app(), terminal_size=(80, 24), run_before=run_before)


def test_compare_runs(snap_compare, tui_home):
    """Three marked runs compared at 120x36: curves overlaid, configs side by side."""
    make_fake_run(tui_home, "kjv-char-transformer-20260101", created=PINNED_TIME, step=400, loss_floor=1.5,
                  overrides=("train.learning_rate=0.003",))
    make_fake_run(tui_home, "kjv-char-gru-20251231", created=PINNED_TIME - 86400, step=1000, max_steps=1000,
                  best=2.01, family="gru", params=1_234_567, loss_floor=1.9)
    make_fake_run(tui_home, "tinyshakespeare-char-transformer-20251230", created=PINNED_TIME - 2 * 86400, step=700,
                  loss_floor=1.7, overrides=("train.batch_size=32", 'data.path="tinyshakespeare/input.txt"'))

    async def run_before(pilot):
        await pilot.press("2")
        assert await wait_for(pilot, lambda: len(pilot.app.checkpoints.runs) == 3)
        await pilot.press("space", "space", "space", "c")
        assert await wait_for(pilot, lambda: getattr(pilot.app.screen, "loaded", False))
        await pilot.pause()

    assert snap_compare(app(), terminal_size=(120, 36), run_before=run_before)


def test_generate_tab(snap_compare, tiny_run, pinned_speed):
    async def run_before(pilot):
        gen = await wait_loaded(pilot, pilot.app)
        pilot.app.query_one("#prompt").value = "And God"
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: not gen.generating and gen.chat.last_reply is not None, timeout=30)
        await pilot.press("v")
        await pilot.pause()

    assert snap_compare(app(tiny_run), terminal_size=(80, 24), run_before=run_before)


def test_help_screen(snap_compare):
    assert snap_compare(app(), terminal_size=(80, 24), press=["question_mark"])
