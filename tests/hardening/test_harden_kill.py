"""Kill at any instant: a trainer SIGKILLed anywhere leaves a run that --list shows,
--generate uses (once a checkpoint exists) and --resume finishes, and the finished
run is bit-for-bit the run that was never killed (weights, best weights, every
logged loss). Some kills are forced inside a write (checkpoint, meta, metrics),
some land at random moments.

The kills run as real processes (two at a time, the suite has 2 cores); the checks
afterwards call the same cli.main in-process.
"""

from __future__ import annotations

import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from minigpt_tui.core.runs import checkpoint as ckpt
from minigpt_tui.core.runs.run_dir import RunDir

from harden import (
    eval_steps,
    losses,
    model_state,
    one_sentence,
    run_cli,
    runs_in,
    same_tensors,
    spawn,
    wait_for_event,
    wait_for_file,
)
from kit import RECIPE_EVAL_INTERVAL as EVAL_INTERVAL
from kit import RECIPE_STEPS as MAX_STEPS
from kit import write_corpus, write_recipe


@dataclass
class Scenario:
    name: str
    faults: str = ""  # for the first trainer (see faulty_trainer.py)
    start: int | None = None  # the step --resume must start from (None: wherever the kill landed)
    kill_after_s: float | None = None  # a kill at a random moment this long after "started"
    mid_write: str = ""  # a temporary file the kill must have left ("checkpoints" or ".")
    then_resume_faults: str = ""  # a resumed trainer killed too, with these faults
    run_made: bool = True  # False: killed before the run folder appeared


_rng = random.Random(20240611)
SCENARIOS = [
    Scenario("building-the-run-folder", "staging", run_made=False),
    Scenario("run-folder-just-made", "made", start=0),
    Scenario("inside-first-meta-write", "partial:meta.json:2:0.5", start=0, mid_write="."),
    Scenario("inside-first-checkpoint-write", "partial:last.pt:1:0.5", start=0, mid_write="checkpoints"),
    Scenario("first-checkpoint-write-began", "partial:last.pt:1:0.0", start=0, mid_write="checkpoints"),
    Scenario("between-last-and-best", "after:last.pt:1", start=EVAL_INTERVAL),
    Scenario("inside-best-write", "partial:best.pt:1:0.9", start=EVAL_INTERVAL, mid_write="checkpoints"),
    Scenario("inside-meta-write-after-checkpoint", "partial:meta.json:3:0.3", start=EVAL_INTERVAL, mid_write="."),
    Scenario("inside-second-checkpoint-write", "partial:last.pt:2:0.5", start=EVAL_INTERVAL, mid_write="checkpoints"),
    Scenario("inside-metrics-append", "append:4:0.5", start=EVAL_INTERVAL),
    Scenario("inside-final-meta-write", "partial:meta.json:6:0.5", start=MAX_STEPS, mid_write="."),
    Scenario("sigterm-then-kill-inside-its-save", "signal:7:SIGTERM;partial:last.pt:2:0.5",
             start=EVAL_INTERVAL, mid_write="checkpoints"),
    Scenario("resume-killed-rewriting-metrics", "after:last.pt:1", start=EVAL_INTERVAL,
             then_resume_faults="partial:metrics.jsonl:1:0.5"),
    Scenario("resume-killed-inside-its-checkpoint", "after:last.pt:1", start=EVAL_INTERVAL,
             then_resume_faults="partial:last.pt:1:0.5"),
    # Kills at moments spread over the run (each step sleeps 80 ms, so the run lasts > 1.2 s).
    *[Scenario(f"random-moment-{i}", "delay:0.08", kill_after_s=round(0.04 + 0.2 * i + _rng.uniform(0, 0.05), 3))
      for i in range(5)],
]


@dataclass
class Lab:
    folder: Path
    recipe: Path
    ref_last: dict
    ref_best: dict
    ref_losses: dict
    ref_evals: list


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    """The recipe, and the run it gives when nothing goes wrong."""
    folder = tmp_path_factory.mktemp("kill")
    recipe = write_recipe(folder, write_corpus(folder))
    saved = os.environ.get("MINIGPT_TUI_HOME")
    os.environ["MINIGPT_TUI_HOME"] = str(folder / "reference")
    try:
        result = run_cli("--train", str(recipe), "--events", "jsonl")
    finally:
        os.environ["MINIGPT_TUI_HOME"] = saved or ""
    assert result.returncode == 0, result
    run = Path(result.events[0]["run_dir"])
    return Lab(folder, recipe, model_state(RunDir(run).checkpoint_path("last")),
               model_state(RunDir(run).checkpoint_path("best")), losses(run), eval_steps(run))


def _kill(scenario: Scenario, lab: Lab) -> tuple[Path, dict]:
    """Run one scenario's trainer(s) to their kill; returns the data home and what was seen."""
    home = lab.folder / scenario.name
    ready = lab.folder / f"{scenario.name}.ready"
    seen: dict = {}
    proc = spawn(["--train", str(lab.recipe), "--events", "jsonl"], home, scenario.faults, ready)
    if scenario.kill_after_s is not None:
        wait_for_event(proc, "started")
        time.sleep(scenario.kill_after_s)
        if not proc.alive():
            raise AssertionError(f"the trainer finished before its kill: {proc.output()}")
    else:
        wait_for_file(ready, proc)
    seen["mid_write"] = _temp_files(home)
    proc.kill()
    if scenario.then_resume_faults:
        (run,) = runs_in(home)
        ready2 = lab.folder / f"{scenario.name}.ready2"
        proc = spawn(["--train", "--resume", run.name, "--events", "jsonl"], home, scenario.then_resume_faults, ready2)
        wait_for_file(ready2, proc)
        seen["mid_write"] = _temp_files(home)
        proc.kill()
    return home, seen


def _temp_files(home: Path) -> list[str]:
    return [str(p.relative_to(home)) for p in (home / "runs").rglob("*.tmp")] if (home / "runs").is_dir() else []


@pytest.fixture(scope="module")
def killed(lab) -> dict:
    """Every scenario's kill, two processes at a time; an exception is kept for its own test."""

    def attempt(scenario):
        try:
            return _kill(scenario, lab)
        except BaseException as err:  # reported by that scenario's test
            return err

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip((s.name for s in SCENARIOS), pool.map(attempt, SCENARIOS)))


def test_there_are_at_least_ten_kill_points_some_inside_a_checkpoint_write():
    assert len(SCENARIOS) >= 10
    assert sum(".pt:" in s.faults + s.then_resume_faults and "partial" in s.faults + s.then_resume_faults
               for s in SCENARIOS) >= 3


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_a_killed_trainer_leaves_a_run_that_lists_generates_and_resumes(scenario, lab, killed, monkeypatch):
    outcome = killed[scenario.name]
    if isinstance(outcome, BaseException):
        raise outcome
    home, seen = outcome
    monkeypatch.setenv("MINIGPT_TUI_HOME", str(home))

    listing = run_cli("--list")
    assert listing.returncode == 0, listing
    runs = runs_in(home)
    if not scenario.run_made:
        # Killed while the folder was being built: nothing half-made is visible, and a new run works.
        assert runs == [] and "No runs yet" in listing.stdout
        (staging,) = (home / "runs").glob(".*.new")  # the half-built folder, hidden
        fresh = run_cli("--train", str(lab.recipe), "--events", "jsonl", "--set", "train.max_steps=2")
        assert fresh.returncode == 0, fresh
        assert staging.exists()  # young: it might belong to a trainer still starting
        os.utime(staging, (time.time() - 7200, time.time() - 7200))
        assert run_cli("--train", str(lab.recipe), "--events", "jsonl", "--set", "train.max_steps=2").returncode == 0
        assert not staging.exists()  # an hour old: cleaned up by the next new run
        return
    assert len(runs) == 1, runs
    run = runs[0]

    # --list shows it as a normal run, interrupted (its trainer is gone)
    row = [line for line in listing.stdout.splitlines() if line.startswith(run.name)]
    assert row and "unreadable" not in row[0] and row[0].endswith("interrupted"), listing.stdout
    info = RunDir(run).info()
    assert info.error == "" and info.status == "interrupted", info

    if scenario.mid_write:  # the kill really landed inside a write
        assert any(Path(t).parent == Path("runs", run.name, scenario.mid_write) for t in seen["mid_write"]), seen

    last, best = RunDir(run).checkpoint_path("last"), RunDir(run).checkpoint_path("best")
    start = ckpt.load_checkpoint(last)["step"] if last.is_file() else 0
    if scenario.start is not None:
        assert start == scenario.start
    assert info.has_checkpoint == (last.is_file() or best.is_file())

    # --generate works once a checkpoint exists, and says why not otherwise
    generated = run_cli("--generate", run.name, "--prompt", "the ", "--max-new-tokens", "5")
    if info.has_checkpoint:
        assert generated.returncode == 0, generated
        assert generated.stdout.startswith("the ") and len(generated.stdout.rstrip("\n")) > len("the ")
    else:
        assert generated.returncode != 0
        assert "has no checkpoint yet" in one_sentence(generated.stderr)

    # --resume continues from the last checkpoint to the end ...
    resumed = run_cli("--train", "--resume", run.name, "--events", "jsonl")
    assert resumed.returncode == 0, resumed
    events = resumed.events
    assert events[0]["type"] == "started" and events[0]["start_step"] == start
    assert events[-1]["type"] == "done" and events[-1]["step"] == MAX_STEPS

    # ... and nothing was lost: the same weights, best weights and losses as a run never killed
    assert same_tensors(model_state(last), lab.ref_last)
    assert same_tensors(model_state(best), lab.ref_best)
    assert losses(run) == lab.ref_losses
    assert eval_steps(run) == lab.ref_evals
    assert list(run.rglob("*.tmp")) == []  # the killed writer's temporary file was cleaned up
    assert RunDir(run).info().status == "finished"


@pytest.mark.slow
def test_end_to_end_the_real_command_killed_then_listed_generated_and_resumed(lab, tmp_path):
    """No wrapper and no fork server: `python -m minigpt_tui` itself, killed with SIGKILL after its
    first checkpoint, then each follow-up command in a fresh interpreter."""
    import json
    import signal
    import subprocess
    import sys

    from harden import env_for, run_process

    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-m", "minigpt_tui", "--train", str(lab.recipe), "--events", "jsonl",
                             "--set", "train.max_steps=100000"], stdout=subprocess.PIPE, text=True, env=env_for(home))
    try:
        for line in proc.stdout:
            if json.loads(line)["type"] == "checkpoint":
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    (run,) = runs_in(home)

    listing = run_process("--list", home=home)
    assert listing.returncode == 0
    (row,) = [line for line in listing.stdout.splitlines() if line.startswith(run.name)]
    assert "unreadable" not in row and "transformer" in row

    generated = run_process("--generate", run.name, "--prompt", "the ", "--max-new-tokens", "5", home=home)
    assert generated.returncode == 0 and len(generated.stdout.strip()) > len("the"), generated

    start = ckpt.load_checkpoint(RunDir(run).checkpoint_path("last"))["step"]
    resumed = run_process("--train", "--resume", run.name, "--events", "jsonl", "--set", f"train.max_steps={start + 5}",
                          home=home)
    assert resumed.returncode == 0, resumed
    events = resumed.events
    assert events[0]["start_step"] == start and events[-1]["type"] == "done" and events[-1]["step"] == start + 5
