"""Writes that survive a kill at any instant.

Every file minigpt-tui writes goes to a temporary sibling, is flushed to disk and
renamed over the old one, so a reader sees the previous version or the new one,
never half of either. Callers use these functions through the module
(`fsutil.atomic_write(...)`), which keeps them replaceable in fault-injection tests.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

TEMP_SUFFIX = ".tmp"


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
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), mode="w")


def fsync_dir(folder: Path) -> None:
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


def remove_temp_files(*folders: Path) -> None:
    """Delete the temporary files a killed writer left in these folders (call it only while
    no other process can be writing there, e.g. with the run's lock held)."""
    for folder in folders:
        for tmp in Path(folder).glob(f".*{TEMP_SUFFIX}"):
            try:
                tmp.unlink()
            except OSError:
                pass


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file, oldest first; [] for a missing or unreadable file.
    A line that is not an object is skipped (torn by a kill mid-write, or foreign)."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records
