"""The sampling settings, with one table of limits for every place that checks them.

The command line validates them (a bad value is an error), the app's settings
file clamps them (a hand-edited value is pulled back into range), and the
Generate tab steps them with keys; all three read LIMITS, so they cannot drift
apart. Torch-free: the app imports this at start-up, before any model exists
(core.generation.sampling re-exports it for the sampler's callers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Limit:
    """The valid range of one numeric setting. An open end is itself invalid
    (top-p must be > 0); `None` leaves that side unbounded.

    `step` is the resolution the app works in: stepping rounds to its decimals,
    and clamping a value past an open end stops one step inside it.
    """

    low: float
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    step: float = 1
    hint: str = ""  # what the error message adds in brackets, e.g. "0 means greedy"

    def contains(self, value) -> bool:
        """False for NaN too (every comparison with it is)."""
        above = value > self.low if self.low_open else value >= self.low
        if self.high is None:
            return above
        return above and (value < self.high if self.high_open else value <= self.high)

    def clamp(self, value):
        """The nearest valid value (an int stays an int: the bounds of int settings are ints)."""
        too_low = value <= self.low if self.low_open else value < self.low
        if too_low:
            return self.low + self.step if self.low_open else self.low
        too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if too_high:
            return self.high - self.step if self.high_open else self.high
        return value

    @property
    def decimals(self) -> int:
        return len(f"{self.step:g}".partition(".")[2])  # 0.05 -> 2, 0.1 -> 1, 1 -> 0

    def describe(self) -> str:
        """The range as the error messages say it: '>= 0', '> 0', 'in (0, 1]'."""
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


# The numeric settings that have limits, in the order validate() checks them. Temperatures
# above 5 flatten any model's distribution to noise; it is also where the Generate tab's
# temperature key stops.
LIMITS: dict[str, Limit] = {
    "temperature": Limit(0.0, 5.0, step=0.1, hint="0 means greedy"),
    "top_k": Limit(0, hint="0 turns it off"),
    "top_p": Limit(0.0, 1.0, low_open=True, step=0.05, hint="1 turns it off"),
    "min_p": Limit(0.0, 1.0, high_open=True, step=0.01, hint="0 turns it off"),
    "repetition_penalty": Limit(0.0, low_open=True, step=0.1, hint="1 turns it off"),
    "repetition_window": Limit(1),
    "max_new_tokens": Limit(0),
}
FLOAT_SETTINGS = ("temperature", "top_p", "min_p", "repetition_penalty")


def option(name: str) -> str:
    """The command-line option of a setting: top_p -> --top-p (the messages name settings so)."""
    return "--" + name.replace("_", "-")


@dataclass
class SamplingSettings:
    """How the sampler picks tokens (core.generation.sampling documents each filter). A sampler
    re-reads them at every token, so they may change while it runs."""

    temperature: float = 0.8
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1.0: off
    min_p: float = 0.0  # 0.0: off
    repetition_penalty: float = 1.0  # 1.0: off
    repetition_window: int = 64
    seed: int = 1337
    max_new_tokens: int = 500
    stop: list[str] = field(default_factory=list)
    # Tokens the run's training text never held (a char model's <unk>, a BPE's unused bytes) are
    # never sampled (Sampler's `banned`); True lets the model write them as its weights say.
    allow_unk: bool = False

    def validate(self) -> None:
        """Raise ValueError with one sentence naming the first bad setting."""
        for name, limit in LIMITS.items():
            if not limit.contains(getattr(self, name)):
                hint = f" ({limit.hint})" if limit.hint else ""
                raise ValueError(f"{option(name)} must be {limit.describe()}{hint}.")
        if not all(self.stop):
            raise ValueError("--stop needs a non-empty string.")
        for name in FLOAT_SETTINGS:
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{option(name)} must be a finite number.")

    def clamp(self) -> "SamplingSettings":
        """Pull values a hand-edited settings file may hold back into their ranges; returns self."""
        for name, limit in LIMITS.items():
            setattr(self, name, limit.clamp(getattr(self, name)))
        return self

    def stepped(self, name: str, delta: float) -> float:
        """The value of `name` moved by `delta`, kept within its limits and rounded to its
        step's decimals (so ten steps of 0.1 from 0 give 1.0, not 0.9999999999999999)."""
        limit = LIMITS[name]
        return round(limit.clamp(getattr(self, name) + delta), limit.decimals)
