"""The evaluations kept in a run folder: evaluations.jsonl, one JSON record per full pass.

Each record is appended with one write() to a file opened for appending, then fsynced:
several evaluations finishing at once never interleave inside a line, and a kill
mid-write leaves at worst a torn last line, which reading skips (the next record starts
on a line of its own). No torch here: the
Checkpoints tab reads these records while it lists runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from minigpt_tui.core.fsutil import read_json_lines
from minigpt_tui.core.runs.run_dir import RunDir


def append_evaluation(run_dir: str | Path, record: dict[str, Any]) -> None:
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(RunDir(run_dir).evaluations_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":  # a line torn by a killed writer stays on its own
            line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_evaluations(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every readable record, oldest first (a torn or foreign line is skipped)."""
    return [rec for rec in read_json_lines(RunDir(run_dir).evaluations_path)
            if isinstance(rec.get("split"), str) and _number(rec.get("bits_per_char"))]


def latest_by_split(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The newest record of each split (test, valid, whole, in that order)."""
    latest: dict[str, dict[str, Any]] = {}
    for rec in records:
        latest[rec["split"]] = rec
    order = {"test": 0, "valid": 1}
    return dict(sorted(latest.items(), key=lambda kv: (order.get(kv[0], 2), kv[0])))


def summary_parts(rec: dict[str, Any]) -> tuple[str, str]:
    """('test: 1.520 bits/char', 'ppl 4.3, step 2,000'): two short lines for a narrow column."""
    ppl, where = _ppl_and_where(rec)
    return f"{rec['split']}: {rec['bits_per_char']:.3f} bits/char", f"{ppl}{where}".lstrip(", ")


def _ppl_and_where(rec: dict[str, Any]) -> tuple[str, str]:
    ppl = rec.get("perplexity")
    step = rec.get("step")
    where = f", step {step:,}" if isinstance(step, int) else ""
    if rec.get("data"):
        where += f", {Path(str(rec['data'])).name}"
    return (f"ppl {_short(ppl)}" if _number(ppl) else ""), where


def _short(x: float) -> str:
    return f"{x:.3g}" if x < 100 else f"{x:,.0f}" if x < 1e9 else f"{x:.2e}"


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)
