"""Fixtures for the app's tests: a private data home, a tiny corpus, a tiny trained run
(made once per session with the core Trainer), hand-made runs with pinned facts for
snapshots, and a fake token source that makes generation fast and deterministic."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from tui_helpers import PINNED_TIME, TINY_TEXT, tiny_config


@pytest.fixture(autouse=True)
def tui_home(tmp_path, monkeypatch):
    """Every test gets its own data home and config file, and UTC dates."""
    home = tmp_path / "tui-home"
    home.mkdir()
    monkeypatch.setenv("MINIGPT_TUI_HOME", str(home))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield home
    time.tzset()


@pytest.fixture
def tiny_corpus(tmp_path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def trained_template(tmp_path_factory) -> Path:
    """A tiny run trained once per session by the core Trainer (a few thousand parameters)."""
    from minigpt_tui.core.trainer import Trainer

    root = tmp_path_factory.mktemp("template")
    corpus = root / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    done = Trainer(tiny_config(corpus), emit=lambda e: None, recipe_name="tiny", runs_root=root / "runs").run()
    run_dir = Path(done.run_dir)
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
def corrupt_run(tui_home) -> Path:
    """A run folder whose meta.json is garbage."""
    run = tui_home / "runs" / "broken-run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "meta.json").write_text("{ this is not json")
    os.utime(run, (PINNED_TIME - 2 * 86400, PINNED_TIME - 2 * 86400))  # its listed date is the folder's
    return run
