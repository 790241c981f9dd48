"""The training ETA: seconds per step over a recent window, never from the warm-up.

A run's first steps are slow (torch.compile compiles, the allocator and the kernels
warm up; after a resume all of it again), and a machine's speed changes while it
trains (another job starts, a laptop throttles). An average over the whole run carries
both for ever: it said 1h 59m for a 15-minute run. So the rate is the time of the
last `window_s` seconds of steps over their count, and the steps right after a
(re)start are not timed at all: until later ones are, the ETA is unknown (NaN, shown
as "-").

Steps are timed in stretches between two device syncs (the trainer syncs only at
log steps), so the estimator takes (steps, seconds) pairs and needs no extra sync.
Evaluations (with their sample and checkpoint) are timed apart and added once per
evaluation still to come.
"""

from __future__ import annotations

import math
from collections import deque


class EtaEstimator:
    """Seconds per step over the recent stretches; the first `skip_steps` steps after a
    (re)start are warm-up. A stretch is kept or skipped whole: the first one always
    goes (it holds the first step), later ones while they end within the warm-up."""

    def __init__(self, skip_steps: int = 10, window_s: float = 30.0, min_steps: int = 10):
        self.skip_steps = skip_steps
        self.window_s = window_s
        self.min_steps = min_steps  # a slow run keeps at least this many steps in its window
        self.eval_s = 0.0  # the latest evaluation's duration
        self.restart()

    def restart(self) -> None:
        """Forget every timing (the trainer starts or resumes)."""
        self._stretches: deque[tuple[int, float]] = deque()
        self._steps = 0
        self._seconds = 0.0
        self._skipped: int | None = None  # None: the first stretch is still to come

    def add(self, steps: int, seconds: float) -> None:
        """`steps` training steps took `seconds` of wall time (measured between syncs)."""
        if steps <= 0 or not math.isfinite(seconds) or seconds < 0:
            return
        if self._skipped is None:
            self._skipped = steps
            return
        if self._skipped + steps <= self.skip_steps:
            self._skipped += steps
            return
        self._stretches.append((steps, seconds))
        self._steps += steps
        self._seconds += seconds
        # Drop the oldest stretches while the rest still spans the window.
        while len(self._stretches) > 1:
            old_steps, old_seconds = self._stretches[0]
            if self._seconds - old_seconds < self.window_s or self._steps - old_steps < self.min_steps:
                break
            self._stretches.popleft()
            self._steps -= old_steps
            self._seconds -= old_seconds

    def add_eval(self, seconds: float) -> None:
        """An evaluation (and the sample and checkpoint after it) took `seconds`."""
        if math.isfinite(seconds) and seconds >= 0:
            self.eval_s = seconds

    @property
    def seconds_per_step(self) -> float:
        return self._seconds / self._steps if self._steps else math.nan

    def eta(self, steps: int, evals: int = 0) -> float:
        """Seconds for `steps` more training steps and `evals` more evaluations; NaN until
        a rate is known."""
        per_step = self.seconds_per_step
        if math.isnan(per_step):
            return math.nan
        return per_step * max(0, steps) + self.eval_s * max(0, evals)


def evals_left(done: int, max_steps: int, interval: int) -> int:
    """Evaluations still to come once `done` steps are trained: at every multiple of
    `interval` from `done` on (the one at `done` itself has not run yet) and at the end."""
    if done > max_steps or interval <= 0:
        return 0
    first = -(-done // interval) * interval  # the first multiple >= done
    count = (max_steps - first) // interval + 1 if first <= max_steps else 0
    return count + (1 if max_steps % interval else 0)
