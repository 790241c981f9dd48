"""The one sentence a run ends with when a write fails outside the checkpoint writes (a full disk,
an unwritable folder): what failed, and what to do next."""

from __future__ import annotations

import errno
from pathlib import Path

from minigpt_tui.core import paths


def write_failure(err: OSError, run_dir: Path | None) -> str:
    where = err.filename or run_dir or paths.runs_dir()
    full = err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    if run_dir is None:
        advice = "free some disk space" if full else "check that the data home is writable"
        return f"Could not write {where} ({err.strerror or err}); {advice} and start again."
    advice = "free some disk space" if full else "check the run folder"
    return (f"Could not write {where} ({err.strerror or err}); the last checkpoint written is intact. "
            f"To go on, {advice} and resume the run.")
