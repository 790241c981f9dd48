"""Issue 13, part 3: a run can be followed from its files by a process that is not its parent.

The trainer writes its events to <run>/events.jsonl and its pid into the lock it holds;
core.runs.follow reads them back."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import pytest

from minigpt_tui.core.runs import events as ev
from minigpt_tui.core.runs.follow import RunFollower, peek, training_runs
from minigpt_tui.core.runs.run_dir import RunDir
from minigpt_tui.core.training.trainer import Trainer

from kit import make_fake_run, tiny_config

TINY = ["--set", "model.n_layer=1", "--set", "model.n_embd=16", "--set", "model.n_head=2",
        "--set", "model.context_length=16", "--set", "train.batch_size=4", "--set", "train.eval_batches=1",
        "--set", "train.sample_tokens=10", "--set", "train.device=cpu", "--set", "train.threads=1",
        "--set", "train.log_interval=1"]


def started(name="r", run_dir="/r", start_step=0, max_steps=100) -> ev.Started:
    return ev.Started(name, run_dir, "transformer", "char", "c", 20, math.log(20), 1000, start_step, max_steps,
                      64, "cpu", "float32")


def test_the_trainer_writes_every_event_and_its_pid_into_the_run(tiny_corpus, tmp_path):
    seen, during = [], []

    def emit(event):
        seen.append(event)
        if isinstance(event, ev.Step) and not during:
            run = RunDir(seen[0].run_dir)
            during.append((run.is_training(), run.trainer_pid(), peek(run).step))

    trainer = Trainer(tiny_config(tiny_corpus, max_steps=12, eval_interval=5), emit, recipe_name="tiny",
                      runs_root=tmp_path / "runs")
    done = trainer.run()
    run = RunDir(done.run_dir)
    assert during == [(True, os.getpid(), 0)]  # the lock names its holder; the first step is on disk at once
    lines = run.events_path.read_text().splitlines()
    assert [json.loads(line)["type"] for line in lines] == [e.type for e in seen] + ["done"]
    assert lines == [ev.encode(e) for e in seen + [done]]
    # A follower reads the same events and knows the run is over.
    follower = RunFollower(run.path)
    events = follower.poll()
    assert [ev.encode(e) for e in events] == lines and follower.ended
    assert peek(run).step == 11 and peek(run).max_steps == 12

    # A resumed session starts a new file with its own Started.
    Trainer(tiny_config(tiny_corpus, max_steps=14, eval_interval=5), lambda e: None, resume_dir=run.path).run()
    first = ev.decode(run.events_path.read_text().splitlines()[0])
    assert isinstance(first, ev.Started) and first.start_step == 12


def test_the_follower_reads_complete_lines_and_follows_a_new_session(tmp_path):
    run = RunDir(make_fake_run(tmp_path, "r"))
    run.lock()  # "the trainer" is this test
    path = run.events_path
    follower = RunFollower(run.path)
    assert follower.poll() == [] and not follower.ended  # not written yet: wait
    path.write_text(ev.encode(started()) + "\n" + ev.encode(ev.Step(0, 3.0, 1e-3, 10.0, 0.1, math.nan))[:20])
    assert [e.type for e in follower.poll()] == ["started"]  # the torn line waits for its end
    assert follower.pid == os.getpid()
    with open(path, "a") as f:
        f.write(ev.encode(ev.Step(0, 3.0, 1e-3, 10.0, 0.1, math.nan))[20:] + "\nnot json\n")
    (step,) = follower.poll()
    assert isinstance(step, ev.Step) and step.loss == 3.0
    # A new session (a resume) is a new file, read from its start.
    tmp = path.with_name("new")
    tmp.write_text(ev.encode(started(start_step=50)) + "\n")
    os.replace(tmp, path)
    (event,) = follower.poll()
    assert isinstance(event, ev.Started) and event.start_step == 50
    with open(path, "a") as f:
        f.write(ev.encode(ev.Done(60, str(run.path), "finished", 1.5, 3.0)) + "\n")
        f.write(ev.encode(ev.Step(61, 3.0, 1e-3, 10.0, 0.1, 1.0)) + "\n")  # (never read: the run is over)
    assert [e.type for e in follower.poll()] == ["done"] and follower.ended
    assert follower.poll() == []
    run.release()


def test_a_trainer_gone_without_a_word_ends_the_follow_with_what_meta_says(tmp_path):
    run = RunDir(make_fake_run(tmp_path, "r"))  # meta.json says "stopped" at step 400
    run.events_path.write_text(ev.encode(started()) + "\n")
    follower = RunFollower(run.path)  # nobody holds the lock: the trainer is gone
    events = follower.poll()
    assert [e.type for e in events] == ["started", "done"] and follower.ended
    assert events[-1].reason == "stopped" and events[-1].step == 400
    meta = run.read_meta()
    meta.status = "training"  # killed: meta.json still says training
    run.write_meta(meta)
    (_, last) = RunFollower(run.path).poll()
    assert isinstance(last, ev.Error) and "killed" in last.message


def test_training_runs_lists_only_runs_whose_lock_is_held(tmp_path):
    root = tmp_path / "runs"
    busy, idle = RunDir(make_fake_run(tmp_path, "busy")), RunDir(make_fake_run(tmp_path, "idle"))
    busy.lock()
    with open(busy.events_path, "w") as f:
        f.write(ev.encode(started(max_steps=1000)) + "\n")
        f.write(ev.encode(ev.Step(120, 2.5, 1e-3, 10.0, 1.0, 42.0)) + "\n")
        f.write(ev.encode(ev.Eval(100, 2.6, 2.7, 2.7)) + "\n")
    (found,) = training_runs(root)
    assert (found.name, found.pid, found.step, found.max_steps, found.loss, found.eta_s, found.best_val_loss) == \
        ("busy", os.getpid(), 120, 1000, 2.5, 42.0, 2.7)
    assert not RunFollower(idle.path).stop_trainer()  # nobody trains it
    assert not RunFollower(busy.path).stop_trainer()  # never this process itself
    busy.release()
    assert training_runs(root) == [] and training_runs(tmp_path / "nowhere") == []


@pytest.mark.slow
def test_a_headless_trainer_is_followed_from_another_process(tiny_corpus, data_home):
    env = {**os.environ, "MINIGPT_TUI_HOME": str(data_home)}
    proc = subprocess.Popen([sys.executable, "-m", "minigpt_tui", "--train", *TINY, "--set",
                             f"data.path={tiny_corpus}", "--set", "train.max_steps=300", "--set",
                             "train.eval_interval=100"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not training_runs() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        (found,) = training_runs()
        assert found.pid == proc.pid
        follower, events = RunFollower(found.path), []
        while not follower.ended and time.monotonic() < deadline:
            events += follower.poll()
            time.sleep(0.1)
    finally:
        proc.wait(60)
        err = proc.stderr.read()
        proc.stderr.close()
    assert proc.returncode == 0, err
    types = [e.type for e in events]
    assert types[0] == "started" and types[-1] == "done" and events[-1].reason == "finished"
    assert [e.step for e in events if isinstance(e, ev.Step)] == list(range(300))


@pytest.mark.slow
def test_a_followed_trainer_can_be_asked_to_stop(tiny_corpus, data_home):
    """Stop on a watched run sends SIGTERM to the pid the lock names: the trainer saves and ends."""
    env = {**os.environ, "MINIGPT_TUI_HOME": str(data_home)}
    proc = subprocess.Popen([sys.executable, "-m", "minigpt_tui", "--train", *TINY, "--set",
                             f"data.path={tiny_corpus}", "--set", "train.max_steps=100000", "--set",
                             "train.eval_interval=100000"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not training_runs() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        (found,) = training_runs()
        follower, events = RunFollower(found.path), []
        while not any(isinstance(e, ev.Step) for e in events) and time.monotonic() < deadline:
            events += follower.poll()
            time.sleep(0.05)
        assert follower.stop_trainer() and follower.pid == proc.pid
        while not follower.ended and time.monotonic() < deadline:
            events += follower.poll()
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.wait(60)
        err = proc.stderr.read()
        proc.stderr.close()
    assert proc.returncode == 0, err
    assert isinstance(events[-1], ev.Done) and events[-1].reason == "stopped"
    assert RunDir(found.path).checkpoint_path("last").is_file()  # it saved before it ended


def test_a_look_at_a_run_lock_while_another_look_is_under_way_sees_no_trainer(tmp_path):
    import fcntl

    from minigpt_tui.core import file_lock

    path = tmp_path / "lock"
    path.touch()
    other_look = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(other_look, fcntl.LOCK_SH | fcntl.LOCK_NB)  # e.g. the training bar, peeking in its thread
        assert file_lock.held(path) is False
    finally:
        os.close(other_look)
    lock = file_lock.acquire(path)
    assert file_lock.held(path) is True
    lock.release()
    assert file_lock.held(path) is False
