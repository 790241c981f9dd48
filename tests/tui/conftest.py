"""Fixtures for the app's tests: a private data home, a tiny corpus, a tiny trained run
(made once per session with the core Trainer; the Generate tab's tests chat with it through
the real Sampler and ChatSession), hand-made runs with pinned facts for snapshots, and a
pinned tokens/s figure for snapshots of the Generate tab."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from kit import GENESIS_TEXT, PINNED_TIME, tiny_config, train_tiny_run, write_corpus


@pytest.fixture(autouse=True)
def tui_home(tmp_path, monkeypatch):
    """Every test gets its own data home and config file, and UTC dates."""
    home = tmp_path / "tui-home"
    home.mkdir()
    monkeypatch.setenv("MINIGPT_TUI_HOME", str(home))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setenv("TZ", "UTC")
    # Replies are sampled by a thread of the test's own process: a sampler process per app would
    # add a second or two of start-up to every test. tests/tui/test_tui_sampler_process.py runs
    # the app's default, the process.
    monkeypatch.setenv("MINIGPT_TUI_SAMPLER", "thread")
    time.tzset()
    yield home
    time.tzset()


@pytest.fixture
def tiny_corpus(tmp_path) -> Path:
    return write_corpus(tmp_path, GENESIS_TEXT)


@pytest.fixture(scope="session")
def trained_template(tmp_path_factory) -> Path:
    """A tiny run trained once per session by the core Trainer (a few thousand parameters).

    Trained long enough (400 steps, about a second) that its replies read like the corpus
    ("And the earth was ...") with confident and unsure tokens, and on one thread: the
    weights, and so the replies in snapshots, are the same at every run on the same machine
    (and one thread is several times faster than two for a model this small)."""
    root = tmp_path_factory.mktemp("template")
    config = tiny_config(write_corpus(root, GENESIS_TEXT), model={"n_layer": 1}, batch_size=8, max_steps=400,
                         learning_rate=1e-2, eval_interval=200, threads=1)
    run_dir = train_tiny_run(config, root / "runs")
    pinned = run_dir.with_name("tiny-run")
    run_dir.rename(pinned)
    meta = json.loads((pinned / "meta.json").read_text())
    meta.update(name="tiny-run", created=PINNED_TIME)
    (pinned / "meta.json").write_text(json.dumps(meta))
    return pinned


@pytest.fixture
def tiny_run(tui_home, trained_template) -> Path:
    """The trained tiny run, copied into this test's data home as runs/tiny-run."""
    target = tui_home / "runs" / "tiny-run"
    shutil.copytree(trained_template, target)
    return target


@pytest.fixture
def pinned_speed(monkeypatch) -> float:
    """Every chat session reports 1,234 tokens/s (the only figure of a real reply that varies
    from run to run; snapshots of the Generate tab show it)."""
    from minigpt_tui.core.generation.chat_session import ChatSession

    monkeypatch.setattr(ChatSession, "tokens_per_s", property(lambda self: 1234.0))
    return 1234.0


@pytest.fixture
def corrupt_run(tui_home) -> Path:
    """A run folder whose meta.json is garbage."""
    run = tui_home / "runs" / "broken-run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "meta.json").write_text("{ this is not json")
    os.utime(run, (PINNED_TIME - 2 * 86400, PINNED_TIME - 2 * 86400))  # its listed date is the folder's
    return run
