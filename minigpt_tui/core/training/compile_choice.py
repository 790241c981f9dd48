"""Whether a run is torch.compile'd: train.compile = true, false or "auto" (the default).

torch.compile fuses the small operations around the matrix products. At shakespeare-char-
transformer's shape on a 2-core CPU it made a float32 step 0.87-0.94x as long, and a bf16 one anything
from 0.80x to 1.23x by machine and day, after 28-45 s of compiling on a cold cache and 3-5 s on a
warm one (docs/performance.md); since a plain float32 step runs each block as one written-out step in
C (models/fused_block.py), which a compiled step does not, the compiled one takes ~1.15x the plain
one's time on an AVX2 CPU. So it pays only from a compile cache kept between runs, only on a run long
enough to earn the compile back, and not on every machine. "auto" judges all three from what earlier
runs of the same shape measured on this machine, kept under minigpt-tui's cache folder
(paths.cache_dir()):

- the compile cache itself: inductor's, in torch-compile/inductor (TORCHINDUCTOR_CACHE_DIR, unless
  the user had set it when this module was imported) rather than in /tmp, which a reboot empties;
- a ledger, torch-compile/shapes.json: by shape, the seconds a step took without and with
  compiling, and what the shape's first (cold) compile and its latest warm one took. Every run
  of that shape updates it.

A shape is what the compiled graphs and the step's time depend on: the model's config, the batch
size and accumulation, the optimizer, clipping, the precision, the device type, the threads, the
number of processes, and the versions of torch, Python and minigpt-tui. "auto" compiles a shape
that has been compiled before and whose cache is still there, whose compiled steps were faster
than its plain ones, and when the steps this run will take save at least twice (MARGIN) what a
warm compile takes (the latest one; before there is one, a quarter of the cold one: a warm
compile took 1/6-1/8 of the cold one here). Otherwise the start line says which of these is
missing. A shape's first compile is the user's: train.compile = true.
"""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import json
import math
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from minigpt_tui import __version__
from minigpt_tui.core import native
from minigpt_tui.core.config import RunConfig
from minigpt_tui.core.fsutil import atomic_write_text
from minigpt_tui.core.paths import cache_dir

if TYPE_CHECKING:
    from minigpt_tui.core.training.devices import Distributed
    from minigpt_tui.core.training.time_budget import TimeBudget

MIN_TIMED_STEPS = 20  # a run times fewer steps than this after its first: too few to update the ledger
# "auto" compiles when the steps it will take save this many times what a warm compile takes: the
# ledger's timings come from single runs on a machine whose speed moves by 10% from one minute to
# the next, and a compile that only just earns itself back may as well lose.
MARGIN = 2.0
WARM_SHARE = 0.25  # a warm compile's time, as a share of the cold one, until one is measured


def _users_cache_dir() -> str | None:
    """TORCHINDUCTOR_CACHE_DIR where the user set it. Inductor writes its own default there
    (tempdir/torchinductor_USER) once torch._dynamo is imported (DDP and some optimizers import
    it): that is no choice of the user's. (Inductor's own function for it would import dynamo.)"""
    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not chosen:
        return None
    try:
        user = re.sub(r'[\\/:*?"<>|]', "_", getpass.getuser())
    except (KeyError, ModuleNotFoundError, OSError):
        return chosen
    default = os.path.join(tempfile.gettempdir(), "torchinductor_" + user)
    return None if os.path.abspath(chosen) == os.path.abspath(default) else chosen


USER_CACHE_DIR = _users_cache_dir()  # read at import, before a compiled run sets the variable


def compile_folder() -> Path:
    return cache_dir() / "torch-compile"


def inductor_folder() -> Path:
    """Where compiled code is cached: the user's choice, else ours."""
    return Path(USER_CACHE_DIR) if USER_CACHE_DIR else compile_folder() / "inductor"


def keep_compile_cache() -> None:
    """Point inductor's cache at inductor_folder() for this process. Where that folder cannot be
    made, inductor keeps its default (the compile still runs; its cache is just not kept)."""
    folder = inductor_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)


def cache_is_there() -> bool:
    """Whether inductor's cache folder holds anything (deleting it makes every shape cold again)."""
    try:
        return any(inductor_folder().iterdir())
    except OSError:
        return False


def shape_key(config: RunConfig, device: torch.device, dtype: torch.dtype, world_size: int) -> str:
    """What the compiled graphs and a step's time depend on, as a short hash (the ledger's key)."""
    t = config.train
    shape = {"model": dataclasses.asdict(config.model), "batch_size": t.batch_size, "grad_accum": t.grad_accum,
             "optimizer": t.optimizer, "clipped": t.grad_clip > 0, "threads": torch.get_num_threads(),
             "dtype": str(dtype), "device": device.type, "world_size": world_size,
             "versions": [torch.__version__, sys.version_info[:2], __version__]}
    if config.model.family == "transformer" and device.type == "cpu" and dtype == torch.float32:
        # A plain float32 step of a Transformer on a CPU runs its blocks through the C kernels where
        # they are built (models/fused_block.py) and is then faster than a compiled one (which traces
        # the modules): with and without them are two shapes, or "auto" would weigh the compile
        # against the other's plain time, and a compiled shape never times its plain step again.
        # (Other families' steps take no kernel: their runs do not build them here.)
        shape["c_kernels"] = native.enabled()
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class ShapeTimes:
    """What runs of one shape measured; 0 where nothing was."""

    plain_step_s: float = 0.0  # seconds per step, not compiled
    compiled_step_s: float = 0.0  # seconds per step, compiled
    compile_s: float = 0.0  # the latest warm compile (see CompileChoice.finish for how it is taken)
    cold_compile_s: float = 0.0  # the shape's first compile

    def warm_compile_s(self) -> tuple[float, str]:
        """What a warm compile is expected to take, and how that is known."""
        if self.compile_s > 0:
            return self.compile_s, f"the last warm compile took {self.compile_s:.0f} s"
        estimate = WARM_SHARE * self.cold_compile_s
        return estimate, f"a warm compile estimated at {estimate:.0f} s (the cold one took {self.cold_compile_s:.0f} s)"


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
        times = ShapeTimes()
        for name in (f.name for f in dataclasses.fields(ShapeTimes)):
            value = entry.get(name)
            # (a hand-edited NaN, infinity or negative time is no time: it would pass every test)
            if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
                setattr(times, name, float(value))
        return times

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


def choose(setting: bool | str, times: ShapeTimes | None, steps: int, cache_there: bool = True) -> tuple[bool, str]:
    """Whether to compile a run of `steps` steps, and the start line's words on it ("" for
    train.compile = false, which is the plain run it always was). `cache_there`: inductor's cache
    folder holds something."""
    if setting is not True and setting != "auto":
        return False, ""
    if setting is True:
        return True, "compiled (train.compile = true)"
    off = "not compiled: "
    if times is None or times.compiled_step_s <= 0 or not cache_there:
        return False, off + "no compile cache for this shape yet (train.compile = true makes one, where torch.compile works)"
    if times.plain_step_s <= 0:
        return False, off + "no uncompiled timing of this shape yet to weigh the compile against"
    saving = times.plain_step_s - times.compiled_step_s
    if saving <= 0:
        return False, (off + f"compiled steps were no faster here ({times.compiled_step_s * 1e3:.1f} ms against "
                       f"{times.plain_step_s * 1e3:.1f} ms)")
    saved = saving * max(0, steps)
    compile_s, how = times.warm_compile_s()
    if saved < MARGIN * compile_s:
        return False, off + f"{steps:,} steps would save ~{saved:.0f} s, less than twice {how}"
    return True, f"compiled: warm cache for this shape; {steps:,} steps save ~{saved:.0f} s, and {how}"


class CompileChoice:
    """A run's compile decision (under torchrun, rank 0's, so that every rank runs the same model)
    and, as it trains, the timings the ledger keeps for its shape (rank 0 writes them)."""

    def __init__(self, config: RunConfig, device: torch.device, dtype: torch.dtype, steps: int,
                 budget: TimeBudget | None = None, dist: Distributed | None = None,
                 ledger: CompileLedger | None = None):
        self.ledger = ledger or CompileLedger()
        self.records = dist is None or dist.is_main
        self.key = shape_key(config, device, dtype, dist.world_size if dist is not None else 1)
        times = self.ledger.get(self.key)
        if budget is not None and times is not None and times.plain_step_s > 0:  # what is left of a time budget
            steps = int(max(0.0, budget.seconds - budget.used(0.0)) / times.plain_step_s)
        there = cache_is_there()
        self.on, self.note = choose(config.train.compile, times, steps, there)
        if dist is not None and dist.enabled:
            self.on, self.note = dist.broadcast((self.on, self.note))
        self.warm = self.on and there and times is not None and times.compiled_step_s > 0
        if self.on:
            keep_compile_cache()
        self.first: tuple[int, float] | None = None  # the first stretch of steps (it holds any compile)
        self.steps, self.seconds = 0, 0.0  # the later ones

    def stretch(self, steps: int, seconds: float) -> None:
        """Steps timed between two syncs (the trainer's log steps, evaluations left out)."""
        if self.first is None:
            self.first = (steps, seconds)
        else:
            self.steps, self.seconds = self.steps + steps, self.seconds + seconds

    def finish(self) -> None:
        """Record this run's seconds per step after its first stretch, and, compiled, what the
        compile took: the first stretch's time beyond that many such steps (which also holds the
        warm-up a plain run's first steps pay, so the compile is if anything overrated)."""
        if not self.records or self.steps < MIN_TIMED_STEPS or self.seconds <= 0:
            return
        per_step = self.seconds / self.steps
        if not self.on:
            self.ledger.update(self.key, plain_step_s=per_step)
            return
        first_steps, first_s = self.first or (0, 0.0)
        took = max(0.0, first_s - first_steps * per_step)
        self.ledger.update(self.key, compiled_step_s=per_step, **{"compile_s" if self.warm else "cold_compile_s": took})
