"""Issue 13, defect 4: the corpus field's check is the trainer's, and a hint too long for its line
ends with an ellipsis."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.style import Style
from textual.widgets import Input, Static

from minigpt_tui.core.config import DataConfig
from minigpt_tui.core.data.corpus import load_corpus
from minigpt_tui.core.errors import CorpusError
from minigpt_tui.tui.app import MiniGPTApp
from minigpt_tui.tui.palette import colour


def trainer_sentence(path_text: str) -> str:
    with pytest.raises(CorpusError) as err:
        load_corpus(DataConfig(path=path_text))
    return str(err.value)


def hint_line(app) -> str:
    """The corpus hint as drawn on screen (its one line, cut to the widget's width)."""
    hint = app.query_one("#corpus-hint", Static)
    return hint.render_line(0).text.rstrip()


async def type_corpus(app, pilot, text: str) -> None:
    field = app.query_one("#f-data-path", Input)
    field.focus()
    field.value = ""
    await pilot.press(*text)
    await pilot.pause()
    assert field.value == text


@pytest.mark.skipif(not Path("/bin/ls").is_file(), reason="no /bin/ls here")
async def test_a_binary_corpus_is_red_in_the_form_and_start_is_refused_with_the_trainers_sentence():
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await type_corpus(app, pilot, "/bin/ls")
        assert hint_line(app) == "✗ binary file, not text"
        red = Style.parse(colour(app, "bad")).color
        drawn = app.query_one("#corpus-hint", Static).render_line(0)
        assert all(seg.style.color == red for seg in drawn if seg.text.strip())
        assert app.train.config is None
        await pilot.click("#start")
        await pilot.pause()
        assert not app.train.training
        sentence = trainer_sentence("/bin/ls")
        assert "binary" in sentence
        assert any(n.title == "Cannot start" and n.message == sentence for n in app._notifications)


async def test_dev_zero_is_not_a_regular_file_in_the_form():
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await type_corpus(app, pilot, "/dev/zero")
        assert hint_line(app) == "✗ not a regular file"
        await pilot.click("#start")
        await pilot.pause()
        assert any(n.message == trainer_sentence("/dev/zero") for n in app._notifications)


async def test_a_hint_too_long_for_its_line_ends_with_an_ellipsis(tmp_path):
    folder = tmp_path / "wikitext"
    folder.mkdir()
    (folder / "wiki.train.tokens").write_text("")
    (folder / "wiki.valid.tokens").write_text("some text\n")
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app.query_one("#f-data-path", Input).value = str(folder)
        await pilot.pause()
        full = str(app.query_one("#corpus-hint", Static).render())
        shown = hint_line(app)
        assert len(full) > len(shown) and shown.endswith("…")
        assert shown.startswith("✗ wiki.train.tokens")
