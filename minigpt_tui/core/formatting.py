"""Durations and byte sizes as people read them, for the headless printers and the app alike."""

from __future__ import annotations

import math
import re


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


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s)")


def parse_duration(text: str) -> float | None:
    """Seconds in a duration as people type it: "10m", "90s", "1h30m", "1.5h", "2m 30s"; a bare
    number is minutes ("10"). None when it is not one (or not above zero)."""
    text = text.strip().lower()
    if not text:
        return None
    try:
        seconds = float(text) * 60
    except ValueError:
        parts = _DURATION_PART.findall(text)
        if not parts or _DURATION_PART.sub("", text).strip():
            return None
        seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[unit] for n, unit in parts)
    return seconds if math.isfinite(seconds) and seconds > 0 else None
