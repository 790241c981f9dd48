"""What a full pass over a corpus file found (its digest and length in characters), remembered
in the cache folder by the file's size and modification time, so that a later start trusts
them instead of reading the file again. A file whose size or mtime changed is read again.

The index is one small JSON file; writers replace it atomically, so a reader sees one whole
version. Two processes writing at once may drop each other's new entry: that file is then
simply scanned again next time. Only files that passed every check are remembered.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from minigpt_tui.core import fsutil, paths

INDEX_NAME = "files.json"
_memo: dict[str, "FileScan"] = {}  # this process's scans (also where the index cannot be written)


@dataclass(frozen=True)
class FileScan:
    size: int
    mtime_ns: int
    digest: str  # of the file's bytes (blake2b, hex)
    chars: int  # characters of its text (after a leading BOM is dropped)


def index_path() -> Path:
    return paths.cache_dir() / INDEX_NAME


def _read_index() -> dict:
    try:
        raw = json.loads(index_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or damaged: it is only a shortcut
        return {}
    return raw if isinstance(raw, dict) else {}


def remembered(key: str, status: os.stat_result) -> FileScan | None:
    """The scan stored for `key` (a file's resolved path), if the file still has its size and mtime."""
    scan = _memo.get(key)
    if scan is None:
        try:
            scan = FileScan(**_read_index().get(key))
        except TypeError:  # missing, or written by another version
            return None
    return scan if (scan.size, scan.mtime_ns) == (status.st_size, status.st_mtime_ns) else None


def remember(key: str, scan: FileScan) -> None:
    """Store a scan; a cache folder that cannot be written only costs a rescan next time."""
    _memo[key] = scan
    index = _read_index()
    index[key] = asdict(scan)
    try:
        index_path().parent.mkdir(parents=True, exist_ok=True)
        fsutil.atomic_write_text(index_path(), json.dumps(index, indent=0))
    except OSError:
        pass
