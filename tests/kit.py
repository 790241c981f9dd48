"""The one test kit for tiny corpora, configs and runs, used by the core, app and
hardening suites alike (tests/ is on sys.path: `from kit import ...`).

Models here have a few thousand parameters and train in about a second on 2 cores.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from minigpt_tui.core.config import RunConfig
from minigpt_tui.core.data.tokenizer import CharTokenizer

# The core and hardening suites' corpus: few symbols, so losses move fast.
TINY_TEXT = (
    "the cat sat on the mat. the dog sat on the log.\n"
    "a cat and a dog sat on a mat and a log.\n"
) * 40
# The app suite's corpus: its samples show in snapshots, and it reads like the built-in Bible.
GENESIS_TEXT = (
    "In the beginning God created the heaven and the earth.\n"
    "And the earth was without form, and void; and darkness was upon the face of the deep.\n"
) * 40
RECIPE_STEPS, RECIPE_EVAL_INTERVAL = 15, 5  # of write_recipe's tiny model
PINNED_TIME = 1767225600.0  # 2026-01-01 00:00 UTC: dates in snapshots never change


def write_corpus(folder: Path, text: str = TINY_TEXT, name: str = "tiny.txt") -> Path:
    path = Path(folder) / name
    path.write_text(text, encoding="utf-8")
    return path


def tiny_config(corpus: Path, family: str = "transformer", *, model: dict | None = None, **train) -> RunConfig:
    """A tiny char-level model on `corpus`; `model` and `train` override its fields."""
    raw = {
        "data": {"path": str(corpus), "tokenizer": "char"},
        "model": {"family": family, "n_layer": 2, "n_head": 2, "n_embd": 16, "context_length": 16, **(model or {})},
        "train": {"max_steps": 20, "batch_size": 8, "eval_interval": 10, "eval_batches": 2,
                  "log_interval": 1, "sample_tokens": 20, "warmup_steps": 2, "learning_rate": 3e-3,
                  "device": "cpu", **train},
    }
    return RunConfig.from_dict(raw)


def write_recipe(folder: Path, corpus: Path, family: str = "transformer", name: str = "tiny", **train) -> Path:
    """A recipe file (what `--train RECIPE` reads) for the hardening suite's tiny model:
    one layer, dropout on (so exact resume must restore the RNG), one thread."""
    settings = {"max_steps": RECIPE_STEPS, "batch_size": 4, "eval_interval": RECIPE_EVAL_INTERVAL,
                "eval_batches": 1, "sample_tokens": 8, "threads": 1, **train}
    config = tiny_config(corpus, family, model={"n_layer": 1, "dropout": 0.1}, **settings)
    path = Path(folder) / f"{name}.toml"
    path.write_text(config.to_toml(), encoding="utf-8")
    return path


def train_tiny_run(config: RunConfig, runs_root: Path, recipe_name: str = "tiny") -> Path:
    """A finished run trained in-process; torch's thread count is left as it was
    (train.threads=1 must not slow the rest of the suite)."""
    import torch

    from minigpt_tui.core.training.trainer import Trainer

    threads = torch.get_num_threads()
    try:
        done = Trainer(config, lambda e: None, recipe_name=recipe_name, runs_root=runs_root).run()
    finally:
        torch.set_num_threads(threads)
    return Path(done.run_dir)


def stop_and_resume(config: RunConfig, runs_root: Path, stop_at: int) -> tuple[int, dict[int, float]]:
    """A run stopped once step stop_at - 1 is logged, then resumed to its end in the same folder:
    the step it stopped at, and the losses the resumed session logged, by step."""
    from minigpt_tui.core.runs import events as ev
    from minigpt_tui.core.training.trainer import Trainer

    def stop(e):
        if isinstance(e, ev.Step) and e.step == stop_at - 1:
            first.stop_requested = True

    first = Trainer(config, stop, runs_root=runs_root)
    stopped = first.run().step
    resumed = []
    Trainer(config, resumed.append, runs_root=runs_root, resume_dir=first.run_dir).run()
    return stopped, {e.step: e.loss for e in resumed if isinstance(e, ev.Step)}


def tiny_recipe_run(folder: Path, runs_root: Path, max_steps: int = 10) -> Path:
    """A finished run of write_recipe's model on TINY_TEXT, its corpus and recipe in `folder`."""
    return train_tiny_run(RunConfig.load(write_recipe(folder, write_corpus(folder), max_steps=max_steps)), runs_root)


def make_fake_run(home: Path, name: str, *, step: int = 400, max_steps: int = 1000, created: float = PINNED_TIME,
                  best: float | None = 1.85, params: int = 812_672, family: str = "transformer",
                  checkpoint: bool = True, loss_floor: float = 1.7, seconds_per_step: float = 0.05,
                  overrides: tuple[str, ...] = ()) -> Path:
    """A run folder written by hand, with pinned facts and curves (no real weights); `overrides`
    are --set items for its config."""
    run = home / "runs" / name
    (run / "checkpoints").mkdir(parents=True)
    config = RunConfig().with_overrides([f'model.family="{family}"', f"train.max_steps={max_steps}", *overrides])
    (run / "config.toml").write_text(config.to_toml())
    (run / "tokenizer.json").write_text(CharTokenizer(["<unk>", "\n", " ", "a", "b"]).to_json())
    meta = {"name": name, "recipe": "kjv-char-transformer", "family": family, "tokenizer": "char", "corpus": "kjv",
            "vocab_size": 65, "params": params, "created": created, "status": "stopped", "step": step,
            "max_steps": max_steps, "best_val_loss": best}
    (run / "meta.json").write_text(json.dumps(meta))
    records = []
    for s in range(0, step + 1, 10):
        loss = loss_floor + 2.5 * 0.985 ** s
        lr = 1e-3 * min(1.0, (s + 1) / 100)  # a warmup, then flat
        records.append({"step": s, "loss": round(loss, 4), "lr": lr, "time": round(s * seconds_per_step, 3)})
        if s % 100 == 0:
            records.append({"step": s, "val_loss": round(loss + 0.08, 4), "train_loss": round(loss, 4)})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if checkpoint:  # a zip, as torch.save writes, but without weights: listing never loads it
        with zipfile.ZipFile(run / "checkpoints" / "last.pt", "w") as z:
            z.writestr("placeholder", "listing reads only small files")
    return run
