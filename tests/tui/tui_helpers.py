"""Helpers for the app's tests: tiny configs, hand-made runs, a fake token source, waiting."""

from __future__ import annotations

import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from minigpt_tui.core.config import RunConfig
from minigpt_tui.core.tokenizer import CharTokenizer
from minigpt_tui.tui.settings import SamplingPrefs

TINY_TEXT = (
    "In the beginning God created the heaven and the earth.\n"
    "And the earth was without form, and void; and darkness was upon the face of the deep.\n"
) * 40
PINNED_TIME = 1767225600.0  # 2026-01-01 00:00 UTC: dates in snapshots never change


def tiny_config(corpus: Path, **train) -> RunConfig:
    raw = {
        "data": {"path": str(corpus), "tokenizer": "char"},
        "model": {"family": "transformer", "n_layer": 1, "n_head": 2, "n_embd": 16, "context_length": 16},
        "train": {"max_steps": 20, "batch_size": 4, "eval_interval": 10, "eval_batches": 2, "log_interval": 1,
                  "sample_tokens": 20, "warmup_steps": 2, "learning_rate": 3e-3, "device": "cpu", **train},
    }
    return RunConfig.from_dict(raw)


def make_fake_run(home: Path, name: str, *, step: int = 400, max_steps: int = 1000, created: float = PINNED_TIME,
                  best: float | None = 1.85, params: int = 812_672, family: str = "transformer",
                  checkpoint: bool = True) -> Path:
    """A run folder written by hand, with pinned facts and curves (no real weights)."""
    run = home / "runs" / name
    (run / "checkpoints").mkdir(parents=True)
    config = RunConfig().with_overrides([f'model.family="{family}"', f"train.max_steps={max_steps}"])
    (run / "config.toml").write_text(config.to_toml())
    (run / "tokenizer.json").write_text(CharTokenizer(["<unk>", "\n", " ", "a", "b"]).to_json())
    meta = {"name": name, "recipe": "kjv-char-transformer", "family": family, "tokenizer": "char", "corpus": "kjv",
            "vocab_size": 65, "params": params, "created": created, "status": "stopped", "step": step,
            "max_steps": max_steps, "best_val_loss": best}
    (run / "meta.json").write_text(json.dumps(meta))
    records = []
    for s in range(0, step + 1, 10):
        loss = 1.7 + 2.5 * 0.985 ** s
        records.append({"step": s, "loss": round(loss, 4)})
        if s % 100 == 0:
            records.append({"step": s, "val_loss": round(loss + 0.08, 4), "train_loss": round(loss, 4)})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if checkpoint:  # a zip, as torch.save writes, but without weights: listing never loads it
        with zipfile.ZipFile(run / "checkpoints" / "last.pt", "w") as z:
            z.writestr("placeholder", "listing reads only small files")
    return run


# ---- a fake token source ------------------------------------------------------------------------


@dataclass
class FakeEvent:
    index: int
    token_id: int
    text: str
    prob: float
    top: list


class FakeSampler:
    """Yields the given pieces as token events (optionally slowly); records the settings it saw."""

    def __init__(self, pieces: list[str], delay: float = 0.0, tokens_per_s: float = 1234.0,
                 tokenizer=None, endless: bool = False):
        self.pieces = pieces
        self.delay = delay
        self.endless = endless
        self.settings = SamplingPrefs()
        self.tokenizer = tokenizer or CharTokenizer(["<unk>", "\n", " ", *sorted(set("".join(pieces)) - {"\n", " "})])
        self.tokens_per_s = 0.0
        self._final_tps = tokens_per_s
        self.seen_temperatures: list[float] = []
        self.yielded: list[str] = []
        self.reseeds: list[int | None] = []

    def reseed(self, seed=None):
        if seed is not None:
            self.settings.seed = seed
        self.reseeds.append(seed)

    def generate(self, prompt: str, cancel=None):
        self.yielded = []
        i = 0
        while self.endless or i < len(self.pieces):
            if cancel is not None and cancel():
                break
            if self.delay:
                time.sleep(self.delay)
            piece = self.pieces[i % len(self.pieces)]
            prob = [0.92, 0.45, 0.2, 0.05][i % 4]
            self.seen_temperatures.append(self.settings.temperature)
            self.yielded.append(piece)
            i += 1
            self.tokens_per_s = self._final_tps
            yield FakeEvent(i - 1, 1, piece, prob, [(piece, prob), ("e", 0.2), (" ", 0.1), ("a", 0.05), ("\n", 0.01)])


async def wait_for(pilot, condition, timeout: float = 20.0, step: float = 0.02) -> bool:
    """Let the app run until condition() holds (False on timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await pilot.pause(step)
    return bool(condition())


def focus_id(app) -> str | None:
    """The id of the focused widget (None when nothing has focus)."""
    return getattr(app.focused, "id", None)
