"""Picking a named corpus (the catalogue, core/data/catalogue.py) in the Train tab: the corpus field
suggests the names, `c` opens a list of them, and a corpus not downloaded says how to fetch it."""

from __future__ import annotations

import json

from textual.widgets import Input, OptionList, Static

from minigpt_tui.core.data import catalogue
from minigpt_tui.tui.app import MiniGPTApp
from minigpt_tui.tui.screens import ConfirmScreen, RunPickerScreen

from tui_helpers import wait_for


def hint(app) -> str:
    return str(app.query_one("#corpus-hint", Static).render())


def fake_fetched_wikitext2(data_home) -> None:
    """wikitext-2 as a finished fetch leaves it (its files and the marker)."""
    folder = data_home / "corpora" / "wikitext-2"
    folder.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        (folder / f"wiki.{split}.tokens").write_text(f" = {split} = \n some {split} words .\n" * 20)
    (folder / catalogue.MARKER).write_text(json.dumps({"name": "wikitext-2", "files": {}}))


async def test_typing_a_catalogue_name_suggests_it_and_a_missing_one_says_how_to_fetch_it():
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(100, 30)) as pilot:
        field = app.query_one("#f-data-path", Input)
        field.focus()
        field.value = ""
        await pilot.press(*"tiny-sh")
        assert await wait_for(pilot, lambda: field._suggestion == "tiny-shakespeare")
        await pilot.press("right")  # takes the suggestion
        assert field.value == "tiny-shakespeare"
        assert await wait_for(pilot, lambda: hint(app).startswith("✗ not downloaded"))
        assert hint(app) == "✗ not downloaded; run minigpt-tui --corpus fetch tiny-shakespeare"
        assert app.train.config is None
        await pilot.click("#start")
        await pilot.pause()
        assert not app.train.training
        assert any(n.title == "Cannot start" and n.message == "Corpus tiny-shakespeare is not downloaded yet; "
                   "fetch it with: minigpt-tui --corpus fetch tiny-shakespeare" for n in app._notifications)


async def test_c_opens_the_catalogue_and_picking_a_fetched_corpus_fills_the_field(tui_home):
    fake_fetched_wikitext2(tui_home)
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(100, 30)) as pilot:
        app.train.focus_default()
        await pilot.press("c")
        assert await wait_for(pilot, lambda: isinstance(app.screen, RunPickerScreen))
        options = app.screen.query_one(OptionList)
        shown = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert [line.split()[0] for line in shown] == catalogue.names()
        assert "not downloaded" in shown[catalogue.names().index("text8")]
        assert "here, " in shown[catalogue.names().index("wikitext-2")]
        options.highlighted = catalogue.names().index("wikitext-2")
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: not isinstance(app.screen, RunPickerScreen))
        assert app.query_one("#f-data-path", Input).value == "wikitext-2"
        assert await wait_for(pilot, lambda: hint(app) == "✓ wikitext-2 (catalogue): WikiText folder (.tokens)")
        assert app.train.config is not None and app.train.config.data.path == "wikitext-2"
        # kjv, the built-in corpus, is the empty field
        await pilot.press("escape")
        app.train.focus_default()
        await pilot.press("c")
        assert await wait_for(pilot, lambda: isinstance(app.screen, RunPickerScreen))
        app.screen.query_one(OptionList).highlighted = 0
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: app.query_one("#f-data-path", Input).value == "")
        assert await wait_for(pilot, lambda: hint(app) == "✓ built-in KJV Bible")


async def test_picking_a_missing_corpus_offers_to_download_it_and_the_form_can_use_it_then(tui_home, monkeypatch):
    from corpus_server import Server, zip_bytes

    server = Server()
    try:
        monkeypatch.setenv(catalogue.MIRROR_ENV, server.url)
        texts = {s: f" = {s} = \n some {s} words .\n" * 20 for s in ("train", "valid", "test")}
        server.files["/wikitext-2-raw-v1.zip"] = zip_bytes(
            {f"wikitext-2-raw/wiki.{s}.raw": t.encode() for s, t in texts.items()})
        app = MiniGPTApp(save=False)
        async with app.run_test(size=(100, 30)) as pilot:
            app.train.focus_default()
            await pilot.press("c")
            assert await wait_for(pilot, lambda: isinstance(app.screen, RunPickerScreen))
            app.screen.query_one(OptionList).highlighted = catalogue.names().index("wikitext-2-raw")
            await pilot.press("enter")
            assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            assert "wikitext-2-raw is not downloaded yet. Download it now?" in str(
                app.screen.query_one("#question", Static).render())
            await pilot.press("y")
            assert await wait_for(pilot, lambda: hint(app) == "✓ wikitext-2-raw (catalogue): WikiText folder (.raw)")
            assert await wait_for(pilot, lambda: not app.query_one("#corpus-fetch", Static).display)
            assert any(n.title == "Corpus ready" for n in app._notifications)
            assert app.train.config is not None and app.train.config.data.path == "wikitext-2-raw"
            assert (tui_home / "corpora" / "wikitext-2-raw" / "wiki.valid.raw").read_text() == texts["valid"]
    finally:
        server.close()


async def test_a_download_that_fails_in_the_app_is_one_sentence_in_a_notification(tui_home, monkeypatch):
    from corpus_server import Server

    server = Server()  # serves nothing: every file is 404
    try:
        monkeypatch.setenv(catalogue.MIRROR_ENV, server.url)
        app = MiniGPTApp(save=False)
        async with app.run_test(size=(100, 30)) as pilot:
            app.train.fetch_corpus(catalogue.get("text8"))
            assert await wait_for(pilot, lambda: any(n.title == "Download failed" for n in app._notifications))
            failed = next(n for n in app._notifications if n.title == "Download failed")
            assert failed.message == (f"Download of {server.url}dc/text8.zip failed: the server answered HTTP 404 "
                                      "Not Found.")
            assert await wait_for(pilot, lambda: not app.query_one("#corpus-fetch", Static).display)
            assert not catalogue.is_present(catalogue.get("text8"))
    finally:
        server.close()
