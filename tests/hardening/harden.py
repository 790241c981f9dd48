"""Helpers of the fault-injection suite: a tiny recipe, the CLI in-process and as a
(faulty) subprocess, and checks that a run folder is whole.

The trainer is killed as a real process; what comes after (list, generate,
resume) runs the same cli.main in-process, which is exactly what the command
runs minus the interpreter start (the suite stays fast on 2 cores).
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from minigpt_tui.cli import main
from minigpt_tui.core.runs import checkpoint as ckpt
from minigpt_tui.core.runs.run_dir import RunDir

HERE = Path(__file__).resolve().parent
WRAPPER = HERE / "faulty_trainer.py"

# ---- the CLI -----------------------------------------------------------------------------


class Result:
    def __init__(self, rc: int, out: str, err: str):
        self.returncode, self.stdout, self.stderr = rc, out, err

    @property
    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def __repr__(self):
        return f"Result(rc={self.returncode}, stdout={self.stdout[-600:]!r}, stderr={self.stderr[-600:]!r})"


def run_cli(*args: str) -> Result:
    """minigpt_tui.cli.main in this process, its output captured (the data home comes from the env)."""
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(list(args))
    except SystemExit as exit_:  # argparse
        rc = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        torch.set_num_threads(threads)  # train.threads=1 must not slow the rest of the suite
    return Result(rc, out.getvalue(), err.getvalue())


def env_for(home: Path, faults: str = "", ready: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "MINIGPT_TUI_HOME": str(home), "HARDEN_FAULTS": faults, "PYTHONUNBUFFERED": "1"}
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    env.pop("HARDEN_READY", None)
    if ready is not None:
        env["HARDEN_READY"] = str(ready)
    return env


class Child:
    """A `minigpt-tui ARGS` process forked by the zygote (a real process: it can be killed)."""

    def __init__(self, pid: int, folder: Path):
        self.pid = pid
        self.out, self.err, self.rc = folder / "stdout", folder / "stderr", folder / "rc"

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def wait(self, timeout: float = 120.0) -> "Result":
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"process {self.pid} still ran after {timeout} s: {self.output()}")
            time.sleep(0.01)
        rc = int(self.rc.read_text()) if self.rc.exists() else -signal.SIGKILL
        return Result(rc, self.out.read_text() if self.out.is_file() else "", self.err.read_text())

    def kill(self) -> None:
        """SIGKILL, and wait until it is gone."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 30
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert not self.alive() and not self.rc.exists(), "the process ended by itself, not by the kill"

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def output(self) -> str:
        read = lambda p: p.read_text() if p.is_file() else ""  # noqa: E731
        return f"stdout: {read(self.out)[-2000:]}\nstderr: {read(self.err)[-2000:]}"

    def events(self) -> list[dict]:
        lines = self.out.read_text().splitlines() if self.out.is_file() else []
        events = []
        for line in lines:
            try:
                events.append(json.loads(line))
            except ValueError:  # a line being written
                break
        return events


class Zygote:
    """A fork server (faulty_trainer.py --zygote) that imported torch once; see serve()."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, str(WRAPPER), "--zygote"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env_for(Path(os.devnull)))
        self.lock = threading.Lock()
        self.count = 0

    def spawn(self, args: list[str], home: Path, faults: str = "", ready: Path | None = None,
              extra_env: dict[str, str] | None = None, stdout: Path | None = None) -> Child:
        with self.lock:
            self.count += 1
            folder = Path(tempfile.mkdtemp(prefix=f"child{self.count}-"))
            child = Child(0, folder)
            if stdout is not None:  # e.g. a named pipe the test reads
                child.out = stdout
            req = {"args": list(args), "env": {**env_for(home, faults, ready), **(extra_env or {})},
                   "stdout": str(child.out), "stderr": str(child.err), "rc": str(child.rc)}
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError("the zygote died")
            child.pid = int(line)
            return child

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


_zygote: Zygote | None = None


def spawn(args: list[str], home: Path, faults: str = "", ready: Path | None = None, **kw) -> Child:
    """`minigpt-tui ARGS` as a child process running the faults given (see faulty_trainer.py)."""
    global _zygote
    if _zygote is None or _zygote.proc.poll() is not None:
        _zygote = Zygote()
        atexit.register(_zygote.close)
    return _zygote.spawn(args, home, faults, ready, **kw)


def wait_for_file(path: Path, child: Child, timeout: float = 90.0) -> None:
    """Wait until the child reached its fault (it creates `path`); fail if it ended first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if not child.alive():
            raise AssertionError(f"the trainer ended before its fault: {child.output()}")
        if time.monotonic() > deadline:
            child.kill()
            raise AssertionError(f"the trainer did not reach its fault in {timeout} s: {child.output()}")
        time.sleep(0.005)


def wait_for_event(child: Child, kind: str, timeout: float = 90.0) -> list[dict]:
    """Wait until the child printed a JSON event of type `kind`; returns its events so far."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = child.events()
        if any(e.get("type") == kind for e in events):
            return events
        if not child.alive():
            raise AssertionError(f"the trainer ended before a {kind!r} event: {child.output()}")
        time.sleep(0.005)
    raise AssertionError(f"no {kind!r} event in {timeout} s: {child.output()}")


def run_process(*args: str, home: Path, timeout: float = 120.0) -> Result:
    """`python -m minigpt_tui ARGS` in a fresh interpreter (for the few end-to-end checks)."""
    proc = subprocess.run([sys.executable, "-m", "minigpt_tui", *args], capture_output=True, text=True,
                          env=env_for(home), timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


# ---- checks ------------------------------------------------------------------------------------


def one_sentence(text: str) -> str:
    """The single line a user error prints, checked for shape."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    line = lines[0]
    assert line.startswith("minigpt-tui: ") and "unexpected error" not in line, text
    assert "Traceback" not in text
    return line.removeprefix("minigpt-tui: ")


def runs_in(home: Path) -> list[Path]:
    root = home / "runs"
    return sorted(p for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []


def model_state(path: Path) -> dict[str, torch.Tensor]:
    return ckpt.load_checkpoint(path)["model"]


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def losses(run_dir: Path) -> dict[int, float]:
    """step -> training loss from metrics.jsonl, checking every step is there exactly once."""
    records = [r for r in RunDir(run_dir).read_metrics() if "loss" in r]
    steps = [r["step"] for r in records]
    assert len(steps) == len(set(steps)), f"a step was logged twice: {steps}"
    return {r["step"]: r["loss"] for r in records}


def eval_steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in RunDir(run_dir).read_metrics() if "val_loss" in r]


# ---- a reference run, to compare an interrupted one with ---------------------------------------------


class Reference:
    """What a recipe gives when nothing goes wrong: final and best weights, losses, evaluations."""

    def __init__(self, recipe: Path, home: Path):
        saved = os.environ.get("MINIGPT_TUI_HOME")
        os.environ["MINIGPT_TUI_HOME"] = str(home)
        try:
            result = run_cli("--train", str(recipe), "--events", "jsonl")
        finally:
            os.environ["MINIGPT_TUI_HOME"] = saved or ""
        assert result.returncode == 0, result
        self.recipe = recipe
        self.run_dir = Path(result.events[0]["run_dir"])
        self.last = model_state(RunDir(self.run_dir).checkpoint_path("last"))
        self.best = model_state(RunDir(self.run_dir).checkpoint_path("best"))
        self.losses = losses(self.run_dir)
        self.evals = eval_steps(self.run_dir)
        self.meta = RunDir(self.run_dir).read_meta()

    def assert_matches(self, run_dir: Path, losses_from: int = 0) -> None:
        """The run, once finished, is the reference run bit for bit (the losses logged from
        step `losses_from` on, for a run that logged at another interval before)."""
        assert same_tensors(model_state(RunDir(run_dir).checkpoint_path("last")), self.last), "last.pt differs"
        assert same_tensors(model_state(RunDir(run_dir).checkpoint_path("best")), self.best), "best.pt differs"
        logged = {s: v for s, v in losses(run_dir).items() if s >= losses_from}
        assert logged == {s: v for s, v in self.losses.items() if s >= losses_from}
        assert eval_steps(run_dir) == self.evals
        meta = RunDir(run_dir).read_meta()
        assert (meta.step, meta.best_val_loss, meta.status) == (
            self.meta.step, self.meta.best_val_loss, "finished")
