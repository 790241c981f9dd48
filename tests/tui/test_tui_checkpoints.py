"""The Checkpoints tab: the table, unreadable runs, details, sorting, delete, open in Generate."""

from __future__ import annotations

import json

from textual.widgets import DataTable, Static

from minigpt_tui.tui.app import MiniGPTApp
from minigpt_tui.tui.screens import ConfirmScreen

from kit import PINNED_TIME, make_fake_run
from tui_helpers import wait_for


async def open_checkpoints(pilot, app, count: int) -> DataTable:
    await pilot.press("2")
    assert await wait_for(pilot, lambda: len(app.checkpoints.runs) == count)
    return app.query_one("#runs-table", DataTable)


async def test_table_lists_runs_newest_first_with_their_facts(tui_home):
    make_fake_run(tui_home, "older", created=PINNED_TIME - 86400, step=200, best=2.5)
    make_fake_run(tui_home, "newer", created=PINNED_TIME, step=400, best=1.85)
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        table = await open_checkpoints(pilot, app, 2)
        assert table.row_count == 2
        first = [str(c) for c in table.get_row_at(0)]
        assert first == ["newer", "400/1,000", "1.850", "813k", "transformer", "char", "kjv", "2026-01-01 00:00"]
        # The selected run's config and curves are shown.
        assert await wait_for(pilot, lambda: app.query_one("#run-plot").train)
        assert "[model]" in str(app.query_one("#run-config", Static).render())


async def test_an_unreadable_run_is_listed_with_its_reason(tui_home, corrupt_run):
    make_fake_run(tui_home, "good", created=PINNED_TIME)
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        table = await open_checkpoints(pilot, app, 2)
        names = [str(table.get_row_at(i)[0]) for i in range(2)]
        broken = names.index("broken-run")
        table.move_cursor(row=broken)
        await pilot.pause()
        assert "unreadable" in str(table.get_row_at(broken)[1])
        assert "corrupt" in str(app.query_one("#run-config", Static).render())
        # Actions that need a readable run are dimmed and refuse politely.
        assert not app.screen.active_bindings["g"].enabled
        await pilot.press("g")
        assert app.tabs.active == "checkpoints"
        # Generate does not offer it either, and nothing crashes.
        await pilot.press("3")
        await pilot.pause(0.2)
        assert app.generate.loading == "good" or app.generate.info is None


async def test_delete_asks_first(tui_home):
    run = make_fake_run(tui_home, "doomed")
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        table = await open_checkpoints(pilot, app, 1)
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        assert "doomed" in app.screen.question
        await pilot.press("enter")  # the safe button has focus: Enter keeps the run
        assert not isinstance(app.screen, ConfirmScreen) and run.exists()
        await pilot.press("d")
        await pilot.press("n")
        assert run.exists()
        await pilot.press("d")
        await pilot.press("y")
        assert not run.exists()
        assert await wait_for(pilot, lambda: table.row_count == 0)
        assert app.query_one("#runs-empty").display


async def test_sorting_by_key_and_header(tui_home):
    make_fake_run(tui_home, "b-run", created=PINNED_TIME, step=100)
    make_fake_run(tui_home, "a-run", created=PINNED_TIME - 10, step=300)
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        table = await open_checkpoints(pilot, app, 2)
        assert str(table.get_row_at(0)[0]) == "b-run"  # newest first
        await pilot.press("o")  # by name
        assert app.checkpoints.sort_column == "name"
        assert [str(table.get_row_at(i)[0]) for i in range(2)] == ["a-run", "b-run"]
        await pilot.press("O")
        assert [str(table.get_row_at(i)[0]) for i in range(2)] == ["b-run", "a-run"]
        table.post_message(DataTable.HeaderSelected(table, table.columns["steps"].key, 5, table.columns["steps"].label))
        await pilot.pause()
        assert app.checkpoints.sort_column == "steps"
        assert str(table.get_row_at(0)[0]) == "a-run"  # most steps first
        assert "▼" in str(table.columns["steps"].label)


async def test_open_in_generate_loads_the_run(tiny_run):
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_checkpoints(pilot, app, 1)
        await pilot.press("g")
        assert app.tabs.active == "generate"
        assert await wait_for(pilot, lambda: app.generate.sampler is not None, timeout=30)
        step = json.loads((tiny_run / "meta.json").read_text())["step"]  # (of its best checkpoint, the last)
        assert app.generate.info.run_name == "tiny-run" and app.generate.info.step == step > 0
        # Deleting the loaded run unloads it.
        await pilot.press("escape", "2", "d", "y")
        assert await wait_for(pilot, lambda: app.generate.sampler is None)


def test_long_names_break_after_a_hyphen_not_mid_word():
    from minigpt_tui.tui.formatting import break_name

    name = "tinyshakespeare-char-transformer-20260101-120000"
    lines = break_name(name, 27).splitlines()
    assert "".join(lines) == name and all(len(line) <= 27 for line in lines)
    assert all(line.endswith("-") for line in lines[:-1])  # every break follows a hyphen
    assert break_name("x" * 30, 12).splitlines() == ["x" * 12, "x" * 12, "x" * 6]  # no hyphen: cut where it must


async def test_the_details_column_shows_a_long_run_name_in_whole_words(tui_home):
    """Issue 13, defect 6: at 120 columns a long run name broke mid-word in the details."""
    name = "tinyshakespeare-char-transformer-20260101-120000"
    make_fake_run(tui_home, name, created=PINNED_TIME)
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("2")
        details = app.query_one("#run-config")
        assert await wait_for(pilot, lambda: name.split("-")[0] in str(details.render()))
        head = str(details.render()).splitlines()[:2]
        assert "".join(head) == name and head[0].endswith("-")


async def test_details_show_the_latest_full_pass_evaluation_of_each_split(tui_home):
    from minigpt_tui.core.runs.evaluations import append_evaluation

    run = make_fake_run(tui_home, "evaluated")
    make_fake_run(tui_home, "plain", created=PINNED_TIME - 60)
    record = {"split": "valid", "checkpoint": "best", "step": 300, "data": "", "perplexity": 5.0,
              "bits_per_char": 2.5}
    append_evaluation(run, record)
    append_evaluation(run, {**record, "step": 400, "bits_per_char": 1.5234, "perplexity": 4.31})
    append_evaluation(run, {**record, "split": "test", "bits_per_char": 1.61, "perplexity": 4.87})
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await open_checkpoints(pilot, app, 2)
        details = app.query_one("#run-config", Static)
        assert await wait_for(pilot, lambda: "bits/char" in str(details.render()))
        text = str(details.render())
        assert "test: 1.610 bits/char\n  ppl 4.87, step 300\n" in text
        assert "valid: 1.523 bits/char\n  ppl 4.31, step 400\n" in text
        assert "2.500" not in text  # only the latest of a split
        table.move_cursor(row=1)  # a run never evaluated shows no such line
        assert await wait_for(pilot, lambda: "plain" in str(details.render()))
        assert "bits/char" not in str(details.render())
