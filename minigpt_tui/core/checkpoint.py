"""Run folders: create them, write into them atomically, list and load them safely.

A run folder holds
    config.toml       the full resolved config
    tokenizer.json    the vocabulary
    meta.json         small facts for listings (family, steps, best loss, ...)
    metrics.jsonl     one JSON object per logged step or evaluation
    checkpoints/last.pt, checkpoints/best.pt

Every file is written to a temporary file in the same folder, flushed to disk and
renamed over the old one, so a kill at any instant leaves the previous version
readable. Checkpoints load with torch.load(weights_only=True): tensors and plain
containers only, never arbitrary pickled objects. Listing reads meta.json and
config.toml only, never the weights.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from minigpt_tui.core import paths
from minigpt_tui.core.config import ConfigError, RunConfig
from minigpt_tui.core.tokenizer import Tokenizer, TokenizerError

if TYPE_CHECKING:  # torch is imported lazily: listing runs must stay fast and light
    import torch

CHECKPOINT_KINDS = ("best", "last")
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A run or checkpoint that cannot be used; str(err) is one sentence."""


# ---- atomic writes ---------------------------------------------------------------


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write via `write(fileobj)` into a temporary sibling, fsync, then rename into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_torch_save(obj: Any, path: Path) -> None:
    import torch

    atomic_write(path, lambda f: torch.save(obj, f))


# ---- run folders ---------------------------------------------------------------------


def create_run_dir(stem: str, root: Path | None = None) -> Path:
    """A new, empty run folder named stem-YYYYmmdd-HHMMSS (with -2, -3... on a clash).

    os.mkdir either creates the folder or fails, so two trainers started at the
    same instant can never share one.
    """
    root = Path(root) if root is not None else paths.runs_dir()
    root.mkdir(parents=True, exist_ok=True)
    base = f"{stem}-{datetime.now():%Y%m%d-%H%M%S}"
    for n in range(1, 10_000):
        candidate = root / (base if n == 1 else f"{base}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        (candidate / "checkpoints").mkdir()
        return candidate
    raise CheckpointError(f"Could not create a run folder under {root}.")


def checkpoint_path(run_dir: Path, kind: str) -> Path:
    return Path(run_dir) / "checkpoints" / f"{kind}.pt"


def write_meta(run_dir: Path, meta: dict[str, Any]) -> None:
    atomic_write_text(Path(run_dir) / "meta.json", json.dumps(meta, indent=1))


def read_meta(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "meta.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError
        return meta
    except FileNotFoundError:
        raise CheckpointError(f"Run file {path} is missing.") from None
    except (OSError, ValueError):
        raise CheckpointError(f"Run file {path} is unreadable or corrupt.") from None


def append_metrics(run_dir: Path, records: list[dict[str, Any]]) -> None:
    if not records:
        return
    with open(Path(run_dir) / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """All metric records; a line torn by a kill mid-write is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    records = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int):
            records.append(rec)
    return records


def truncate_metrics(run_dir: Path, last_step: int) -> None:
    """Drop records after `last_step` (logged after the checkpoint a resume starts from)."""
    kept = [r for r in read_metrics(run_dir) if r["step"] <= last_step]
    atomic_write_text(Path(run_dir) / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in kept))


# ---- checkpoints ---------------------------------------------------------------------


def save_checkpoint(run_dir: Path, kind: str, state: dict[str, Any]) -> Path:
    path = checkpoint_path(run_dir, kind)
    atomic_torch_save({"format": FORMAT_VERSION, **state}, path)
    return path


def load_checkpoint(path: Path, map_location: "str | torch.device" = "cpu") -> dict[str, Any]:
    """Load a checkpoint without executing anything it might contain."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint file {path} does not exist.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"Checkpoint file {path} holds objects other than tensors (possibly code) and was refused; "
            "only load checkpoints written by minigpt-tui."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, UnicodeDecodeError):
        raise CheckpointError(f"Checkpoint file {path} is truncated or corrupt; use the other checkpoint or retrain.") from None
    except Exception as err:  # any other failure of the unpickler is still a bad file
        raise CheckpointError(f"Checkpoint file {path} cannot be loaded ({type(err).__name__}).") from None
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise CheckpointError(f"Checkpoint file {path} is not a minigpt-tui checkpoint.")
    return state


def load_run_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "config.toml"
    try:
        return RunConfig.load(path)
    except ConfigError as err:
        raise CheckpointError(str(err)) from None


def load_run_tokenizer(run_dir: Path) -> Tokenizer:
    try:
        return Tokenizer.load(Path(run_dir) / "tokenizer.json")
    except TokenizerError as err:
        raise CheckpointError(str(err)) from None


def available_checkpoint(run_dir: Path, preferred: str = "best") -> Path | None:
    """The preferred checkpoint if written, else the other one, else None."""
    for kind in (preferred, *[k for k in CHECKPOINT_KINDS if k != preferred]):
        path = checkpoint_path(run_dir, kind)
        if path.is_file():
            return path
    return None


@dataclass
class LoadedRun:
    run_dir: Path
    config: RunConfig
    tokenizer: Tokenizer
    model: "torch.nn.Module"
    checkpoint: Path
    step: int


def load_run(run_dir: Path, checkpoint: str = "best", device: "str | torch.device" = "cpu") -> LoadedRun:
    """Model (in eval mode), tokenizer and config of a run, ready to sample from."""
    from minigpt_tui.core.models import build_model

    run_dir = Path(run_dir)
    if checkpoint not in CHECKPOINT_KINDS:
        raise CheckpointError(f"--checkpoint must be best or last, got {checkpoint!r}.")
    config = load_run_config(run_dir)
    tokenizer = load_run_tokenizer(run_dir)
    path = available_checkpoint(run_dir, checkpoint)
    if path is None:
        raise CheckpointError(f"Run {run_dir.name} has no checkpoint yet; train it a little longer.")
    state = load_checkpoint(path, map_location=device)
    model = build_model(config.model, tokenizer.vocab_size)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError):
        raise CheckpointError(
            f"Checkpoint file {path} does not match the run's config.toml and tokenizer.json."
        ) from None
    model.to(device).eval()
    return LoadedRun(run_dir, config, tokenizer, model, path, int(state["step"]))


# ---- finding and listing runs ---------------------------------------------------------


def resolve_run(name_or_path: str, root: Path | None = None) -> Path:
    """A run folder from a name that --list shows, or a path to the folder."""
    path = Path(name_or_path).expanduser()
    if (path / "config.toml").is_file() or (path / "meta.json").is_file():
        return path
    root = Path(root) if root is not None else paths.runs_dir()
    candidate = root / name_or_path
    if candidate.is_dir() and name_or_path not in ("", ".", ".."):
        return candidate
    raise CheckpointError(f"No run named {name_or_path!r}; minigpt-tui --list shows the runs.")


@dataclass
class RunInfo:
    name: str
    path: Path
    family: str = "?"
    tokenizer: str = "?"
    corpus: str = "?"
    params: int = 0
    step: int = 0
    max_steps: int = 0
    best_val_loss: float | None = None
    created: float = 0.0  # unix time
    status: str = ""
    has_checkpoint: bool = False
    error: str = ""  # why the run is unreadable; empty when it is fine

    @property
    def date(self) -> str:
        return datetime.fromtimestamp(self.created).strftime("%Y-%m-%d %H:%M") if self.created else "?"


def run_info(run_dir: Path) -> RunInfo:
    """Facts about a run from its small files; problems go into .error, never raise."""
    run_dir = Path(run_dir)
    info = RunInfo(name=run_dir.name, path=run_dir)
    try:
        info.created = run_dir.stat().st_mtime
        meta = read_meta(run_dir)
        info.family = str(meta.get("family", "?"))
        info.tokenizer = str(meta.get("tokenizer", "?"))
        info.corpus = str(meta.get("corpus", "?"))
        info.params = int(meta.get("params", 0))
        info.step = int(meta.get("step", 0))
        info.max_steps = int(meta.get("max_steps", 0))
        best = meta.get("best_val_loss")
        info.best_val_loss = float(best) if best is not None else None
        info.created = float(meta.get("created", info.created))
        info.status = str(meta.get("status", ""))
        load_run_config(run_dir)  # small; catches a corrupt config.toml early
        info.has_checkpoint = available_checkpoint(run_dir) is not None
        if not (run_dir / "tokenizer.json").is_file():
            raise CheckpointError(f"Tokenizer file {run_dir / 'tokenizer.json'} is missing.")
    except CheckpointError as err:
        info.error = str(err)
    except (OSError, ValueError, TypeError) as err:
        info.error = f"Run folder {run_dir} is unreadable ({err})."
    return info


def list_runs(root: Path | None = None) -> list[RunInfo]:
    """Every run under the runs folder, newest first."""
    root = Path(root) if root is not None else paths.runs_dir()
    if not root.is_dir():
        return []
    infos = [run_info(p) for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(infos, key=lambda i: (i.created, i.name), reverse=True)


def delete_run(run_dir: Path) -> None:
    shutil.rmtree(run_dir)
