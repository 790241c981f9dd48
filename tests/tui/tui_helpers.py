"""Helpers for the app's tests: a fake token source and waiting (tiny corpora, configs and runs
are in tests/kit.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from minigpt_tui.core.data.tokenizer import CharTokenizer
from minigpt_tui.core.generation.sampling_settings import SamplingSettings

# ---- a fake token source ------------------------------------------------------------------------


@dataclass
class FakeEvent:
    index: int
    token_id: int
    text: str
    prob: float
    top: list


class FakeSampler:
    """Yields the given pieces as token events (optionally slowly); records the settings it saw."""

    def __init__(self, pieces: list[str], delay: float = 0.0, tokens_per_s: float = 1234.0,
                 tokenizer=None, endless: bool = False):
        self.pieces = pieces
        self.delay = delay
        self.endless = endless
        self.settings = SamplingSettings()
        self.tokenizer = tokenizer or CharTokenizer(["<unk>", "\n", " ", *sorted(set("".join(pieces)) - {"\n", " "})])
        self.tokens_per_s = 0.0
        self._final_tps = tokens_per_s
        self.seen_temperatures: list[float] = []
        self.yielded: list[str] = []
        self.reseeds: list[int | None] = []

    def reseed(self, seed=None):
        if seed is not None:
            self.settings.seed = seed
        self.reseeds.append(seed)

    def generate(self, prompt: str, cancel=None):
        self.yielded = []
        i = 0
        while self.endless or i < len(self.pieces):
            if cancel is not None and cancel():
                break
            if self.delay:
                time.sleep(self.delay)
            piece = self.pieces[i % len(self.pieces)]
            prob = [0.92, 0.45, 0.2, 0.05][i % 4]
            self.seen_temperatures.append(self.settings.temperature)
            self.yielded.append(piece)
            i += 1
            self.tokens_per_s = self._final_tps
            yield FakeEvent(i - 1, 1, piece, prob, [(piece, prob), ("e", 0.2), (" ", 0.1), ("a", 0.05), ("\n", 0.01)])


async def wait_for(pilot, condition, timeout: float = 20.0, step: float = 0.02) -> bool:
    """Let the app run until condition() holds (False on timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await pilot.pause(step)
    return bool(condition())


def focus_id(app) -> str | None:
    """The id of the focused widget (None when nothing has focus)."""
    return getattr(app.focused, "id", None)
