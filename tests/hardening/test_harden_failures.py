"""Numerical trouble and a full disk: the run stops with one sentence, the last good
checkpoint stays intact and loadable, no broken checkpoint is written, and the run can
be resumed once the cause is gone (ending exactly where an untroubled run ends).
"""

from __future__ import annotations

import math

import pytest
import torch

from minigpt_tui.core.runs import checkpoint as ckpt
from minigpt_tui.core.runs.run_dir import RunDir

from harden import Reference, run_cli, runs_in, spawn
from kit import write_corpus, write_recipe


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> Reference:
    folder = tmp_path_factory.mktemp("failures")
    return Reference(write_recipe(folder, write_corpus(folder)), folder / "reference")


def _failed_run(ref: Reference, home, faults: str, *extra: str):
    result = spawn(["--train", str(ref.recipe), "--events", "jsonl", *extra], home, faults).wait()
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr and result.stderr == "", result
    error = result.events[-1]
    assert error["type"] == "error", result.events[-3:]
    message = error["message"]
    assert "\n" not in message and message.endswith("."), message
    return result, message


def _checkpoints_written(result) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {"last": [], "best": []}
    for e in result.events:
        if e["type"] == "checkpoint":
            seen[e["kind"]].append(e["step"])
    return seen


def _assert_intact(run, kind: str, step: int) -> None:
    state = ckpt.load_checkpoint(RunDir(run).checkpoint_path(kind))
    assert state["step"] == step
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def _resume_matches(ref: Reference, run, home, monkeypatch, start: int, *extra: str) -> None:
    monkeypatch.setenv("MINIGPT_TUI_HOME", str(home))
    resumed = run_cli("--train", "--resume", run.name, "--events", "jsonl", *extra)
    assert resumed.returncode == 0, resumed
    assert resumed.events[0]["start_step"] == start
    ref.assert_matches(run, losses_from=start if extra else 0)


# ---- NaN and inf ------------------------------------------------------------------------------------

NUMERIC = [
    # (faults, extra flags, words the message must hold)
    ("nan:7", [], ["loss became nan at step 7", "learning_rate"]),
    ("nan:7:inf", [], ["loss became inf at step 7"]),
    ("nan:7", ["--set", "train.log_interval=100"], ["validation loss became nan at step 10"]),  # no log step sees it
    ("nan:7;signal:7:SIGTERM", ["--set", "train.log_interval=100"], ["weights became NaN"]),  # the stop save refuses
]


@pytest.mark.parametrize("faults, extra, words", NUMERIC, ids=["nan-loss", "inf-loss", "nan-at-eval", "nan-at-stop"])
def test_a_loss_gone_bad_stops_the_run_and_keeps_the_last_good_checkpoint(faults, extra, words, ref, tmp_path, monkeypatch):
    home = tmp_path / "home"
    result, message = _failed_run(ref, home, faults, *extra)
    for word in words:
        assert word in message, message
    assert "last good checkpoint is kept" in message
    assert _checkpoints_written(result) == {"last": [5], "best": [5]}  # nothing after the trouble
    (run,) = runs_in(home)
    _assert_intact(run, "last", 5)
    _assert_intact(run, "best", 5)
    assert list(run.rglob("*.tmp")) == []
    monkeypatch.setenv("MINIGPT_TUI_HOME", str(home))
    info = RunDir(run).info()
    assert info.status == "failed" and info.error == "" and info.has_checkpoint
    assert RunDir(run).read_meta().error == message
    assert run_cli("--generate", run.name, "--max-new-tokens", "3").returncode == 0
    # the cause gone, the run resumes from the good checkpoint and ends as if nothing happened
    _resume_matches(ref, run, home, monkeypatch, 5, *(["--set", "train.log_interval=1"] if extra else []))


# ---- a full disk ------------------------------------------------------------------------------------

DISK = [
    # (faults, the checkpoints that must survive {kind: step}, where resuming starts)
    ("enospc:last.pt:2", {"last": 5, "best": 5}, 5),  # the second checkpoint cannot be written
    ("enospc:best.pt:1", {"last": 5}, 5),  # last.pt made it, best.pt did not
    ("enospc:meta.json:3", {"last": 5, "best": 5}, 5),  # the summary after the first checkpoint
    ("enospcappend:4", {"last": 5, "best": 5}, 5),  # the metrics log
    ("signal:7:SIGTERM;enospc:last.pt:2", {"last": 5, "best": 5}, 5),  # the save on Stop
]


@pytest.mark.parametrize("faults, survivors, start", DISK, ids=["last.pt", "best.pt", "meta.json", "metrics", "stop-save"])
def test_a_failed_write_keeps_the_previous_checkpoint_and_says_so(faults, survivors, start, ref, tmp_path, monkeypatch):
    home = tmp_path / "home"
    result, message = _failed_run(ref, home, faults)
    assert result.returncode == 1
    assert "No space left on device" in message and "intact" in message and "resume" in message, message
    (run,) = runs_in(home)
    assert str(run) in message
    for kind in ("last", "best"):
        if kind in survivors:
            _assert_intact(run, kind, survivors[kind])
        else:
            assert not RunDir(run).checkpoint_path(kind).exists()
    assert list(run.rglob("*.tmp")) == []  # the half-written file was removed
    monkeypatch.setenv("MINIGPT_TUI_HOME", str(home))
    info = RunDir(run).info()
    assert info.error == "" and info.has_checkpoint
    assert info.status == "failed"
    _resume_matches(ref, run, home, monkeypatch, start=start)


def test_a_full_disk_before_the_run_folder_exists_leaves_nothing(ref, tmp_path):
    home = tmp_path / "home"
    result, message = _failed_run(ref, home, "enospc:config.toml:1")
    assert result.returncode == 2
    assert "No space left on device" in message and "free some disk space" in message
    assert list((home / "runs").iterdir()) == []  # not even the hidden folder being built


def test_a_checkpoint_write_that_fails_in_process_leaves_the_old_file_byte_for_byte(ref, tmp_path, monkeypatch):
    """The same through the core API (what a library user sees): os.replace itself fails."""
    import errno
    import os
    from pathlib import Path

    from minigpt_tui.core.config import RunConfig
    from minigpt_tui.core.errors import TrainingError
    from minigpt_tui.core.training.trainer import Trainer

    config = RunConfig.load(ref.recipe)
    trainer = Trainer(config, lambda e: None, recipe_name="tiny", runs_root=tmp_path / "runs")
    real_replace = os.replace
    calls = {"n": 0}
    before = {}

    def replace(src, dst, *a, **kw):
        if str(dst).endswith("last.pt"):
            calls["n"] += 1
            if calls["n"] == 2:
                before["bytes"] = Path(dst).read_bytes()
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)
    threads = torch.get_num_threads()
    try:
        with pytest.raises(TrainingError, match="No space left on device.*intact") as failed:
            trainer.run()
    finally:
        torch.set_num_threads(threads)
    trainer.fail(str(failed.value))  # what a caller does with the error (the CLI too): the run is let go
    last = RunDir(trainer.run_dir).checkpoint_path("last")
    assert last.read_bytes() == before["bytes"]
    assert ckpt.load_checkpoint(last)["step"] == 5
    assert math.isfinite(RunDir(trainer.run_dir).read_meta().best_val_loss)
