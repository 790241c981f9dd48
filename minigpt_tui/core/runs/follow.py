"""Follow a training run from its files, without being the trainer's parent.

The trainer (rank 0 under torchrun) appends every event it reports to the run's
events.jsonl (events.EventLog) and holds the run's .lock, which names its pid, while it
trains (runs.RunDir). So any process can watch a run started elsewhere (another
terminal, torchrun, a batch job): read the new complete lines of the events file, and
know the run is over when a Done or Error line arrives or the lock is let go. A trainer
killed with SIGKILL writes no last line; then meta.json has the last word.

    follower = RunFollower(run_dir)
    while not follower.ended:
        for event in follower.poll(): ...
        time.sleep(0.25)

training_runs() and peek() tell cheaply which runs are being trained and how far they
are, for a listing that refreshes every few seconds. No Textual here.
"""

from __future__ import annotations

import math
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from minigpt_tui.core import paths
from minigpt_tui.core.errors import RunError
from minigpt_tui.core.runs import events as ev
from minigpt_tui.core.runs.run_dir import RunDir

TAIL_BYTES = 16 * 1024  # how much of the end of events.jsonl a peek reads


class RunFollower:
    """The events of a run's latest training session, as its trainer writes them."""

    def __init__(self, run_dir: str | Path):
        self.run = RunDir(run_dir)
        self.ended = False  # a Done or Error was read, or the trainer is gone
        self.pid: int | None = None  # the trainer's, once seen training
        self._file_id: tuple[int, int] | None = None  # (device, inode) of the file being read
        self._offset = 0
        self._partial = b""  # the start of a line still being written

    def poll(self) -> list[ev.Event]:
        """The events written since the last poll (complete lines only). After the last
        one, `ended` is True; a trainer that vanished without a word gets an Error."""
        if self.ended:
            return []
        # The lock is looked at before the file is read: what a trainer wrote before
        # letting go is all in the file by then, so nothing is lost at the end.
        alive = self.run.is_training()
        if alive and self.pid is None:
            self.pid = self.run.trainer_pid()
        events = self._read_new()
        for i, event in enumerate(events):
            if isinstance(event, (ev.Done, ev.Error)):
                self.ended = True
                return events[: i + 1]
        if alive is False:  # (None: this system cannot tell; only a last line ends the follow)
            self.ended = True
            events.append(self._last_word())
        return events

    def _read_new(self) -> list[ev.Event]:
        try:
            f = open(self.run.events_path, "rb")
        except OSError:  # not written yet (the trainer is setting up), or unreadable
            return []
        with f:
            st = os.fstat(f.fileno())
            file_id = (st.st_dev, st.st_ino)
            if file_id != self._file_id or st.st_size < self._offset:  # a new session's file
                self._file_id, self._offset, self._partial = file_id, 0, b""
            f.seek(self._offset)
            data = f.read()
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()  # a line without its end yet (or torn by a kill): wait for it
        events = []
        for line in lines:
            try:
                events.append(ev.decode(line.decode("utf-8", "replace")))
            except (ValueError, TypeError):  # not an event, or one with fields missing
                continue
        return events

    def _last_word(self) -> ev.Event:
        """How the run ended, from meta.json, when its trainer wrote no Done or Error."""
        name = self.run.name
        try:
            meta = self.run.read_meta()
        except RunError as err:
            return ev.Error(message=str(err), run_dir=str(self.run.path))
        best = meta.best_val_loss
        if meta.status in ("finished", "stopped"):
            return ev.Done(step=meta.step, run_dir=str(self.run.path), reason=meta.status, best_val_loss=best,
                           elapsed_s=math.nan)
        if meta.status == "failed" and meta.error:
            return ev.Error(message=meta.error, run_dir=str(self.run.path))
        return ev.Error(message=f"The trainer of {name} ended without a word (was it killed?); "
                                f"its last checkpoint is kept, so the run can be resumed.", run_dir=str(self.run.path))

    def stop_trainer(self) -> bool:
        """Ask the trainer to stop as the app's Stop does (SIGTERM: it saves a checkpoint, then
        exits). False when its pid is unknown, it no longer trains, or it may not be signalled."""
        pid = self.pid or self.run.trainer_pid()
        # The lock still held, and by the pid it names: never signal a pid reused since.
        if pid is None or pid == os.getpid() or not self.run.is_training() or self.run.trainer_pid() != pid:
            return False
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:  # gone meanwhile, or another user's
            return False
        return True


@dataclass
class RunPeek:
    """How far a run being trained is, from its small files (meta.json and the end of
    events.jsonl); numbers the trainer has not reported yet are NaN or None."""

    name: str
    path: Path
    pid: int | None = None
    step: int = 0
    max_steps: int = 0
    loss: float = math.nan
    eta_s: float = math.nan
    best_val_loss: float | None = None


def peek(run: RunDir) -> RunPeek:
    """The latest step, loss, ETA and best of a run, reading at most TAIL_BYTES of its events."""
    found = RunPeek(run.name, run.path, pid=run.trainer_pid())
    try:
        meta = run.read_meta()
        found.step, found.max_steps, found.best_val_loss = meta.step, meta.max_steps, meta.best_val_loss
    except RunError:
        pass
    try:
        with open(run.events_path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - TAIL_BYTES))
            lines = f.read().split(b"\n")
    except OSError:
        return found
    if len(lines) > 1 and size > TAIL_BYTES:
        lines = lines[1:]  # the first one is cut
    for line in lines:
        try:
            event = ev.decode(line.decode("utf-8", "replace"))
        except (ValueError, TypeError):
            continue
        if isinstance(event, ev.Started):
            found.max_steps, found.step = event.max_steps, event.start_step
        elif isinstance(event, ev.Step):
            found.step, found.loss, found.eta_s = event.step, event.loss, event.eta_s
        elif isinstance(event, ev.Eval) and event.best_val_loss is not None:
            found.best_val_loss = event.best_val_loss
    return found


def training_runs(root: Path | None = None) -> list[RunPeek]:
    """The runs some live process is training (their lock is held), newest name first.
    Cheap enough to call every few seconds: one lock test per run folder, and a peek at
    the ones being trained."""
    root = Path(root) if root is not None else paths.runs_dir()
    try:
        folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []
    return [peek(RunDir(p)) for p in sorted(folders, reverse=True) if RunDir(p).is_training()]
