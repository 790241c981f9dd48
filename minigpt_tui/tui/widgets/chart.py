"""Line charts drawn with braille characters as Rich Text, shared by the loss plot and the run
comparison: the dot canvas, y labels, and an x axis with tick labels between its ends.

Everything here is a pure function of its inputs (no widget, no app), so a chart can be
tested as text, and a redraw costs one pass over the points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

from rich.text import Text

# Braille dot bits: a cell is 2 dots wide and 4 dots high.
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
_LOG_FLOOR = 1e-12  # a loss of exactly 0 still has a place on a log axis

Point = tuple[float, float]


# ---- number formats -------------------------------------------------------------------------
def fmt_value(v: float) -> str:
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_steps(v: float) -> str:
    v = round(v)
    if abs(v) >= 10_000:
        return f"{v / 1000:.0f}k"
    return str(v)


def fmt_tokens(v: float) -> str:
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= size:
            scaled = v / size
            return f"{scaled:.1f}".rstrip("0").rstrip(".") + unit if scaled < 10 else f"{scaled:.0f}{unit}"
    return f"{v:.0f}"


def fmt_seconds(v: float) -> str:
    v = round(v)
    if v < 60:
        return f"{v}s"
    if v < 3600:
        m, s = divmod(v, 60)
        return f"{m}m" if s == 0 or m >= 10 else f"{m}m{s:02d}"
    h, rest = divmod(v, 3600)
    return f"{h}h" if rest < 60 else f"{h}h{rest // 60:02d}"


def fmt_lr(v: float) -> str:
    """3e-3 rather than 0.003: learning rates are read by their exponent."""
    if v == 0:
        return "0"
    mantissa, exponent = f"{v:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def nice_step(span: float, count: int) -> float:
    """A round tick spacing (1, 2 or 5 times a power of ten) giving about `count` ticks over `span`."""
    if span <= 0 or count <= 0:
        return 0.0
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * power >= raw:
            return m * power
    return 10 * power


# ---- ranges --------------------------------------------------------------------------------------
def y_range(values: Sequence[float], log: bool = False, pad: float = 0.04,
            non_negative: bool = True) -> tuple[float, float]:
    """(lo, hi) around `values` with a margin; on a log axis the margin is in log space."""
    lo, hi = min(values), max(values)
    if log:
        tlo, thi = math.log(max(lo, _LOG_FLOOR)), math.log(max(hi, _LOG_FLOOR))
        if thi - tlo < 1e-6:
            tlo, thi = tlo - 0.1, thi + 0.1
        margin = (thi - tlo) * pad
        return math.exp(tlo - margin), math.exp(thi + margin)
    if hi - lo < 1e-6:
        lo, hi = lo - 0.5, hi + 0.5
    margin = (hi - lo) * pad
    lo = lo - margin
    if non_negative and min(values) >= 0:
        lo = max(0.0, lo)  # a loss is never below 0
    return lo, hi + margin


# ---- the chart --------------------------------------------------------------------------------------
@dataclass
class Series:
    points: Sequence[Point]
    style: str


@dataclass
class Panel:
    """One y axis and its curves; a chart stacks panels over one shared x axis."""

    series: list[Series]
    y_lo: float
    y_hi: float
    rows: int
    log: bool = False
    refs: list[tuple[float, str]] = field(default_factory=list)  # dotted horizontal lines (value, style)
    y_fmt: Callable[[float], str] = fmt_value
    name: str = ""  # a short panel's bottom label ("lr"), in name_style
    name_style: str = ""

    def labels(self) -> dict[int, str]:
        """Row -> y label: top, bottom and (from 5 rows) middle; a panel under 3 rows shows its name."""
        if self.rows < 3:
            out = {0: self.y_fmt(self.y_hi)}
            if self.rows == 2 and self.name:
                out[1] = self.name
            return out
        out = {0: self.y_fmt(self.y_hi), self.rows - 1: self.y_fmt(self.y_lo)}
        if self.rows >= 5:
            if self.log:
                mid = math.exp((_t(self.y_lo, True) + _t(self.y_hi, True)) / 2)
            else:
                mid = (self.y_lo + self.y_hi) / 2
            out[self.rows // 2] = self.y_fmt(mid)
        return out


def _t(v: float, log: bool) -> float:
    return math.log(max(v, _LOG_FLOOR)) if log else v


def render_chart(panels: list[Panel], x_lo: float, x_hi: float, width: int, muted: str,
                 x_fmt: Callable[[float], str] = fmt_steps, legend: Text | None = None) -> Text:
    """The legend line (when given), each panel's rows with their y labels, and the x axis."""
    label_w = max(len(s) for p in panels for s in p.labels().values()) + 1
    plot_w = max(1, width - label_w)
    out = Text(no_wrap=True, overflow="crop")
    if legend is not None:
        line = Text(" " * label_w) + legend
        line.truncate(width)
        out.append_text(line)
        out.append("\n")
    for panel in panels:
        labels = panel.labels()
        rows = draw_panel(panel, x_lo, x_hi, plot_w)
        for r, row in enumerate(rows):
            label = labels.get(r, "")
            if label and label == panel.name and r == panel.rows - 1 and panel.rows < 3:
                out.append(label.rjust(label_w - 1), panel.name_style or muted)
                out.append("│", muted)
            else:
                out.append(label.rjust(label_w - 1) + "┤" if label else " " * (label_w - 1) + "│", muted)
            out.append_text(row)
            out.append("\n")
    out.append((" " * label_w + x_axis(x_lo, x_hi, plot_w, x_fmt))[:width], muted)
    return out


def x_axis(x_lo: float, x_hi: float, cols: int, fmt: Callable[[float], str]) -> str:
    """`cols` characters: the ends' labels, and round ticks between them where they fit."""
    line = [" "] * cols
    taken: list[tuple[int, int]] = []

    def place(text: str, start: int) -> bool:
        start = max(0, min(cols - len(text), start))
        end = start + len(text)
        if end > cols or any(start < b + 2 and a < end + 2 for a, b in taken):
            return False
        line[start:end] = text
        taken.append((start, end))
        return True

    left, right = fmt(x_lo), fmt(x_hi)
    place(left, 0)
    place(right, cols - len(right))
    shown = {left, right}
    span = x_hi - x_lo
    step = nice_step(span, max(1, cols // 10))
    if step > 0:
        tick = math.ceil(x_lo / step) * step
        while tick < x_hi - step * 0.3:  # a tick crowding the right end's label is left out
            label = fmt(tick)
            # (a label the format rounds onto another's, like 0.5 steps shown as "0", says nothing)
            if tick > x_lo + step * 0.3 and label not in shown:
                col = round((tick - x_lo) / span * (cols * 2 - 1) / 2)
                if place(label, col - len(label) // 2):
                    shown.add(label)
            tick += step
    return "".join(line)


def draw_panel(panel: Panel, x_lo: float, x_hi: float, cols: int) -> list[Text]:
    """The panel's `rows` lines of braille, `cols` cells wide; later series win a shared cell's colour.
    Points left or right of [x_lo, x_hi] are skipped; a curve leaving the y range is broken there."""
    rows = panel.rows
    dots_w, dots_h = cols * 2, rows * 4
    log = panel.log
    tlo, thi = _t(panel.y_lo, log), _t(panel.y_hi, log)
    y_span = (thi - tlo) or 1.0
    x_span = (x_hi - x_lo) or 1.0
    bits = [[0] * cols for _ in range(rows)]
    styles: list[list[str | None]] = [[None] * cols for _ in range(rows)]

    def dot(x: int, y: int, style: str) -> None:
        cx, cy = x // 2, y // 4
        bits[cy][cx] |= _DOTS[y % 4][x % 2]
        styles[cy][cx] = style

    def dot_y(tv: float) -> float:  # 0 at the top, in dots (fractional: the caller checks the range)
        return (thi - tv) / y_span * (dots_h - 1)

    for value, style in panel.refs:
        y = dot_y(_t(value, log))
        if -0.5 <= y <= dots_h - 0.5:
            for x in range(0, dots_w, 3):
                dot(x, round(y), style)

    for series in panel.series:
        # Average the points that fall in each dot column, then join neighbours with lines.
        columns: dict[int, list[float]] = {}
        for x, v in series.points:
            if x_lo <= x <= x_hi:
                col = round((x - x_lo) / x_span * (dots_w - 1))
                acc = columns.get(col)
                if acc is None:
                    columns[col] = [_t(v, log), 1]
                else:
                    acc[0] += _t(v, log)
                    acc[1] += 1
        prev: tuple[int, int] | None = None
        for col in sorted(columns):
            total, n = columns[col]
            y = dot_y(total / n)
            if not -0.5 <= y <= dots_h - 0.5:
                prev = None
                continue
            point = (col, round(y))
            if prev is None:
                dot(*point, series.style)
            else:
                (x0, y0), (x1, y1) = prev, point
                n_steps = max(abs(x1 - x0), abs(y1 - y0), 1)
                for i in range(n_steps + 1):
                    dot(round(x0 + (x1 - x0) * i / n_steps), round(y0 + (y1 - y0) * i / n_steps), series.style)
            prev = point

    lines = []
    for r in range(rows):
        text = Text()
        run_style: str | None = None
        run: list[str] = []
        for c in range(cols):
            b = bits[r][c]
            style = styles[r][c] if b else None
            if style != run_style and run:
                text.append("".join(run), run_style or "")
                run = []
            run_style = style
            run.append(chr(0x2800 + b) if b else " ")
        if run:
            text.append("".join(run), run_style or "")
        lines.append(text)
    return lines


def ema(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased so that the first
    points are not pulled towards 0."""
    out, state = [], EmaState(weight)
    for v in values:
        out.append(state.add(v))
    return out


@dataclass
class EmaState:
    """The running state of `ema`, so a live curve is smoothed one point at a time."""

    weight: float
    last: float = 0.0
    count: int = 0

    def add(self, value: float) -> float:
        self.last = self.last * self.weight + (1 - self.weight) * value
        self.count += 1
        return self.last / (1 - self.weight ** self.count)
