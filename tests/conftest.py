"""Shared fixtures. Every test gets its own data home, so a developer's runs and
settings are never read or written by the suite. And a file a test leaves open fails that test
(pyproject.toml's filterwarnings; see pytest_runtest_teardown)."""

from __future__ import annotations

import gc
import os

import pytest
import torch

from kit import write_corpus

# Under pytest-xdist (pyproject's addopts) two workers share the machine: one torch thread each,
# so that their matmuls do not fight over the same cores. (Subprocesses the tests start choose
# their own, as a user's would.)
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def data_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("MINIGPT_TUI_HOME", str(home))
    # No standby trainer behind every app a test opens (tests/tui/test_tui_standby.py turns it on).
    monkeypatch.setenv("MINIGPT_TUI_STANDBY", "0")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    return home


@pytest.fixture
def tiny_corpus(tmp_path):
    return write_corpus(tmp_path)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item):
    """Once the test body is done, before its fixtures are torn down and pytest looks for
    unraisable exceptions (at the end of teardown): collect the young garbage, so that a file the
    test left open inside a reference cycle warns now, failing this test's teardown, rather than in
    whichever later test happens to collect it. (Generations 0 and 1 only: well under a
    millisecond, where a full collection costs ~0.5 s with torch loaded.)"""
    gc.collect(1)
