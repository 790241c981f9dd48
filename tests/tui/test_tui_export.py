"""The Checkpoints tab's Export dialog (X): the formats that fit the run, the default path, the
export in a thread worker (progress, then the path or the error's sentence), and an export that
goes on after the dialog is closed."""

from __future__ import annotations

import threading

import pytest
from textual.widgets import Input, Label, Select, Static, TabbedContent

from minigpt_tui.tui.app import MiniGPTApp
from minigpt_tui.tui.checkpoints.export_dialog import ExportScreen

from kit import PINNED_TIME, make_fake_run
from tui_helpers import wait_for

pytest.importorskip("safetensors")


async def open_export(pilot, app, count: int = 1) -> ExportScreen:
    await pilot.press("2")
    assert await wait_for(pilot, lambda: len(app.checkpoints.runs) == count)
    await pilot.press("X")
    assert await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
    await pilot.pause()
    return app.screen


def text_of(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


def record_notes(app) -> list[str]:
    notes: list[str] = []
    notify = app.notify

    def recording(message, *args, **kwargs):
        notes.append(str(message))
        return notify(message, *args, **kwargs)

    app.notify = recording
    return notes


@pytest.fixture
def gate(monkeypatch) -> threading.Event:
    """Exports wait for this event before writing: the dialog's progress can be seen, and closed."""
    from minigpt_tui.core.export import exporter

    event = threading.Event()
    export_run = exporter.export_run

    def gated(*args, **kwargs):
        assert event.wait(30)
        return export_run(*args, **kwargs)

    monkeypatch.setattr(exporter, "export_run", gated)
    return event


async def test_exporting_a_run_as_hf_to_the_default_path_and_with_the_dialog_closed(tui_home, tiny_run, gate):
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        notes = record_notes(app)
        screen = await open_export(pilot, app)
        out = tui_home / "exports" / "tiny-run-hf"
        assert screen.query_one("#export-out", Input).value == str(out)
        assert screen.query_one("#export-format", Select).value == "hf"
        assert screen.query_one("#export-dtype", Select).value == "f32"
        await pilot.press("enter")  # the path field has the focus: Enter exports
        await pilot.pause()
        assert screen.state == "running" and screen.query_one("#export-progress").display
        assert "Exporting tiny-run as hf…" in str(screen.query_one("#export-progress-label", Label).render())
        gate.set()
        assert await wait_for(pilot, lambda: screen.state == "done")
        await pilot.pause()
        assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
        assert str(out) in text_of(screen, "#export-result") and "GPT-NeoX" in text_of(screen, "#export-result")
        assert any(str(out) in note for note in notes)
        await pilot.press("escape")
        assert not isinstance(app.screen, ExportScreen)

        # Again: the default moves on; closing the dialog lets the export finish, and the app says so.
        gate.clear()
        screen = await open_export(pilot, app)
        second = tui_home / "exports" / "tiny-run-hf-2"
        assert screen.query_one("#export-out", Input).value == str(second)
        await pilot.press("enter", "escape")
        assert screen.closed and not isinstance(app.screen, ExportScreen)
        await pilot.press("1")  # the app answers meanwhile
        assert app.query_one("#tabs", TabbedContent).active == "train"
        gate.set()
        assert await wait_for(pilot, lambda: any(str(second) in note for note in notes))
        assert (second / "model.safetensors").is_file() and not app.checkpoints.exports_running


async def test_a_char_run_is_not_offered_gguf_and_the_dialog_says_why(tui_home):
    make_fake_run(tui_home, "chars", created=PINNED_TIME)
    make_fake_run(tui_home, "rnn", created=PINNED_TIME - 60, family="gru")
    (tui_home / "exports" / "chars-hf").mkdir(parents=True)  # taken: the default moves on
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_export(pilot, app, count=2)
        assert screen.choices.formats == ("hf",)
        assert "gguf needs a byte-level BPE vocabulary" in text_of(screen, "#export-why-not")
        assert screen.query_one("#export-out", Input).value == str(tui_home / "exports" / "chars-hf-2")
        assert screen.query_one("#export-checkpoint", Select).value == "last"  # the only one written
        await pilot.press("escape")
        await pilot.press("down", "X")  # the GRU run: a safetensors bundle only
        assert await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
        await pilot.pause()
        screen = app.screen
        assert screen.choices.formats == ("safetensors",)
        assert "hf and gguf need a Transformer" in text_of(screen, "#export-why-not")
        assert screen.query_one("#export-out", Input).value.endswith("rnn-safetensors")


async def test_an_existing_folder_is_refused_in_a_sentence_and_nothing_is_written(tui_home, tiny_run):
    taken = tui_home / "elsewhere" / "model"
    taken.mkdir(parents=True)
    (taken / "keep.txt").write_text("mine")
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_export(pilot, app)
        screen.query_one("#export-out", Input).value = str(taken)
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: screen.state == "failed")
        await pilot.pause()
        assert "already exists and is not an empty folder" in text_of(screen, "#export-error")
        assert screen.query_one("#export-error").display
        assert sorted(p.name for p in taken.parent.iterdir()) == ["model"]  # no half-written folder beside it
        assert [p.name for p in taken.iterdir()] == ["keep.txt"]
        assert screen.query_one("#export-form").display and not screen.query_one("#export-form").disabled
