"""A run as a type: the folder a training run writes (RunDir), and a row of the run list
(RunInfo, list_runs). The facts kept in meta.json are RunMeta (run_meta.py).

A run folder holds
    config.toml       the full resolved config
    tokenizer.json    the vocabulary
    meta.json         RunMeta (run_meta.py): small facts for listings (family, steps, best loss, ...)
    metrics.jsonl     one JSON object per logged step or evaluation
    events.jsonl      the latest training session's events (events.EventLog), to follow it live
    evaluations.jsonl one record per full-pass evaluation (evaluations.py)
    checkpoints/      last.pt and best.pt (see checkpoint.py)
    conversations/    saved chats (core.generation.conversation)
    chat.json         the run's chat template (core.generation.chat_template.RunChat)
    .lock             held (flock) by the one trainer writing into the folder; holds its pid

This module is the one place that spells these names: everything else asks a RunDir for the
path (run.metrics_path, run.checkpoint_path("best"), ...).

A new run folder is assembled under a hidden name and renamed into place with its
config, tokenizer and meta inside, so a run that a listing can see is never half
made. Listing reads the small files and peeks at the end of each checkpoint (the
zip directory), never the weights. Torch is imported only to load a model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minigpt_tui.core import file_lock, fsutil, paths
from minigpt_tui.core.config import RunConfig
from minigpt_tui.core.data.tokenizer import Tokenizer, load_tokenizer
from minigpt_tui.core.errors import CheckpointError, ConfigError, RunError, TokenizerError
from minigpt_tui.core.runs.checkpoint import CHECKPOINT_KINDS, checkpoint_problem, load_checkpoint
from minigpt_tui.core.runs.run_meta import RunMeta
from minigpt_tui.core.runs.run_names import MAX_NOTE_CHARS, run_name_problem

if TYPE_CHECKING:
    import torch

    from minigpt_tui.core.models import LanguageModel

# The names inside a run folder (see the module docstring); on disk since the first runs.
CONFIG_NAME = "config.toml"
TOKENIZER_NAME = "tokenizer.json"
META_NAME = "meta.json"
METRICS_NAME = "metrics.jsonl"
EVENTS_NAME = "events.jsonl"
EVALUATIONS_NAME = "evaluations.jsonl"
CHECKPOINTS_NAME = "checkpoints"
CONVERSATIONS_NAME = "conversations"
CHAT_TEMPLATE_NAME = "chat.json"
LOCK_NAME = ".lock"
LossSeries = list[tuple[int, float]]


class RunDir:
    """One run folder. Cheap to make: nothing is read until asked for."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lock_handle: file_lock.RunLock | None = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    # ---- finding and creating --------------------------------------------------------
    @classmethod
    def resolve(cls, name_or_path: str, root: Path | None = None) -> "RunDir":
        """A run from a name that --list shows (or the start of one that no other run
        shares: names end in a long timestamp), or a path to its folder."""
        path = Path(name_or_path).expanduser()
        if (path / CONFIG_NAME).is_file() or (path / META_NAME).is_file():
            return cls(path)
        root = Path(root) if root is not None else paths.runs_dir()
        plain_name = Path(name_or_path).name == name_or_path and name_or_path not in ("", ".", "..")
        if plain_name and (root / name_or_path).is_dir():  # a name is a folder right under the runs folder
            return cls(root / name_or_path)
        try:
            matches = sorted(p.name for p in root.iterdir() if plain_name and p.is_dir()
                             and not p.name.startswith(".") and p.name.startswith(name_or_path))
        except OSError:  # no runs folder yet, or one we may not read
            matches = []
        if len(matches) == 1:
            return cls(root / matches[0])
        if matches:
            shown = ", ".join(matches[:6]) + (f" and {len(matches) - 6} more" if len(matches) > 6 else "")
            raise RunError(f"Run name {name_or_path!r} matches {len(matches)} runs ({shown}); "
                           "type more of the name.")
        raise RunError(f"No run named {name_or_path!r}; minigpt-tui --list shows the runs.")

    @classmethod
    def create(cls, stem: str, root: Path | None = None, files: dict[str, str] | None = None,
               lock: bool = True) -> "RunDir":
        """A new folder named stem-YYYYmmdd-HHMMSS (-2, -3... on a clash) holding `files`
        (name -> text) and an empty checkpoints/ from the moment it appears; with `lock`,
        its lock is taken before it appears (held in .lock_handle).

        The folder is built under a hidden name and renamed into place. A rename onto a
        name that is taken fails (another run's folder is never empty), so two trainers
        started at the same instant can never share one."""
        root = Path(root) if root is not None else paths.runs_dir()
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(root)
        staging = cls(tempfile.mkdtemp(prefix=f".{stem}-", suffix=".new", dir=root))
        try:
            staging.checkpoints_dir.mkdir()
            for name, text in (files or {}).items():
                fsutil.atomic_write_text(staging.path / name, text)
            if lock:
                staging.lock()
            base = f"{stem}-{datetime.now():%Y%m%d-%H%M%S}"
            for n in range(1, 10_000):
                candidate = root / (base if n == 1 else f"{base}-{n}")
                if candidate.exists():
                    continue
                try:
                    os.rename(staging.path, candidate)
                except OSError:  # taken between the check and the rename (EEXIST / ENOTEMPTY)
                    continue
                fsutil.fsync_dir(root)
                run = cls(candidate)
                run.lock_handle, staging.lock_handle = staging.lock_handle, None
                return run
        except BaseException:
            staging.release()
            shutil.rmtree(staging.path, ignore_errors=True)
            raise
        staging.release()
        shutil.rmtree(staging.path, ignore_errors=True)
        raise RunError(f"Could not create a run folder under {root}.")

    # ---- the lock --------------------------------------------------------------------------
    def lock(self, wait_s: float = 2.0) -> None:
        """Take the run's lock, or raise RunError when another process trains it."""
        try:
            self.lock_handle = file_lock.acquire(self.path / LOCK_NAME, wait_s)
        except file_lock.Busy:
            raise RunError(f"Run {self.name} is being trained by another process; stop that one first.") from None

    def release(self) -> None:
        """Let another process train this run (the lock also goes when the process ends)."""
        if self.lock_handle is not None:
            self.lock_handle.release()
            self.lock_handle = None

    def is_training(self) -> bool | None:
        """Whether a live process holds the run's lock (None where that cannot be told)."""
        return file_lock.held(self.path / LOCK_NAME)

    def trainer_pid(self) -> int | None:
        """The pid of the process that took the run's lock last (it trains the run while
        is_training() is True); None when the lock file does not say."""
        return file_lock.holder_pid(self.path / LOCK_NAME)

    def remove_temp_files(self) -> None:
        """Temporary files of a writer that was killed (call with the lock held)."""
        fsutil.remove_temp_files(self.path, self.checkpoints_dir)

    # ---- where things are ------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_NAME

    @property
    def tokenizer_path(self) -> Path:
        return self.path / TOKENIZER_NAME

    @property
    def meta_path(self) -> Path:
        return self.path / META_NAME

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_NAME

    @property
    def events_path(self) -> Path:
        return self.path / EVENTS_NAME

    @property
    def evaluations_path(self) -> Path:
        return self.path / EVALUATIONS_NAME

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS_NAME

    @property
    def conversations_dir(self) -> Path:
        return self.path / CONVERSATIONS_NAME

    @property
    def chat_template_path(self) -> Path:
        return self.path / CHAT_TEMPLATE_NAME

    # ---- small files -------------------------------------------------------------------------
    def read_meta(self) -> RunMeta:
        path = self.meta_path
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise ValueError
        except FileNotFoundError:
            raise RunError(f"Run file {path} is missing.") from None
        except (OSError, ValueError):
            raise RunError(f"Run file {path} is unreadable or corrupt; its checkpoints can still be used "
                           "with --generate.") from None
        return RunMeta.from_dict(raw, path)

    def write_meta(self, meta: RunMeta) -> None:
        fsutil.atomic_write_text(self.meta_path, meta.to_json())

    def config(self) -> RunConfig:
        try:
            return RunConfig.load(self.config_path, complete=True)
        except ConfigError as err:
            raise RunError(str(err)) from None

    def data_path(self) -> str:
        """data.path as config.toml has it (a file, a folder, a catalogue name, or "" for the
        built-in text), read without checking the rest of the file: "" when it cannot be read."""
        try:
            raw = tomllib.loads(self.config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return ""
        return raw.get("data", {}).get("path", "")

    def tokenizer(self) -> Tokenizer:
        try:
            return load_tokenizer(self.tokenizer_path)
        except TokenizerError as err:
            raise RunError(str(err)) from None

    # ---- metrics -------------------------------------------------------------------------------
    def append_metrics(self, records: list[dict[str, Any]]) -> None:
        if records:
            with open(self.metrics_path, "a", encoding="utf-8") as f:
                f.write("".join(json.dumps(r) + "\n" for r in records))

    def read_metrics(self) -> list[dict[str, Any]]:
        """All metric records; a line torn by a kill mid-write is skipped."""
        return [rec for rec in fsutil.read_json_lines(self.metrics_path) if isinstance(rec.get("step"), int)]

    def truncate_metrics(self, last_step: int) -> None:
        """Drop records after `last_step` (logged after the checkpoint a resume starts from)."""
        kept = [r for r in self.read_metrics() if r["step"] <= last_step]
        fsutil.atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    def series(self, *keys: str, upto: int | None = None) -> dict[str, LossSeries]:
        """(step, value) of numeric fields of the metric records ("loss", "val_loss", "lr",
        "time", "tokens_per_s"), for records before step `upto` (all when None), read in one
        pass over the file: key -> its series (empty for a field no record has)."""
        found: dict[str, LossSeries] = {key: [] for key in keys}
        for rec in self.read_metrics():
            step = rec["step"]
            if upto is not None and step >= upto:
                continue
            for key in keys:
                value = rec.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    found[key].append((step, float(value)))
        return found

    # ---- checkpoints ------------------------------------------------------------------------------
    def checkpoint_path(self, kind: str) -> Path:
        return self.checkpoints_dir / f"{kind}.pt"

    def available_checkpoint(self, preferred: str = "best") -> Path | None:
        """The preferred checkpoint if written, else the other one, else None."""
        for kind in (preferred, *[k for k in CHECKPOINT_KINDS if k != preferred]):
            if self.checkpoint_path(kind).is_file():
                return self.checkpoint_path(kind)
        return None

    def require_checkpoint(self, preferred: str = "best") -> Path:
        """available_checkpoint, or a RunError saying the run has none yet."""
        path = self.available_checkpoint(preferred)
        if path is None:
            raise RunError(f"Run {self.name} has no checkpoint yet; train it a little longer.")
        return path

    def load(self, checkpoint: str = "best", device: "str | torch.device" = "cpu") -> "LoadedRun":
        """Model (in eval mode), tokenizer and config, ready to sample from."""
        from minigpt_tui.core.models import build_model

        if checkpoint not in CHECKPOINT_KINDS:
            raise CheckpointError(f"--checkpoint must be best or last, got {checkpoint!r}.")
        config, tokenizer = self.config(), self.tokenizer()
        path = self.require_checkpoint(checkpoint)
        state = load_checkpoint(path, map_location=device)
        model = build_model(config.model, tokenizer.vocab_size)
        try:
            model.load_state_dict(state["model"])
        except (RuntimeError, TypeError, AttributeError):
            raise CheckpointError(
                f"Checkpoint file {path} does not match the run's config.toml and tokenizer.json.") from None
        model.to(device).eval()
        try:  # (a damaged meta.json costs the ban, not the run)
            unseen = tuple(i for i in self.read_meta().unseen_tokens if i < tokenizer.vocab_size)
        except RunError:
            unseen = ()
        return LoadedRun(self.path, config, tokenizer, model, path, int(state["step"]), unseen)

    # ---- listing -------------------------------------------------------------------------------------
    def info(self) -> "RunInfo":
        """Facts for a listing; problems go into .error, never raise.

        A run whose trainer died without saying so (killed, crashed) still reads
        "training" in its meta.json; when no process holds its lock, its status is
        reported as "interrupted" (it can be resumed)."""
        info = RunInfo(name=self.name, path=self.path)
        try:
            info.created = self.path.stat().st_mtime
            info.meta = self.read_meta()
            info.created = info.meta.created or info.created
            self.config()  # small; catches a corrupt config.toml early
            self.tokenizer()  # small too (a vocabulary)
            present = [self.checkpoint_path(k) for k in CHECKPOINT_KINDS if self.checkpoint_path(k).is_file()]
            problems = [checkpoint_problem(p) for p in present]
            info.has_checkpoint = any(p is None for p in problems)
            if present and not info.has_checkpoint:
                raise RunError(problems[0])
            info.status = info.meta.status
            if info.status == "training" and self.is_training() is False:
                info.status = "interrupted"
        except (RunError, CheckpointError) as err:
            info.error = str(err)
        except (OSError, ValueError, TypeError) as err:
            info.error = f"Run folder {self.path} is unreadable ({err})."
        return info

    def delete(self) -> None:
        shutil.rmtree(self.path)

    # ---- tidying: rename, note ---------------------------------------------------------------------
    def rename(self, new_name: str) -> "RunDir":
        """The run under a new folder name, meta.json's name following. Refused (RunError, one
        sentence) for an unusable or taken name, and while a process trains the run: its lock is
        held across the rename, so no trainer can start on the old path meanwhile."""
        new_name = new_name.strip()
        problem = run_name_problem(new_name)
        if problem:
            raise RunError(problem)
        if new_name == self.name:
            return self
        target = self.path.parent / new_name
        if os.path.lexists(target):
            raise RunError(f"A run named {new_name} already exists; choose another name.")
        self._lock_for_edit("rename")
        try:
            try:
                os.rename(self.path, target)
            except OSError as err:
                raise RunError(f"Could not rename run {self.name} ({err.strerror or err}).") from None
            renamed = RunDir(target)
            try:
                meta = renamed.read_meta()
            except RunError:  # an unreadable meta.json stays as it is: the folder name is the run's name
                meta = None
            if meta is not None:
                meta.name = new_name
                try:
                    renamed.write_meta(meta)
                except OSError as err:  # (a full disk) put the folder back: name and meta agree again
                    os.rename(target, self.path)
                    raise RunError(f"Could not rename run {self.name} ({err.strerror or err}).") from None
            fsutil.fsync_dir(self.path.parent)
            return renamed
        finally:
            self.release()

    def set_note(self, note: str) -> RunMeta:
        """Keep `note` in meta.json. Refused while the run trains: its trainer rewrites meta.json
        from what it holds in memory and would drop the note."""
        note = note.strip()
        if len(note) > MAX_NOTE_CHARS:
            raise RunError(f"A note can be at most {MAX_NOTE_CHARS} characters; this one has {len(note)}.")
        self._lock_for_edit("add a note to")
        try:
            meta = self.read_meta()
            meta.note = note
            try:
                self.write_meta(meta)
            except OSError as err:
                raise RunError(f"Could not write the note of run {self.name} ({err.strerror or err}).") from None
            return meta
        finally:
            self.release()

    def _lock_for_edit(self, what: str) -> None:
        try:
            self.lock(wait_s=0.2)
        except RunError:
            raise RunError(f"Run {self.name} is being trained; stop it before you {what} it.") from None
        except OSError as err:
            raise RunError(f"Could not {what} run {self.name} ({err.strerror or err}).") from None


@dataclass
class LoadedRun:
    run_dir: Path
    config: RunConfig
    tokenizer: Tokenizer
    model: LanguageModel  # in eval mode, on the device asked for
    checkpoint: Path
    step: int
    unseen: tuple[int, ...] = ()  # token ids its training text never held: never sampled


@dataclass
class RunInfo:
    """A row of the run list: the run's meta plus what a listing derives."""

    name: str
    path: Path
    meta: RunMeta = field(default_factory=RunMeta)
    created: float = 0.0  # unix time: meta.created, else the folder's mtime
    status: str = ""  # meta.status, or "interrupted" for a dead trainer's run
    has_checkpoint: bool = False
    error: str = ""  # why the run is unreadable (not meta.error, a failed run's sentence); empty when fine

    # The meta's facts a listing shows, by their plain names.
    family = property(lambda self: self.meta.family)
    tokenizer = property(lambda self: self.meta.tokenizer)
    corpus = property(lambda self: self.meta.corpus)
    params = property(lambda self: self.meta.params)
    step = property(lambda self: self.meta.step)
    max_steps = property(lambda self: self.meta.max_steps)
    best_val_loss = property(lambda self: self.meta.best_val_loss)

    @property
    def date(self) -> str:
        return datetime.fromtimestamp(self.created).strftime("%Y-%m-%d %H:%M") if self.created else "?"


def list_runs(root: Path | None = None) -> list[RunInfo]:
    """Every run under the runs folder, newest first."""
    root = Path(root) if root is not None else paths.runs_dir()
    if not root.is_dir():
        return []
    infos = [RunDir(p).info() for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(infos, key=lambda i: (i.created, i.name), reverse=True)


def _remove_stale_staging(root: Path, age_s: float = 3600.0) -> None:
    """Hidden half-built run folders of trainers killed while creating them (older than an hour)."""
    now = time.time()
    for folder in root.glob(".*.new"):
        try:
            if now - folder.stat().st_mtime > age_s:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass
