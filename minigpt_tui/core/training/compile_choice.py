"""Whether a run is torch.compile'd: train.compile = true, false or "auto" (the default).

torch.compile fuses the small operations around the matrix products. At shakespeare-char-
transformer's shape on a 2-core CPU it made a float32 step 0.87x as long, and a bf16 one anything
from 0.80x to 1.23x by machine and day, after 28-45 s of compiling on a cold cache and 3-5 s on a
warm one (docs/performance.md). So it pays only from a compile cache kept between runs, only on
a run long enough to earn the compile back, and not on every machine. "auto" judges all three
from what earlier runs of the same shape measured on this machine, kept under minigpt-tui's cache
folder (paths.cache_dir()):

- the compile cache itself: inductor's, in torch-compile/inductor (TORCHINDUCTOR_CACHE_DIR, unless
  the user set it) rather than in /tmp, which a reboot empties;
- a ledger, torch-compile/shapes.json: by shape, the seconds a step took without and with
  compiling and the seconds the latest compile took. Every run of that shape updates it.

A shape is what the compiled graphs depend on: the model's config, the batch size, the precision,
the device type, the number of processes and torch's version. "auto" compiles a shape that has
been compiled before (its cache is warm), whose compiled steps were faster than its plain ones,
and when the steps this run will take save at least twice what the latest compile took (MARGIN);
otherwise the start line says which of these is missing. A shape's first compile is the user's:
train.compile = true.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

import torch

from minigpt_tui.core.config import RunConfig
from minigpt_tui.core.fsutil import atomic_write_text
from minigpt_tui.core.paths import cache_dir
from minigpt_tui.core.training.eta import EtaEstimator

if TYPE_CHECKING:
    from minigpt_tui.core.training.time_budget import TimeBudget

MIN_TIMED_STEPS = 20  # a run times fewer steady steps than this: too few to update the ledger
# "auto" compiles when the steps it will take save this many times what the latest compile took:
# the ledger's timings come from single runs on a machine whose speed moves by 10% from one
# minute to the next, and a compile that only just earns itself back may as well lose.
MARGIN = 2.0


def compile_folder() -> Path:
    return cache_dir() / "torch-compile"


def keep_compile_cache() -> None:
    """Point inductor's cache at minigpt-tui's cache folder (where the ledger says it is warm),
    unless the user chose a folder for it."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(compile_folder() / "inductor"))


def shape_key(config: RunConfig, device: torch.device, dtype: torch.dtype, world_size: int) -> str:
    """What the compiled graphs depend on, as a short hash (the ledger's key)."""
    shape = {"model": dataclasses.asdict(config.model), "batch_size": config.train.batch_size,
             "dtype": str(dtype), "device": device.type, "world_size": world_size,
             "torch": torch.__version__}
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class ShapeTimes:
    """What runs of one shape measured; 0 where nothing was."""

    plain_step_s: float = 0.0  # seconds per step, not compiled
    compiled_step_s: float = 0.0  # seconds per step, compiled
    compile_s: float = 0.0  # the latest compile: its first steps' time beyond that many compiled steps


class CompileLedger:
    """shapes.json: ShapeTimes by shape_key. A missing or unreadable file is an empty ledger (it is
    a cache: deleting it only means "auto" does not compile until a compiled run writes it again)."""

    def __init__(self, path: Path | None = None):
        self.path = path or compile_folder() / "shapes.json"

    def _read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> ShapeTimes | None:
        entry = self._read().get(key)
        if not isinstance(entry, dict):
            return None
        fields = {f.name for f in dataclasses.fields(ShapeTimes)}
        try:
            return ShapeTimes(**{k: float(v) for k, v in entry.items() if k in fields})
        except (TypeError, ValueError):
            return None

    def update(self, key: str, **times: float) -> None:
        """Set some of a shape's times (the others stay). Not fatal: a run never fails for its cache."""
        data = self._read()
        entry = data.get(key) if isinstance(data.get(key), dict) else {}
        data[key] = {**entry, **{k: round(v, 6) for k, v in times.items()}}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(data, indent=1, sort_keys=True))
        except OSError:
            pass


def choose(setting: bool | str, times: ShapeTimes | None, steps: int) -> tuple[bool, str]:
    """Whether to compile a run of `steps` steps, and the start line's words on it ("" for
    train.compile = false, which is the plain run it always was)."""
    if setting is not True and setting != "auto":
        return False, ""
    if setting is True:
        return True, "compiled (train.compile = true)"
    off = "not compiled: "
    if times is None or times.compiled_step_s <= 0:
        return False, off + "no compile cache for this shape yet (train.compile = true makes one)"
    if times.plain_step_s <= 0:
        return False, off + "no uncompiled timing of this shape yet to weigh the compile against"
    saving = times.plain_step_s - times.compiled_step_s
    if saving <= 0:
        return False, (off + f"compiled steps were no faster here ({times.compiled_step_s * 1e3:.1f} ms against "
                       f"{times.plain_step_s * 1e3:.1f} ms)")
    saved = saving * steps
    if saved < MARGIN * times.compile_s:
        return False, (off + f"{steps:,} steps would save ~{saved:.0f} s, less than twice what the last "
                       f"compile took ({times.compile_s:.0f} s)")
    return True, (f"compiled: warm cache for this shape; the last compile took {times.compile_s:.0f} s and "
                  f"{steps:,} steps save ~{saved:.0f} s")


class CompileChoice:
    """A run's compile decision and, as it trains, the timings the ledger keeps for its shape."""

    def __init__(self, config: RunConfig, device: torch.device, dtype: torch.dtype, steps: int,
                 budget: TimeBudget | None = None, *, world_size: int = 1, records: bool = True,
                 ledger: CompileLedger | None = None):
        self.ledger = ledger or CompileLedger()
        self.records = records  # (under torchrun, rank 0 keeps the ledger)
        self.key = shape_key(config, device, dtype, world_size)
        times = self.ledger.get(self.key)
        if budget is not None and times is not None and times.plain_step_s > 0:  # what is left of a time budget
            steps = int(max(0.0, budget.seconds - budget.used(0.0)) / times.plain_step_s)
        self.on, self.note = choose(config.train.compile, times, steps)
        if self.on:
            keep_compile_cache()
        self.first: tuple[int, float] | None = None  # the first stretch of steps: (steps, seconds)

    def stretch(self, steps: int, seconds: float) -> None:
        """Steps timed between two syncs (the trainer's log steps); the first holds the compile."""
        if self.first is None:
            self.first = (steps, seconds)

    def finish(self, eta: EtaEstimator) -> None:
        """Record this run's steady seconds per step, as `eta` measured them (and, compiled, what
        the compile took)."""
        seconds_per_step = eta.seconds_per_step
        if not self.records or not math.isfinite(seconds_per_step) or eta.timed_steps < MIN_TIMED_STEPS:
            return
        if not self.on:
            self.ledger.update(self.key, plain_step_s=seconds_per_step)
            return
        first_steps, first_s = self.first or (0, 0.0)
        self.ledger.update(self.key, compiled_step_s=seconds_per_step,
                           compile_s=max(0.0, first_s - first_steps * seconds_per_step))
