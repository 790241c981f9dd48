"""Snapshots of the Generate tab holding a dialogue whose last reply has two versions, at 80x24 and
120x36. The replies are the tiny trained run's (conftest's `tiny_run`: trained on one thread, the
same weights at every run) through the Sampler and ChatSession that production makes, and
everything else is pinned: default settings (seed 1337), the run's own dialogue template, fixed
turns, and the tokens/s figure (`pinned_speed`). Update with:
pytest tests/tui/test_tui_chat_snapshots.py --snapshot-update
"""

from __future__ import annotations

import pytest

from minigpt_tui.tui.app import MiniGPTApp
from minigpt_tui.tui.settings import AppSettings

from tui_helpers import focus_id, wait_for, wait_loaded

TURNS = ["And God said", "In the beginning was the deep"]


async def two_versions(pilot) -> None:
    app = pilot.app
    gen = await wait_loaded(pilot, app)
    assert await wait_for(pilot, lambda: focus_id(app) == "prompt")
    await pilot.press("escape", "m")  # dialogue, in the run's template ("You: ..." / "Model: ...")
    for words in TURNS:
        await pilot.press("i")
        gen.prompt.value = words
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: not gen.generating and gen.chat.last_reply is not None
                              and gen.chat.turns[-2].text == words, timeout=30)
    await pilot.press("r")
    assert await wait_for(pilot, lambda: not gen.generating and gen.chat.siblings() == (2, 2), timeout=30)
    assert gen.chat.template.mode == "dialogue" and [t.text for t in gen.chat.turns[::2]] == TURNS
    app.clear_notifications()  # (m's toast: whether it is still up would depend on the machine's speed)
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (120, 36)])
def test_a_dialogue_with_two_versions_of_a_reply(snap_compare, tiny_run, pinned_speed, size):
    app = MiniGPTApp(run=tiny_run, settings=AppSettings(), save=False)
    assert snap_compare(app, terminal_size=size, run_before=two_versions)
