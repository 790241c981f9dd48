"""Snapshots of the Generate tab holding a dialogue whose last reply has two versions, at 80x24 and
120x36. Everything is pinned: a fake token source with fixed replies and tokens/s, default settings,
a fixed template. Update with: pytest tests/tui/test_tui_chat_snapshots.py --snapshot-update
"""

from __future__ import annotations

import pytest

from minigpt_tui.core.data.tokenizer import CharTokenizer
from minigpt_tui.core.generation.chat_template import default_template
from minigpt_tui.tui.app import MiniGPTApp
from minigpt_tui.tui.generate.pane import LoadedInfo
from minigpt_tui.tui.settings import AppSettings

from tui_helpers import FakeSampler, wait_for

REPLIES = [
    "It is the east, and Juliet is the sun.\n\n",
    "Good night, good night! Parting is such sweet sorrow.\n\n",
    "O, speak again, bright angel!\n\n",
]


class Replies(FakeSampler):
    def __init__(self):
        super().__init__(list(REPLIES[0]), tokenizer=CharTokenizer(["<unk>", "\n", *map(chr, range(32, 127))]))
        self.calls = 0

    def generate(self, prompt, cancel=None):
        self.pieces = list(REPLIES[self.calls % len(REPLIES)])
        self.calls += 1
        yield from super().generate(prompt, cancel)


async def two_versions(pilot) -> None:
    app = pilot.app
    await pilot.press("3")
    gen = app.generate
    gen.use_sampler(Replies(), LoadedInfo("shakespeare-char-transformer-20260101", None, "best", 1200,
                                          "transformer", 812_672))
    template = default_template(["ROMEO", "JULIET"], "block")
    template.mode = "dialogue"
    gen.chat.template = template
    for words in ["What light through yonder window breaks?", "Wilt thou leave me so unsatisfied?"]:
        gen.prompt.value = words
        await pilot.press("enter")
        n = len(gen.chat.turns)
        assert await wait_for(pilot, lambda: not gen.generating and len(gen.chat.turns) == n)
        await pilot.press("i")
    await pilot.press("escape", "r")
    assert await wait_for(pilot, lambda: not gen.generating and gen.chat.siblings() == (2, 2))
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (120, 36)])
def test_a_dialogue_with_two_versions_of_a_reply(snap_compare, size):
    assert snap_compare(MiniGPTApp(settings=AppSettings(), save=False), terminal_size=size, run_before=two_versions)
