"""A run sized in minutes (train.time_budget, --minutes): it ends on time, its learning rate
decayed and a final evaluation made, whatever max_steps guessed; a resumed run spends what is left."""

from __future__ import annotations

import math

import pytest

from minigpt_tui.core.config import RunConfig
from minigpt_tui.core.errors import ConfigError
from minigpt_tui.core.formatting import parse_duration
from minigpt_tui.core.runs import events as ev
from minigpt_tui.core.runs.run_dir import RunDir
from minigpt_tui.core.training.eta import evals_left
from minigpt_tui.core.training.time_budget import TimeBudget
from minigpt_tui.core.training.trainer import Trainer

from kit import tiny_config

# Slack for the machine: the budget is kept to within a log interval and an evaluation, and a
# loaded 2-core CI machine may stall for a moment.
SLACK_S = 2.0


@pytest.mark.parametrize("text, seconds", [("10m", 600), ("90s", 90), ("1h30m", 5400), ("1.5h", 5400),
                                           ("2m 30s", 150), ("10", 600), (" 4S ", 4)])
def test_durations_read_as_people_write_them(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5", "ten minutes", "10x", "m", "inf", "nan"])
def test_a_bad_duration_is_none_and_a_config_error(text):
    assert parse_duration(text) is None
    if text:
        with pytest.raises(ConfigError, match="train.time_budget must be"):
            RunConfig().with_overrides([f'train.time_budget="{text}"'])


def test_the_steps_that_fit_spend_the_budget_and_no_more():
    budget = TimeBudget(100.0, used_s=20.0)  # 80 s left, less the 10 s this session has run
    step, per_step, eval_s, interval = 40, 0.05, 2.0, 100

    def cost(n):
        return n * per_step + evals_left(step, step + n, interval) * eval_s

    end = budget.max_steps(step, session_s=10.0, seconds_per_step=per_step, eval_s=eval_s, eval_interval=interval)
    assert budget.sized and cost(end - step) <= 70.0 < cost(end - step + 1)
    assert 900 < end - step < 1000  # 70 s of 0.05 s steps, an evaluation of 2 s every 100 of them
    assert budget.max_steps(step, session_s=81.0, seconds_per_step=per_step, eval_s=eval_s,
                            eval_interval=interval) == step  # spent: stop here


def test_a_budget_ends_on_time_with_the_rate_decayed_and_a_final_evaluation(tiny_corpus, tmp_path):
    # max_steps = 5 is a guess the budget overrides: this machine trains far more in 3 s.
    config = tiny_config(tiny_corpus, max_steps=5, time_budget="3s", eval_interval=50, threads=1,
                         learning_rate=3e-3, min_lr=3e-4, warmup_steps=5)
    seen = []
    trainer = Trainer(config, seen.append, recipe_name="tiny", runs_root=tmp_path / "runs")
    done = trainer.run()
    started = seen[0]
    assert started.time_budget_s == 3.0 and started.time_budget_used_s == 0.0
    steps = [e for e in seen if isinstance(e, ev.Step)]
    evals = [e for e in seen if isinstance(e, ev.Eval)]
    assert done.reason == "finished" and done.step > 20  # it did not stop at the guess
    assert done.elapsed_s <= 3.0 + SLACK_S
    assert evals[-1].step == done.step  # the final evaluation
    assert steps[-1].max_steps == done.step
    assert steps[-1].lr - 3e-4 < 0.1 * (3e-3 - 3e-4)  # decayed: within 10% of the way from min_lr
    assert RunDir(trainer.run_dir).read_meta().max_steps == done.step


def test_a_resumed_budget_spends_only_what_is_left(tiny_corpus, tmp_path):
    config = tiny_config(tiny_corpus, max_steps=5, time_budget="4s", eval_interval=20, threads=1)

    def stop_after_a_second(e):
        if isinstance(e, ev.Step) and e.elapsed_s > 1.5 and e.step > 20:
            first.stop_requested = True

    first = Trainer(config, stop_after_a_second, recipe_name="tiny", runs_root=tmp_path / "runs")
    stopped = first.run()
    assert stopped.reason == "stopped"
    seen = []
    resumed = Trainer(config, seen.append, recipe_name="tiny", resume_dir=first.run_dir)
    done = resumed.run()
    used = seen[0].time_budget_used_s
    assert 1.5 <= used <= stopped.elapsed_s + 0.5  # the time up to its checkpoint
    assert done.reason == "finished" and done.step > stopped.step
    assert done.elapsed_s <= 4.0 - used + SLACK_S
    assert not math.isnan(used)


@pytest.mark.slow
def test_minutes_on_the_command_line(tiny_corpus, data_home):
    from test_cli_train import TINY, cli

    result = cli("--train", *TINY, "--set", f"data.path={tiny_corpus}", "--set", "train.threads=1",
                 "--minutes", "0.05", home=data_home)  # 3 seconds
    assert result.returncode == 0, result.stderr
    assert "Time budget 3s: the steps are sized to this machine's measured rate" in result.stdout
    assert "Finished at step" in result.stdout
    bad = cli("--train", "--minutes", "soon", home=data_home)
    assert bad.returncode == 2 and "--minutes: must be a number of minutes > 0, got 'soon'" in bad.stderr
