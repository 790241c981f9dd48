"""The Checkpoints tab's marks, run comparison, rename, notes, deleting several runs and clearing
stubs."""

from __future__ import annotations

import json

from rich.console import Console
from textual.widgets import DataTable, Input, Static

from minigpt_tui.core.runs.run_dir import RunDir
from minigpt_tui.tui.app import MiniGPTApp
from minigpt_tui.tui.checkpoints.compare import CompareScreen
from minigpt_tui.tui.screens import ConfirmScreen, PromptScreen

from kit import PINNED_TIME, make_fake_run
from tui_helpers import wait_for


async def open_checkpoints(pilot, app, count: int) -> DataTable:
    await pilot.press("2")
    assert await wait_for(pilot, lambda: len(app.checkpoints.runs) == count)
    return app.query_one("#runs-table", DataTable)


def names(table: DataTable) -> list[str]:
    return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


def three_runs(home) -> list:
    return [
        make_fake_run(home, "run-a", created=PINNED_TIME, step=400, loss_floor=1.5, seconds_per_step=0.2,
                      overrides=("train.learning_rate=0.003",)),
        make_fake_run(home, "run-b", created=PINNED_TIME - 60, step=600, loss_floor=1.7, seconds_per_step=0.1),
        make_fake_run(home, "run-c", created=PINNED_TIME - 120, step=300, loss_floor=1.9, family="gru",
                      overrides=("train.batch_size=32",)),
    ]


def plain(renderable, width: int = 160) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


async def test_marking_three_runs_and_comparing_them(tui_home):
    three_runs(tui_home)
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(120, 36)) as pilot:
        table = await open_checkpoints(pilot, app, 3)
        assert "c" not in app.screen.active_bindings  # nothing to compare yet: out of the footer
        await pilot.press("space", "space", "space")  # space marks and moves down
        assert app.checkpoints.marked == {"run-a", "run-b", "run-c"}
        assert all(name.startswith("✓ ") for name in names(table))
        await pilot.press("c")
        assert isinstance(app.screen, CompareScreen)
        screen = app.screen
        assert await wait_for(pilot, lambda: screen.loaded)
        await pilot.pause()
        plot = screen.plot
        assert [r.name for r in plot.runs] == ["run-a", "run-b", "run-c"]
        legend = str(screen.query_one("#compare-legend", Static).render())
        assert all(name in legend for name in ("run-a", "run-b", "run-c"))
        # Configs side by side: the fields that differ come first, marked.
        text = plain(screen.config_table())
        differ = text.index("differs")
        for key in ("train.learning_rate", "train.batch_size", "model.family"):
            assert differ < text.index("≠ " + key) < text.index("alike")
        assert "≠ model.n_layer" not in text
        # x cycles: steps, wall time (run-a: 0.2 s a step), tokens (batch x accum x context).
        assert plot.render().plain.splitlines()[-1].split()[-1] == "600"
        await pilot.press("x")
        assert plot.x_axis == "time"
        run_a = plot.runs[0]
        # The evaluation at step 400 comes after the step records before it (the last at step 390).
        assert run_a.points("time")[-1] == (78.0, run_a.val[-1][1])
        assert plot.render().plain.splitlines()[-1].split()[-1] == "1m18"  # run-a took longest
        await pilot.press("x")
        assert plot.x_axis == "tokens"
        assert run_a.points("tokens")[-1][0] == 400 * 12 * 64
        await pilot.press("l", "f")
        assert plot.log_y and plot.follow and "[log follow]" in plot.render().plain
        await pilot.press("escape")
        assert not isinstance(app.screen, CompareScreen)
        assert app.checkpoints.marked == {"run-a", "run-b", "run-c"}  # the marks stay for another look
        await pilot.press("u")
        assert not app.checkpoints.marked


async def test_compare_needs_two_runs(tui_home):
    three_runs(tui_home)
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_checkpoints(pilot, app, 3)
        await pilot.press("c")
        assert not isinstance(app.screen, CompareScreen)
        await pilot.press("space")  # one mark: it and the selected run (the next one) are compared
        await pilot.press("c")
        assert isinstance(app.screen, CompareScreen)
        assert [r.name for r in app.screen.run_infos] == ["run-a", "run-b"]


async def test_rename_a_run(tui_home):
    run, _, _ = three_runs(tui_home)
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        table = await open_checkpoints(pilot, app, 3)
        await pilot.press("e")
        assert isinstance(app.screen, PromptScreen)
        field = app.screen.query_one(Input)
        assert field.value == "run-a"
        for taken, why in (("run-b", "already exists"), ("a/b", "slash")):
            field.value = taken
            await pilot.press("enter")
            assert isinstance(app.screen, PromptScreen)  # refused: the sentence shows under the field
            assert why in str(app.screen.query_one("#prompt-error", Static).render())
        field.value = "shakespeare-best"
        await pilot.press("enter")
        assert not isinstance(app.screen, PromptScreen)
        assert await wait_for(pilot, lambda: "shakespeare-best" in names(table))
        assert not run.exists() and (tui_home / "runs" / "shakespeare-best").is_dir()
        meta = json.loads((tui_home / "runs" / "shakespeare-best" / "meta.json").read_text())
        assert meta["name"] == "shakespeare-best"
        assert app.checkpoints.selected_name == "shakespeare-best"  # the cursor stays on it


async def test_rename_and_note_are_refused_while_the_run_trains(tui_home):
    run, _, _ = three_runs(tui_home)
    trainer = RunDir(run)
    trainer.lock()  # as a trainer in another process holds it
    try:
        app = MiniGPTApp(save=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await open_checkpoints(pilot, app, 3)
            for key in ("e", "n"):
                await pilot.press(key)
                assert not isinstance(app.screen, PromptScreen)
            messages = [n.message for n in app._notifications]
            assert any("stop it before renaming it" in m for m in messages)
            assert any("add the note once it stops" in m for m in messages)
    finally:
        trainer.release()
    assert run.exists()


async def test_a_note_shows_in_the_details(tui_home):
    run, _, _ = three_runs(tui_home)
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_checkpoints(pilot, app, 3)
        await pilot.press("n")
        assert isinstance(app.screen, PromptScreen)
        app.screen.query_one(Input).value = "lr 3e-3: faster, then flat"
        await pilot.press("enter")
        config = app.query_one("#run-config", Static)
        assert await wait_for(pilot, lambda: "lr 3e-3: faster, then flat" in str(config.render()))
        assert RunDir(run).read_meta().note == "lr 3e-3: faster, then flat"


async def test_deleting_several_marked_runs_at_once(tui_home):
    a, b, c = three_runs(tui_home)
    busy = RunDir(c)
    busy.lock()
    try:
        app = MiniGPTApp(save=False)
        async with app.run_test(size=(80, 24)) as pilot:
            table = await open_checkpoints(pilot, app, 3)
            await pilot.press("space", "space", "space")
            await pilot.press("d")
            assert isinstance(app.screen, ConfirmScreen)
            question = app.screen.question
            assert "these 2 marked runs" in question and "run-a" in question and "run-b" in question
            assert "run-c is being trained and will be kept" in question
            await pilot.press("y")
            assert await wait_for(pilot, lambda: names(table) == ["✓ run-c ●"] or names(table) == ["✓ run-c"])
            assert not a.exists() and not b.exists() and c.exists()
    finally:
        busy.release()


async def test_stub_runs_are_marked_and_cleared_together(tui_home):
    make_fake_run(tui_home, "kept", created=PINNED_TIME)
    stubs = [make_fake_run(tui_home, f"stub-{i}", created=PINNED_TIME - 60 * (i + 1), step=0, best=None,
                           checkpoint=False) for i in range(2)]
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        table = await open_checkpoints(pilot, app, 3)
        best = [str(table.get_row_at(i)[2]) for i in range(3)]
        assert best == ["1.850", "stub", "stub"]
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        assert "these 2 stub runs" in app.screen.question
        await pilot.press("n")
        assert all(s.exists() for s in stubs)
        await pilot.press("x", "y")
        assert await wait_for(pilot, lambda: names(table) == ["kept"])
        assert not any(s.exists() for s in stubs)
        assert not app.screen.active_bindings["x"].enabled  # no stubs left


def test_wall_time_carries_over_a_resume(tui_home):
    """A resumed trainer's "time" starts again at 0; the comparison adds the time before it."""
    from minigpt_tui.core.runs.run_dir import RunInfo
    from minigpt_tui.tui.checkpoints.compare import load_curves

    run = make_fake_run(tui_home, "resumed", step=0)
    records = [{"step": s, "loss": 3.0, "time": s * 1.0} for s in range(0, 100, 10)]  # first trainer: 0..90 s
    records.append({"step": 100, "val_loss": 2.5})
    records += [{"step": s, "loss": 2.0, "time": (s - 100) * 1.0 + 5} for s in range(100, 200, 10)]  # resumed
    records.append({"step": 200, "val_loss": 2.0})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    curves = load_curves(RunInfo(name="resumed", path=run, meta=RunDir(run).read_meta()))
    assert curves.points("time") == [(90.0, 2.5), (90.0 + 95.0, 2.0)]
