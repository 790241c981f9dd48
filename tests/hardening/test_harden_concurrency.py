"""Two runs at once: trainers started at the same moment on the same recipe never share a
run folder, and two trainers never write into one run (a resume of a run being trained
is refused with one sentence).
"""

from __future__ import annotations

import threading
from datetime import datetime

import pytest

from minigpt_tui.core.runs import run_dir as runs
from minigpt_tui.core.runs.run_dir import RunDir

from harden import Reference, run_cli, runs_in, spawn, wait_for_file
from kit import write_corpus, write_recipe


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> Reference:
    folder = tmp_path_factory.mktemp("concurrency")
    return Reference(write_recipe(folder, write_corpus(folder)), folder / "reference")


def test_two_trainers_racing_for_the_same_folder_name_get_two_folders(ref, tmp_path):
    """Both build their folder, wait at the rename for a common start signal, then race for the
    same name (the clock is pinned, so the names clash for certain)."""
    home = tmp_path / "home"
    go = tmp_path / "go"
    readies = [tmp_path / "ready-a", tmp_path / "ready-b"]
    children = [spawn(["--train", str(ref.recipe), "--events", "jsonl"], home, f"fixedtime;renamebarrier:{go}", r)
                for r in readies]
    for child, ready in zip(children, readies):
        wait_for_file(ready, child)
    go.touch()
    results = [child.wait() for child in children]
    for r in results:
        assert r.returncode == 0, r
    dirs = sorted(r.events[0]["run_dir"] for r in results)
    assert dirs[0] != dirs[1]
    assert [d.rsplit("/", 1)[1] for d in dirs] == ["tiny-20300101-120000", "tiny-20300101-120000-2"]
    runs = runs_in(home)
    assert [str(r) for r in runs] == dirs
    # neither wrote into the other's folder: each is exactly the run the recipe gives
    for run in runs:
        ref.assert_matches(run)
    assert [p.name for p in (home / "runs").iterdir() if p.name.startswith(".")] == []  # no leftovers


def test_two_trainers_started_together_on_the_real_clock_never_share(ref, tmp_path):
    home = tmp_path / "home"
    go = tmp_path / "go"
    children = [spawn(["--train", str(ref.recipe), "--events", "jsonl"], home, f"waitfor:{go}") for _ in range(3)]
    go.touch()
    results = [child.wait() for child in children]
    assert all(r.returncode == 0 for r in results), results
    assert len({r.events[0]["run_dir"] for r in results}) == 3
    for run in runs_in(home):
        ref.assert_matches(run)


def test_resuming_a_run_that_another_process_trains_is_refused(ref, tmp_path, monkeypatch):
    home = tmp_path / "home"
    # A run stopped at step 5, then resumed slowly by one process ...
    first = spawn(["--train", str(ref.recipe), "--events", "jsonl"], home, "signal:4:SIGTERM").wait()
    assert first.returncode == 0 and first.events[-1]["step"] == 5
    (run,) = runs_in(home)
    ready = tmp_path / "ready"
    # ... then resumed by a trainer that stalls inside its next checkpoint write (a slow disk).
    slow = spawn(["--train", "--resume", run.name, "--events", "jsonl"], home, "partial:last.pt:1:0.5", ready)
    wait_for_file(ready, slow)
    monkeypatch.setenv("MINIGPT_TUI_HOME", str(home))
    assert RunDir(run).info().status == "training"  # the listing sees a live trainer ...
    # ... and a second resume is refused, in one sentence, and leaves the run alone.
    second = run_cli("--train", "--resume", run.name)
    assert second.returncode == 2
    assert "being trained by another process" in second.stderr and len(second.stderr.splitlines()) == 1
    assert list((run / "checkpoints").glob(".last.pt.*.tmp"))  # the stalled write is still there
    slow.kill()
    assert RunDir(run).info().status == "interrupted"
    third = run_cli("--train", "--resume", run.name, "--events", "jsonl")
    assert third.returncode == 0 and third.events[0]["start_step"] == 5, third
    ref.assert_matches(run)


def test_many_threads_creating_run_folders_at_one_instant_get_one_each(tmp_path, monkeypatch):
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2030, 1, 1, 12, 0, 0)

    monkeypatch.setattr(runs, "datetime", Frozen)
    barrier = threading.Barrier(12)
    made: list = []

    def create(i):
        barrier.wait()
        made.append(RunDir.create("same", tmp_path / "runs", {"who.txt": str(i)}, lock=False).path)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == len(set(made)) == 12
    assert sorted(p.joinpath("who.txt").read_text() for p in made) == sorted(str(i) for i in range(12))
    assert all((p / "checkpoints").is_dir() for p in made)
