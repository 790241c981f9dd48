"""The Train tab's standby trainer: a child process that has done a run's imports before `s`.

What it is and why: minigpt_tui/cli/standby.py. The Train pane keeps at most one: it starts
one a moment after the Train tab is first shown (STANDBY_DELAY_S, so the app's own start is
not slowed; an app opened on Generate to chat starts none) and after every run, and
TrainerProcess.start takes it. Nothing here blocks the UI: the process is started through
asyncio, and it does its imports on its own.

Off with MINIGPT_TUI_STANDBY=0 (it holds torch, ~230 MB, while it waits); the test suite
keeps it off except where it is tested.
"""

from __future__ import annotations

import asyncio
import os
import sys

STANDBY_ENV = "MINIGPT_TUI_STANDBY"
STANDBY_DELAY_S = 1.5  # after the tab opens or a run ends: the app draws and settles first


def standby_enabled() -> bool:
    return os.environ.get(STANDBY_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


class Standby:
    """At most one waiting trainer process (see the module docstring)."""

    def __init__(self, stream_limit: int) -> None:
        self.stream_limit = stream_limit
        self.process: asyncio.subprocess.Process | None = None
        self.scheduled = False  # a start is due (the pane's timer)
        self._starting = False

    @property
    def ready(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def wanted(self) -> bool:
        """Worth scheduling a start: enabled, and none waits, is due or is being started."""
        return standby_enabled() and not (self.ready or self.scheduled or self._starting)

    async def start(self) -> None:
        """Start one unless one waits or starts already; a failure to start is left for the real
        start to report."""
        if self.ready or self._starting:
            return
        self._starting = True
        env = dict(os.environ, PYTHONUNBUFFERED="1")  # (as TrainerProcess: every event as it happens)
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "minigpt_tui.cli.standby", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, limit=self.stream_limit)
        except OSError:
            self.process = None
        finally:
            self._starting = False

    def take(self) -> asyncio.subprocess.Process | None:
        """The waiting process, which is then the caller's (None if there is none, or it died)."""
        process, self.process = self.process, None
        if process is not None and process.returncode is not None:
            process.stdin.close()  # (a dead one: its pipe goes now, not at garbage collection)
            return None
        return process

    async def close(self) -> None:
        """End the waiting process (closing its stdin is its signal to exit) and reap it."""
        process, self.process = self.process, None
        if process is None:
            return
        process.stdin.close()
        if process.returncode is None:
            process.kill()  # (it may be mid-import: no need to wait for that)
        await process.wait()
