"""The headless trainer as a child process, read as an async stream of events.

`python -m minigpt_tui --train ... --events jsonl` prints one JSON event per line on
stdout; it is read through an asyncio pipe, so nothing the trainer does (a long
evaluation, a hang) can stall the UI. Stop is SIGTERM: the trainer saves a checkpoint
and reports Done(stopped). No Textual here: the Train pane drives this.
WatchedRun has the same face for a run another process trains, followed from its files.

    trainer = TrainerProcess(["--train", "recipe.toml"])
    await trainer.start()              # OSError if it cannot be started (start(standby): see standby.py)
    async for event in trainer: ...    # until the trainer exits
    trainer.returncode, trainer.crash_message()
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import AsyncIterator

from minigpt_tui.core.runs import events as ev
from minigpt_tui.core.runs.follow import RunFollower
from minigpt_tui.tui.formatting import clip

STREAM_LIMIT = 16 * 1024 * 1024  # longest event line we accept (a long sample)
STDERR_KEPT = 50  # last lines of stderr kept to say why a trainer died


class TrainerProcess:
    """One run of the headless trainer with these CLI arguments (plus --events jsonl)."""

    watched = False  # this app's own child (see WatchedRun)

    def __init__(self, args: list[str]) -> None:
        self.args = list(args)
        self.command = [*self.args, "--events", "jsonl"]  # what minigpt-tui is given
        self.argv = [sys.executable, "-m", "minigpt_tui", *self.command]
        self.stderr_lines: list[str] = []
        self.returncode: int | None = None  # set once the trainer has exited and its output is read
        self.stop_requested = False
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self, standby: asyncio.subprocess.Process | None = None) -> None:
        """Start the child; OSError (no Python, no fork) propagates for the caller to report.

        `standby`: a waiting `minigpt_tui.cli.standby` process (tui/train/standby.py), given the
        command line instead of starting a new interpreter; if it has died, a fresh one starts."""
        if standby is not None and standby.returncode is None:
            try:
                standby.stdin.write((json.dumps(self.command) + "\n").encode())
                await standby.stdin.drain()
                standby.stdin.close()
                self._proc = standby
                return
            except (BrokenPipeError, ConnectionResetError):  # it died as it was handed the line
                await standby.wait()
        # Unbuffered, so every event arrives when it happens rather than when a buffer fills.
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, limit=STREAM_LIMIT)

    def __aiter__(self) -> AsyncIterator[ev.Event]:
        return self.events()

    async def events(self) -> AsyncIterator[ev.Event]:
        """The trainer's events as they come; ends when it has exited (returncode is set)."""
        proc = self._proc
        if proc is None:
            raise RuntimeError("TrainerProcess.events() before start()")
        stderr_task = asyncio.create_task(self._read_stderr(proc.stderr))
        try:
            while True:
                try:
                    raw = await proc.stdout.readline()
                except ValueError:  # a line over STREAM_LIMIT: asyncio dropped it, read on
                    continue
                if not raw:
                    break
                line = raw.decode("utf-8", "replace").strip()
                if not line:
                    continue
                try:
                    event = ev.decode(line)
                except (ValueError, TypeError):  # not an event, or one with fields missing
                    continue  # not an event (a library printing to stdout): nothing to show
                yield event
            returncode = await proc.wait()
            await stderr_task
            self.returncode = returncode
        finally:
            # Cancelled (the app is closing): do not leave the stderr reader pending.
            if not stderr_task.done():
                stderr_task.cancel()

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # an over-long line (a huge repr in a traceback): skip it
                continue
            if not raw:
                return
            text = raw.decode("utf-8", "replace").strip()
            if text:
                self.stderr_lines = (self.stderr_lines + [text])[-STDERR_KEPT:]

    def stop(self) -> bool:
        """Ask the trainer to stop (SIGTERM: it saves a checkpoint, then exits). False when a
        stop was already asked for or the trainer is not running."""
        if self._proc is None or self.stop_requested or self._proc.returncode is not None:
            return False
        self.stop_requested = True
        try:
            self._proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:  # it exited between the check and the signal
            pass
        return True

    def kill(self) -> None:
        """End the trainer now (SIGKILL); the checkpoint it was writing may be lost."""
        if self._proc is not None and self._proc.returncode is None:
            try:
                self._proc.kill()
            except ProcessLookupError:
                pass

    async def wait(self) -> int:
        if self._proc is None:
            raise RuntimeError("TrainerProcess.wait() before start()")
        return await self._proc.wait()

    async def stop_and_wait(self, timeout: float = 60.0) -> None:
        """Stop the trainer and wait until it has saved and exited; kill it after `timeout`."""
        if self._proc is None:
            return
        self.stop()
        try:
            await asyncio.wait_for(self._proc.wait(), timeout)
        except asyncio.TimeoutError:
            self.kill()

    def crash_message(self) -> str:
        """Why the trainer ended badly: its own sentence, else the signal that killed it, else
        its last line of stderr (the end of a traceback says more than a warning printed first)."""
        rc = self.returncode if self.returncode is not None else 0
        for line in reversed(self.stderr_lines):
            if line.startswith("minigpt-tui:"):
                return line.removeprefix("minigpt-tui:").strip()
        if rc < 0:
            try:
                name = signal.Signals(-rc).name
            except ValueError:
                name = f"signal {-rc}"
            return f"The trainer was killed by {name}."
        if self.stderr_lines:
            return f"The trainer exited with status {rc}: {clip(self.stderr_lines[-1], 200)}"
        return f"The trainer exited with status {rc} without saying why."


class WatchedRun:
    """A run another process trains (a headless --train, torchrun), followed from its files
    (core.runs.follow) with TrainerProcess's face, so the Train pane shows it as its own child.
    Stop asks that trainer to stop (SIGTERM to the pid its lock names)."""

    watched = True
    POLL_S = 0.25  # how often the events file is read

    def __init__(self, run_dir: str | Path) -> None:
        self.follower = RunFollower(run_dir)
        self.returncode: int | None = None
        self.stop_requested = False

    @property
    def pid(self) -> int | None:
        return self.follower.pid

    async def start(self, standby=None) -> None:
        """Nothing to start: the trainer runs already (TrainerProcess.start's face; the Train tab
        never hands a watched run its standby)."""

    def __aiter__(self) -> AsyncIterator[ev.Event]:
        return self.events()

    async def events(self) -> AsyncIterator[ev.Event]:
        """The run's events from the start of its current session, as they are written; ends
        with its Done or Error (made up from meta.json when the trainer died without a word)."""
        while True:
            # In a thread: the first read of a long session's file can take a moment.
            for event in await asyncio.to_thread(self.follower.poll):
                yield event
            if self.follower.ended:
                break
            await asyncio.sleep(self.POLL_S)
        self.returncode = 0  # how it ended is in its last event

    def stop(self) -> bool:
        if self.stop_requested or self.follower.ended:
            return False
        self.stop_requested = self.follower.stop_trainer()
        return self.stop_requested

    async def stop_and_wait(self, timeout: float = 60.0) -> None:
        """Quitting the app leaves a run it does not own alone."""

    def crash_message(self) -> str:
        return f"The trainer of {self.follower.run.name} ended without a word."
