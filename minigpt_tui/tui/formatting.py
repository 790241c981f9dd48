"""Short human-readable numbers shared by the tabs: durations, byte sizes, parameter counts;
and clip, for text cut to a length (it ends in "…").

One place for them, so a size or a parameter count reads the same on every tab.
"""

from __future__ import annotations

from minigpt_tui.core.formatting import fmt_bytes, fmt_duration  # the CLI prints these too

__all__ = ["clip", "fmt_bytes", "fmt_duration", "fmt_params"]


def fmt_params(n: int) -> str:
    """A parameter count: "812", "45k", "1.2M"."""
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 1_000:
        return f"{n / 1e3:.0f}k"
    return str(n)


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending in "…" where it was cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def break_name(name: str, width: int) -> str:
    """A run or recipe name laid out in lines of at most `width` cells, broken after its
    hyphens (tinyshakespeare-char-transformer-20260101 -> "tinyshakespeare-char-" /
    "transformer-20260101") rather than mid-word as plain wrapping would; a part longer
    than a line is still cut where it must be."""
    if width < 1 or len(name) <= width:
        return name
    lines, line = [], ""
    for part in name.replace("-", "-\0").split("\0"):
        if line and len(line) + len(part) > width:
            lines.append(line)
            line = ""
        line += part
        while len(line) > width:
            lines.append(line[:width])
            line = line[width:]
    return "\n".join(lines + ([line] if line else []))
