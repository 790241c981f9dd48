"""Shared fixtures. Every test gets its own data home, so a developer's runs and
settings are never read or written by the suite."""

from __future__ import annotations

import pytest

from minigpt_tui.core.config import RunConfig

TINY_TEXT = (
    "the cat sat on the mat. the dog sat on the log.\n"
    "a cat and a dog sat on a mat and a log.\n"
) * 40


@pytest.fixture(autouse=True)
def data_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("MINIGPT_TUI_HOME", str(home))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    return home


@pytest.fixture
def tiny_corpus(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


def tiny_config(corpus_path, family: str = "transformer", **train) -> RunConfig:
    """A model of a few thousand parameters that trains in a second or two on CPU."""
    raw = {
        "data": {"path": str(corpus_path), "tokenizer": "char"},
        "model": {"family": family, "n_layer": 2, "n_head": 2, "n_embd": 16, "context_length": 16},
        "train": {"max_steps": 20, "batch_size": 8, "eval_interval": 10, "eval_batches": 2,
                  "log_interval": 1, "sample_tokens": 20, "warmup_steps": 2, "learning_rate": 3e-3,
                  "device": "cpu", **train},
    }
    return RunConfig.from_dict(raw)
