"""Shared fixtures. Every test gets its own data home, so a developer's runs and
settings are never read or written by the suite."""

from __future__ import annotations

import pytest

from kit import write_corpus


@pytest.fixture(autouse=True)
def data_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("MINIGPT_TUI_HOME", str(home))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    return home


@pytest.fixture
def tiny_corpus(tmp_path):
    return write_corpus(tmp_path)
