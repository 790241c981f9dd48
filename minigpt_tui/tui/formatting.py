"""Short human-readable numbers shared by the tabs: durations, byte sizes, parameter counts.

One place for them, so a size or a parameter count reads the same on every tab.
"""

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


def fmt_params(n: int) -> str:
    """A parameter count: "812", "45k", "1.2M"."""
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 1_000:
        return f"{n / 1e3:.0f}k"
    return str(n)
