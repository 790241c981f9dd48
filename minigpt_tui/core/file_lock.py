"""An exclusive flock on a file, held by one process: a run folder's <run>/.lock (held by the
process that trains the run; runs.run_dir) and a corpus download's (data.catalogue). The kernel
drops it when that process ends, however it ends (SIGKILL included), so a listing can tell a live
trainer from a dead one's leftovers. The file also holds the holder's pid, for an app that follows
the run and may ask it to stop (SIGTERM).

Where flock does not exist (Windows) or a file system refuses it, locking is a no-op and
`held` answers None (cannot tell).
"""

from __future__ import annotations

import os
import time
from pathlib import Path


class Busy(Exception):
    """Another live process holds the lock."""


class RunLock:
    """A held lock; release() (or the end of the process) lets it go."""

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


def acquire(path: Path, wait_s: float = 2.0) -> RunLock:
    """Take the lock at `path`, waiting up to wait_s (a listing may be peeking at it for a
    moment); raise Busy when another process keeps holding it."""
    try:
        import fcntl
    except ImportError:
        return RunLock(None)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise Busy(str(path)) from None
            time.sleep(0.05)
        except OSError:  # a file system without locks: go on unlocked
            break
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass
    return RunLock(fd)


def held(path: Path) -> bool | None:
    """Whether a live process holds the lock at `path` (None where that cannot be told)."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        # A shared lock: two lookers (a listing, the training bar) never mistake each other for a
        # trainer, and a trainer's exclusive lock still excludes it.
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # closing drops a lock taken here


def holder_pid(path: Path) -> int | None:
    """The pid written by the last process that took the lock, or None."""
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None
