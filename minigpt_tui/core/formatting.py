"""Durations and byte sizes as people read them, for the headless printers and the app alike."""

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


def fmt_bytes(n: float) -> str:
    """"812 bytes", "1.5 KB", "3.2 MB", "1.1 GB" (powers of 1024; GB is the largest unit)."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # not reached: the loop returns at GB
