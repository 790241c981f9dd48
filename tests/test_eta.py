"""Issue 13, defect 2: the ETA follows the recent rate, never the warm-up.

The estimator is fed synthetic step times; the trainer test slows its first steps
down (as compile and allocator warm-up do) and checks the ETA it reports."""

from __future__ import annotations

import math
import time

import pytest

from minigpt_tui.core.runs import events as ev
from minigpt_tui.core.training.eta import EtaEstimator, evals_left
from minigpt_tui.core.training.trainer import Trainer

from kit import tiny_config


def feed(eta: EtaEstimator, step_s: float, steps: int, per_log: int = 1) -> None:
    for _ in range(steps // per_log):
        eta.add(per_log, step_s * per_log)


def test_no_eta_until_some_steps_past_the_start_are_timed():
    eta = EtaEstimator(skip_steps=5)
    assert math.isnan(eta.eta(100))
    feed(eta, 0.1, 5)
    assert math.isnan(eta.eta(100))  # all five were warm-up
    feed(eta, 0.1, 1)
    assert eta.eta(100) == pytest.approx(10.0)


def test_a_slow_start_then_a_steady_rate_gives_the_steady_eta():
    eta = EtaEstimator(skip_steps=5, window_s=30.0)
    eta.add(1, 20.0)  # the first step compiles
    feed(eta, 2.0, 4)  # the allocator settles
    feed(eta, 0.05, 200)
    assert eta.eta(1000) == pytest.approx(50.0)
    # The whole-run average this replaces said (20 + 8 + 10) / 205 s a step: 185 s.


def test_a_rate_change_is_followed_within_the_window():
    eta = EtaEstimator(skip_steps=0, window_s=10.0)
    feed(eta, 0.1, 600)  # 60 s at 0.1 s a step
    feed(eta, 0.2, 60)  # another job starts: 12 s at 0.2 s a step, more than the window
    assert eta.seconds_per_step == pytest.approx(0.2, rel=0.05)
    feed(eta, 0.05, 400)  # ...and ends
    assert eta.seconds_per_step == pytest.approx(0.05, rel=0.05)


def test_stretches_between_log_steps_and_evaluations_count():
    eta = EtaEstimator(skip_steps=10, window_s=30.0)
    eta.add(1, 5.0)  # step 0, logged alone: skipped
    eta.add(10, 1.0)  # steps 1-10 end past skip_steps: timed (a stretch is timed as a whole)
    assert eta.eta(100) == pytest.approx(10.0)
    eta.add_eval(3.0)
    assert eta.eta(100, evals=2) == pytest.approx(16.0)
    eta.restart()  # a resume: nothing measured before it counts
    assert math.isnan(eta.eta(100))


def test_evals_left_counts_every_interval_and_the_end():
    assert evals_left(done=0, max_steps=100, interval=50) == 3  # 0, 50, 100
    assert evals_left(done=1, max_steps=100, interval=50) == 2
    assert evals_left(done=51, max_steps=120, interval=50) == 2  # 100 and the end (120)
    assert evals_left(done=120, max_steps=120, interval=50) == 1
    assert evals_left(done=121, max_steps=120, interval=50) == 0


def test_the_trainer_eta_ignores_a_slow_start(tiny_corpus, tmp_path, monkeypatch):
    """Three slow first steps (1 s each, like a compile) must not weigh on the ETA later on;
    the whole-run average made it several times too long."""
    real_step = Trainer._train_step

    def train_step(self, step, lr):
        if step < 3:
            time.sleep(1.0)
        return real_step(self, step, lr)

    monkeypatch.setattr(Trainer, "_train_step", train_step)
    seen = []
    config = tiny_config(tiny_corpus, model={"n_layer": 1}, max_steps=60, eval_interval=60, batch_size=4,
                         sample_tokens=0, threads=1)
    Trainer(config, seen.append, recipe_name="tiny", runs_root=tmp_path / "runs").run()
    steps = [e for e in seen if isinstance(e, ev.Step)]
    assert math.isnan(steps[0].eta_s) and math.isnan(steps[2].eta_s)  # no rate measured yet
    late = steps[30]  # 29 steps left, about 0.01 s each, then the final evaluation
    assert late.eta_s < 1.5, late  # the whole-run average said 29 x (3 s + 28 x 0.01 s) / 31 = 3.1 s
