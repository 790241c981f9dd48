"""Resume is exact, and Ctrl-C (SIGINT) and the app's Stop (SIGTERM) both save before exiting.

A trainer process is interrupted by a real signal, then resumed; the finished run
must equal an uninterrupted one bit for bit: every logged loss, the final and best
weights and the best validation loss (model, optimizer, schedule, RNG with dropout
on, and data position all restored). Both model families are covered.
"""

from __future__ import annotations

import os
import signal

import pytest

from minigpt_tui.core.runs import checkpoint as ckpt
from minigpt_tui.core.runs.run_dir import RunDir

from harden import Reference, run_cli, runs_in, spawn, wait_for_event, wait_for_file
from kit import write_corpus, write_recipe

STEPS = 20


@pytest.fixture(scope="module")
def refs(tmp_path_factory) -> dict[str, Reference]:
    folder = tmp_path_factory.mktemp("signals")
    corpus = write_corpus(folder)
    refs = {family: Reference(write_recipe(folder, corpus, family, name=f"tiny-{family}", max_steps=STEPS),
                              folder / f"reference-{family}")
            for family in ("transformer", "gru")}
    # Ten steps: the evaluation of step 10 is the last, so no later one can hide a best.pt not written.
    refs["short"] = Reference(write_recipe(folder, corpus, name="tiny-short", max_steps=10), folder / "reference-short")
    return refs


def _stopped(child, sig: int | None = None) -> tuple[dict, list[dict]]:
    """A run stopped cleanly: Ctrl-C (SIGINT) exits 130, as shells expect; SIGTERM (the app's Stop) 0."""
    result = child.wait()
    assert result.returncode == (130 if sig == signal.SIGINT else 0), result
    events = result.events
    done = events[-1]
    assert done["type"] == "done" and done["reason"] == "stopped", events[-3:]
    return done, events


def _resume_and_compare(ref: Reference, home, monkeypatch, start: int) -> None:
    monkeypatch.setenv("MINIGPT_TUI_HOME", str(home))
    (run,) = runs_in(home)
    assert RunDir(run).info().status == "stopped"
    resumed = run_cli("--train", "--resume", run.name, "--events", "jsonl")
    assert resumed.returncode == 0, resumed
    assert resumed.events[0]["start_step"] == start
    ref.assert_matches(run)


@pytest.mark.parametrize("sig, family", [(signal.SIGINT, "transformer"), (signal.SIGTERM, "gru"),
                                         (signal.SIGTERM, "transformer"), (signal.SIGINT, "gru")],
                         ids=["SIGINT-transformer", "SIGTERM-gru", "SIGTERM-transformer", "SIGINT-gru"])
def test_a_signal_from_outside_saves_and_the_resumed_run_is_exact(sig, family, refs, tmp_path, monkeypatch):
    ref = refs[family]
    home = tmp_path / "home"
    child = spawn(["--train", str(ref.recipe), "--events", "jsonl"], home, "delay:0.05")
    events = wait_for_event(child, "checkpoint")  # past the first checkpoint, mid-interval
    child.signal(sig)
    done, events = _stopped(child, sig)
    stop = done["step"]
    assert 5 <= stop < STEPS
    saved = [e for e in events if e["type"] == "checkpoint" and e["kind"] == "last"]
    assert saved[-1]["step"] == stop  # saved at the step it stopped
    _resume_and_compare(ref, home, monkeypatch, start=stop)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_stop_landing_on_an_evaluation_step_still_ends_with_the_same_best_checkpoint(sig, refs, tmp_path, monkeypatch):
    """Stopped right before the evaluation of step 10: the resumed run evaluates step 10 and
    must write best.pt exactly as the uninterrupted run did."""
    ref = refs["short"]
    home = tmp_path / "home"
    child = spawn(["--train", str(ref.recipe), "--events", "jsonl"], home, f"signal:9:{sig}")
    done, _ = _stopped(child, getattr(signal, sig))
    assert done["step"] == 10
    _resume_and_compare(ref, home, monkeypatch, start=10)


def test_a_second_ctrl_c_during_the_save_stops_at_once_and_keeps_the_last_checkpoint(refs, tmp_path, monkeypatch):
    ref = refs["transformer"]
    home = tmp_path / "home"
    ready = tmp_path / "ready"
    # The first Ctrl-C at step 7 asks for a save; that save (last.pt's 2nd write) hangs half-way.
    child = spawn(["--train", str(ref.recipe), "--events", "jsonl"], home,
                  "signal:7:SIGINT;partial:last.pt:2:0.5", ready)
    wait_for_file(ready, child)
    child.signal(signal.SIGINT)  # the impatient second Ctrl-C
    result = child.wait()
    assert result.returncode == 130, result
    assert result.events[-1]["type"] == "error" and "last checkpoint" in result.events[-1]["message"]
    (run,) = runs_in(home)
    assert list(run.rglob("*.tmp")) == []  # the half-written file was removed
    assert ckpt.load_checkpoint(RunDir(run).checkpoint_path("last"))["step"] == 5
    monkeypatch.setenv("MINIGPT_TUI_HOME", str(home))
    assert RunDir(run).info().status == "interrupted"
    resumed = run_cli("--train", "--resume", run.name, "--events", "jsonl")
    assert resumed.returncode == 0 and resumed.events[0]["start_step"] == 5
    ref.assert_matches(run)


def test_the_event_reader_going_away_is_a_stop_request(refs, tmp_path, monkeypatch):
    """If the app dies, its trainer's stdout pipe breaks: the trainer saves and exits
    (it used to end unsaved with exit status 0)."""
    ref = refs["transformer"]
    home = tmp_path / "home"
    fifo = tmp_path / "events"
    os.mkfifo(fifo)
    child = spawn(["--train", str(ref.recipe), "--events", "jsonl"], home, "delay:0.05", stdout=fifo)
    with open(fifo, encoding="utf-8") as reader:
        for line in reader:
            if '"type": "checkpoint"' in line:
                break  # ... and the reader is gone
    result = child.wait()
    assert result.returncode == 0, result
    (run,) = runs_in(home)
    step = ckpt.load_checkpoint(RunDir(run).checkpoint_path("last"))["step"]
    assert 5 < step < STEPS  # it saved where it stopped, not only at the last evaluation
    monkeypatch.setenv("MINIGPT_TUI_HOME", str(home))
    assert RunDir(run).info().status == "stopped"
    assert run_cli("--train", "--resume", run.name, "--events", "jsonl").returncode == 0
    ref.assert_matches(run)
