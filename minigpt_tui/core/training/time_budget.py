"""A run sized in minutes (train.time_budget = "10m", `--minutes 10`) rather than in steps.

People think in minutes, and a recipe sized in steps for one machine stops another, slower one
with its learning rate barely decayed. With a budget, the run's max_steps (which the cosine
schedule decays to) is sized from the rate this machine measures: the recipe's max_steps is only
the first guess, shown until the first steps have been timed (a pilot of a few log intervals
after the warm-up the ETA skips too); from then on, every `resize_every_s` seconds (more often
near the end), max_steps becomes the step that ends the run, its evaluations and their
checkpoints included, when the budget is spent. So the run ends on time, with its learning rate
decayed and a final evaluation, on whatever machine it is.

What counts: the training loop's time, evaluations and checkpoints included, from the step-0
evaluation on; set-up (imports, reading the corpus, building the model) does not. A resumed run
reads the time its checkpoint had used and spends what is left; the time between that checkpoint
and the stop is not counted, as those steps are trained again.
"""

from __future__ import annotations

import math

from minigpt_tui.core.training.eta import EtaEstimator, evals_left


class TimeBudget:
    def __init__(self, seconds: float, used_s: float = 0.0, resize_every_s: float | None = None):
        self.seconds = seconds
        self.used_before = used_s  # by the sessions before this one (a resumed run)
        # Often enough to follow a machine whose speed changes, rarely enough that the
        # schedule does not jitter: every 5% of the budget, between 5 and 30 seconds.
        self.resize_every_s = resize_every_s if resize_every_s is not None else min(30.0, max(5.0, seconds / 20))
        self.sized = False  # max_steps has been set from a measured rate at least once
        self._last_resize = -math.inf

    def used(self, session_s: float) -> float:
        """Seconds of the budget used once this session has run `session_s` seconds."""
        return self.used_before + session_s

    def due(self, session_s: float) -> bool:
        """Is it time to size the schedule again? Every resize_every_s, and more often as the end
        nears (every tenth of what is left, down to 0.2 s): a machine that slows down near the
        end would otherwise spend the budget before the schedule has decayed."""
        left = self.seconds - self.used(session_s)
        every = min(self.resize_every_s, max(0.2, left / 10))
        return not self.sized or session_s - self._last_resize >= every

    def max_steps(self, step: int, session_s: float, seconds_per_step: float, eval_s: float,
                  eval_interval: int) -> int:
        """The max_steps that spends what is left of the budget, for a run about to train step
        `step` at `seconds_per_step` with evaluations of `eval_s` every `eval_interval` steps and
        at the end; `step` itself when nothing is left (the final evaluation then runs at once)."""
        self.sized, self._last_resize = True, session_s
        left = self.seconds - self.used(session_s)

        def cost(n: int) -> float:  # n more steps, then the evaluations they reach
            return n * seconds_per_step + evals_left(step, step + n, eval_interval) * eval_s

        if left <= 0 or not seconds_per_step > 0 or cost(1) > left:
            return step
        lo, hi = 1, 2
        while cost(hi) <= left:  # cost grows with n: double, then bisect
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if cost(mid) <= left else (lo, mid)
        return step + lo

    def resize(self, trainer, session_s: float, eta: EtaEstimator) -> bool:
        """At a log step of `trainer`: its config's max_steps made the step that spends the budget,
        from the rate `eta` measures (every few seconds; at once when the budget is spent). Rank 0
        decides for every rank. True when max_steps changed."""
        t = trainer.config.train
        decided = (t.max_steps, self.sized)
        spent = self.used(session_s) >= self.seconds
        if trainer.dist.is_main and (spent or (self.due(session_s) and not math.isnan(eta.seconds_per_step))):
            decided = (self.max_steps(trainer.step, session_s, eta.seconds_per_step, eta.eval_s, t.eval_interval), True)
        if trainer.dist.enabled:
            decided = trainer.dist.broadcast(decided)
        new, self.sized = decided
        changed, t.max_steps = new != t.max_steps, new
        return changed
