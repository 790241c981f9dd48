"""Durations as people read them, for the headless printer and the app alike."""

from __future__ import annotations

import math


def fmt_duration(seconds: float) -> str:
    """"5s", "2m 05s", "2h 01m"; "-" for an unknown (NaN, infinite or negative) duration."""
    if not math.isfinite(seconds) or seconds < 0:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
