"""Run folders: create them, write into them atomically, list and load them safely.

A run folder holds
    config.toml       the full resolved config
    tokenizer.json    the vocabulary
    meta.json         small facts for listings (family, steps, best loss, ...)
    metrics.jsonl     one JSON object per logged step or evaluation
    checkpoints/last.pt, checkpoints/best.pt

    .lock             held (flock) by the one trainer writing into the folder

Every file is written to a temporary file in the same folder, flushed to disk and
renamed over the old one, so a kill at any instant leaves the previous version
readable. A new run folder is assembled under a hidden name and renamed into
place with its config, tokenizer and meta inside, so a run that --list can see
is never half made. Checkpoints load with torch.load(weights_only=True):
tensors and plain containers only, never arbitrary pickled objects. Listing
reads meta.json, config.toml and tokenizer.json, and peeks at the end of each
checkpoint (the zip directory), never the weights.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
import time
import warnings
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
LOCK_NAME = ".lock"
TEMP_SUFFIX = ".tmp"


class CheckpointError(ValueError):
    """A run or checkpoint that cannot be used; str(err) is one sentence."""


# ---- atomic writes ---------------------------------------------------------------


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write via `write(fileobj)` into a temporary sibling, fsync, then rename into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
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
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_temp_files(run_dir: Path) -> None:
    """Delete the temporary files a killed writer left behind (call with the run's lock held)."""
    for folder in (Path(run_dir), Path(run_dir) / "checkpoints"):
        for tmp in folder.glob(f".*{TEMP_SUFFIX}"):
            try:
                tmp.unlink()
            except OSError:
                pass


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_torch_save(obj: Any, path: Path) -> None:
    import torch

    atomic_write(path, lambda f: torch.save(obj, f))


# ---- run folders ---------------------------------------------------------------------


def create_run_dir(stem: str, root: Path | None = None, files: dict[str, str] | None = None) -> Path:
    """A new run folder named stem-YYYYmmdd-HHMMSS (with -2, -3... on a clash), holding `files`
    (name -> text) and an empty checkpoints/ folder from the moment it appears.

    The folder is built under a hidden name and renamed into place. A rename onto
    a name that is already taken fails (another run's folder is never empty), so
    two trainers started at the same instant can never share one.
    """
    return _create_run_dir(stem, root, files, lock=False)[0]


def create_locked_run_dir(stem: str, root: Path | None = None,
                          files: dict[str, str] | None = None) -> tuple[Path, "RunLock"]:
    """create_run_dir, with the run's lock taken before the folder appears."""
    path, run_lock = _create_run_dir(stem, root, files, lock=True)
    return path, run_lock


def _create_run_dir(stem, root, files, lock):
    root = Path(root) if root is not None else paths.runs_dir()
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(root)
    staging = Path(tempfile.mkdtemp(prefix=f".{stem}-", suffix=".new", dir=root))
    run_lock = None
    try:
        (staging / "checkpoints").mkdir()
        for name, text in (files or {}).items():
            atomic_write_text(staging / name, text)
        run_lock = lock_run(staging) if lock else None
        base = f"{stem}-{datetime.now():%Y%m%d-%H%M%S}"
        for n in range(1, 10_000):
            candidate = root / (base if n == 1 else f"{base}-{n}")
            if candidate.exists():
                continue
            try:
                os.rename(staging, candidate)
            except OSError:  # taken between the check and the rename (EEXIST / ENOTEMPTY)
                continue
            _fsync_dir(root)
            return candidate, run_lock
    except BaseException:
        if run_lock is not None:
            run_lock.release()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if run_lock is not None:
        run_lock.release()
    shutil.rmtree(staging, ignore_errors=True)
    raise CheckpointError(f"Could not create a run folder under {root}.")


def _remove_stale_staging(root: Path, age_s: float = 3600.0) -> None:
    """Hidden half-built run folders of trainers killed while creating them (older than an hour)."""
    now = time.time()
    for folder in root.glob(".*.new"):
        try:
            if now - folder.stat().st_mtime > age_s:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass


# ---- the run lock ------------------------------------------------------------------------


class RunLock:
    """An exclusive flock on run_dir/.lock, held by the one process training the run.
    The kernel drops it when the process ends, however it ends (SIGKILL included)."""

    def __init__(self, fd: int | None):
        self.fd = fd

    def __del__(self):
        self.release()

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


def lock_run(run_dir: Path, wait_s: float = 2.0) -> RunLock:
    """Take the run's lock, or raise CheckpointError when another process trains it.
    (Where flock does not exist, e.g. on Windows, this is a no-op.)"""
    try:
        import fcntl
    except ImportError:
        return RunLock(None)
    path = Path(run_dir) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_s  # a listing may be peeking at the lock for a moment
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return RunLock(fd)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise CheckpointError(
                    f"Run {Path(run_dir).name} is being trained by another process; stop that one first."
                ) from None
            time.sleep(0.05)
        except OSError:  # a file system without locks: go on unlocked
            return RunLock(fd)


def is_training(run_dir: Path) -> bool | None:
    """Whether a live process holds the run's lock (None where that cannot be told)."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fd = os.open(Path(run_dir) / LOCK_NAME, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # closing drops a lock taken here


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
        raise CheckpointError(
            f"Run file {path} is unreadable or corrupt; its checkpoints can still be used with --generate."
        ) from None


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


def checkpoint_problem(path: Path) -> str | None:
    """Why a checkpoint file cannot be a minigpt-tui checkpoint, from its size and its last
    bytes only (torch.save writes a zip, whose directory sits at the end); None if it may be."""
    path = Path(path)
    try:
        if not path.is_file():
            return f"Checkpoint file {path} does not exist."
        if path.stat().st_size == 0:
            return f"Checkpoint file {path} is empty; use the other checkpoint or retrain."
        if zipfile.is_zipfile(path):
            return None
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError as err:
        return f"Checkpoint file {path} cannot be read ({err.strerror or err})."
    if head[:1] == b"\x80":  # a bare pickle: minigpt-tui never writes one, and it could run code
        return (f"Checkpoint file {path} is a bare pickle, not a minigpt-tui checkpoint, and was refused "
                "(loading it could run code); only load checkpoints written by minigpt-tui.")
    return f"Checkpoint file {path} is truncated or corrupt; use the other checkpoint or retrain."


def load_checkpoint(path: Path, map_location: "str | torch.device" = "cpu") -> dict[str, Any]:
    """Load a checkpoint without executing anything it might contain."""
    import torch

    path = Path(path)
    problem = checkpoint_problem(path)
    if problem:
        raise CheckpointError(problem)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes about pickle protocols are not for users
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
    if (not isinstance(state, dict) or not isinstance(state.get("model"), dict)
            or not isinstance(state.get("step"), int) or isinstance(state.get("step"), bool)):
        raise CheckpointError(f"Checkpoint file {path} is not a minigpt-tui checkpoint.")
    return state


def load_run_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "config.toml"
    try:
        return RunConfig.load(path, complete=True)
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
    plain_name = Path(name_or_path).name == name_or_path and name_or_path not in ("", ".", "..")
    candidate = root / name_or_path
    if plain_name and candidate.is_dir():  # a name is a folder right under the runs folder, nothing else
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
    """Facts about a run from its small files; problems go into .error, never raise.

    A run whose trainer died without saying so (killed, crashed) still reads
    "training" in its meta.json; when no process holds its lock, its status is
    reported as "interrupted" (it can be resumed).
    """
    run_dir = Path(run_dir)
    info = RunInfo(name=run_dir.name, path=run_dir)
    try:
        info.created = run_dir.stat().st_mtime
        meta = read_meta(run_dir)
        try:
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
        except (ValueError, TypeError, OverflowError):
            raise CheckpointError(f"Run file {run_dir / 'meta.json'} holds values of the wrong type.") from None
        load_run_config(run_dir)  # small; catches a corrupt config.toml early
        load_run_tokenizer(run_dir)  # small too (a vocabulary)
        present = [checkpoint_path(run_dir, k) for k in CHECKPOINT_KINDS if checkpoint_path(run_dir, k).is_file()]
        problems = [checkpoint_problem(p) for p in present]
        info.has_checkpoint = any(p is None for p in problems)
        if present and not info.has_checkpoint:
            raise CheckpointError(problems[0])
        if info.status == "training" and is_training(run_dir) is False:
            info.status = "interrupted"
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
