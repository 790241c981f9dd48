"""A loss plot drawn with braille characters: training and validation curves against steps,
with ln(V) (the loss of a model that knows nothing) as a dotted reference line.

Colours come from the app's theme (tui.palette) and follow a theme change.
Points can arrive hundreds of times a second; the widget redraws at most
`MAX_FPS` times a second (a one-shot timer coalesces the requests, so an idle plot
costs nothing).
"""

from __future__ import annotations

import math
import time

from rich.text import Text
from textual.timer import Timer
from textual.widget import Widget

from minigpt_tui.tui.palette import colour

# Braille dot bits: a cell is 2 dots wide and 4 dots high.
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))


def _fmt(v: float) -> str:
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _steps(v: int) -> str:
    if v >= 10_000:
        return f"{v / 1000:.0f}k"
    return str(v)


class LossPlot(Widget, can_focus=True):
    """Training loss, validation loss and ln V (dotted) against steps (palette roles train, val, muted)."""

    DEFAULT_CSS = """
    LossPlot {
        height: 1fr;
        min-height: 6;
    }
    """
    MAX_FPS = 4.0

    def __init__(self, *, empty_message: str = "No data yet.", name: str | None = None,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.train: list[tuple[int, float]] = []
        self.val: list[tuple[int, float]] = []
        self.ln_vocab: float | None = None
        self.max_steps: int = 0
        self.empty_message = empty_message
        self.redraws = 0  # how many times the plot was actually drawn (tests check the throttle)
        self._last_draw = 0.0
        self._pending: Timer | None = None

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.refresh())

    # ---- data -------------------------------------------------------------------------
    def clear(self) -> None:
        self.train, self.val = [], []
        self.ln_vocab = None
        self.max_steps = 0
        self.request_redraw(now=True)

    def set_data(self, train: list[tuple[int, float]], val: list[tuple[int, float]],
                 ln_vocab: float | None = None, max_steps: int = 0) -> None:
        self.train, self.val = list(train), list(val)
        self.ln_vocab = ln_vocab
        self.max_steps = max_steps
        self.request_redraw(now=True)

    def add_train(self, step: int, loss: float) -> None:
        if math.isfinite(loss):
            self.train.append((step, loss))
            self.request_redraw()

    def add_val(self, step: int, loss: float) -> None:
        if math.isfinite(loss):
            self.val.append((step, loss))
            self.request_redraw()

    # ---- throttled redraw ---------------------------------------------------------------
    def request_redraw(self, now: bool = False) -> None:
        if not self.is_mounted:
            return
        wait = 1.0 / self.MAX_FPS - (time.monotonic() - self._last_draw)
        if now or wait <= 0:
            if self._pending is not None:
                self._pending.stop()
                self._pending = None
            self._last_draw = time.monotonic()
            self.refresh()
        elif self._pending is None:
            self._pending = self.set_timer(wait, self._fire)

    def _fire(self) -> None:
        self._pending = None
        self._last_draw = time.monotonic()
        self.refresh()

    # ---- drawing --------------------------------------------------------------------------
    def render(self) -> Text:
        self.redraws += 1
        width, height = self.content_size.width, self.content_size.height
        if not (self.train or self.val):
            return Text(self.empty_message, style="dim", justify="center")
        if width < 16 or height < 4:
            return Text("(plot too small)", style="dim")
        return self._draw(width, height)

    def _draw(self, width: int, height: int) -> Text:
        values = [v for _, v in self.train] + [v for _, v in self.val]
        lo, hi = min(values), max(values)
        if self.ln_vocab is not None:
            hi = max(hi, self.ln_vocab)
            lo = min(lo, self.ln_vocab)
        if hi - lo < 1e-6:
            lo, hi = lo - 0.5, hi + 0.5
        pad = (hi - lo) * 0.04
        lo, hi = max(0.0, lo - pad) if lo >= 0 else lo - pad, hi + pad  # a loss is never below 0
        # The x axis spans the data (a long run's curve would otherwise hug the left edge);
        # the status line says how far along max_steps the run is.
        x_max = max([s for s, _ in self.train] + [s for s, _ in self.val] + [1])
        train_style, val_style, muted = (colour(self.app, role) for role in ("train", "val", "muted"))

        label_w = max(len(_fmt(hi)), len(_fmt(lo))) + 1
        plot_w = width - label_w
        plot_h = height - 2  # legend line on top, axis labels below
        dots_w, dots_h = plot_w * 2, plot_h * 4

        def px(step: float) -> int:
            return min(dots_w - 1, max(0, round(step / x_max * (dots_w - 1))))

        def py(value: float) -> int:  # 0 at the top
            return min(dots_h - 1, max(0, round((hi - value) / (hi - lo) * (dots_h - 1))))

        # One layer per series: cell -> dot bits; later layers win a shared cell's colour.
        layers: list[tuple[str, dict[tuple[int, int], int]]] = []
        if self.ln_vocab is not None:
            ref: dict[tuple[int, int], int] = {}
            y = py(self.ln_vocab)
            for x in range(0, dots_w, 3):
                self._dot(ref, x, y)
            layers.append((muted, ref))
        for style, series in ((train_style, self.train), (val_style, self.val)):
            cells: dict[tuple[int, int], int] = {}
            self._plot_series(cells, series, px, py)
            layers.append((style, cells))

        grid_bits = [[0] * plot_w for _ in range(plot_h)]
        grid_style: list[list[str | None]] = [[None] * plot_w for _ in range(plot_h)]
        for style, cells in layers:
            for (cx, cy), bits in cells.items():
                grid_bits[cy][cx] |= bits
                grid_style[cy][cx] = style

        out = Text(no_wrap=True, overflow="crop")
        legend = Text(" " * label_w)
        legend.append("━ train", train_style)
        if self.val:
            legend.append("  ━ val", val_style)
        if self.ln_vocab is not None:
            legend.append(f"  ┄ ln V {self.ln_vocab:.2f}", muted)
        legend.truncate(width)
        out.append_text(legend)
        out.append("\n")
        for row in range(plot_h):
            if row == 0:
                label = _fmt(hi)
            elif row == plot_h - 1:
                label = _fmt(lo)
            elif row == plot_h // 2 and plot_h >= 5:
                label = _fmt((hi + lo) / 2)
            else:
                label = ""
            out.append(label.rjust(label_w - 1) + "┤" if label else " " * (label_w - 1) + "│", muted)
            bits_row, style_row = grid_bits[row], grid_style[row]
            run_style, run = None, []
            for cx in range(plot_w):
                bits = bits_row[cx]
                ch = chr(0x2800 + bits) if bits else " "
                style = style_row[cx] if bits else None
                if style != run_style and run:
                    out.append("".join(run), run_style or "")
                    run = []
                run_style = style
                run.append(ch)
            if run:
                out.append("".join(run), run_style or "")
            out.append("\n")
        left, right = "0", _steps(x_max)
        axis = " " * label_w + left + right.rjust(plot_w - len(left))
        out.append(axis[:width], muted)
        return out

    @staticmethod
    def _dot(cells: dict[tuple[int, int], int], x: int, y: int) -> None:
        key = (x // 2, y // 4)
        cells[key] = cells.get(key, 0) | _DOTS[y % 4][x % 2]

    def _plot_series(self, cells, series, px, py) -> None:
        if not series:
            return
        # Average the points that fall in each dot column, then join neighbours with lines.
        columns: dict[int, list[float]] = {}
        for step, value in series:
            columns.setdefault(px(step), []).append(value)
        points = [(x, py(sum(vs) / len(vs))) for x, vs in sorted(columns.items())]
        prev = None
        for x, y in points:
            if prev is None:
                self._dot(cells, x, y)
            else:
                self._line(cells, prev, (x, y))
            prev = (x, y)

    def _line(self, cells, a: tuple[int, int], b: tuple[int, int]) -> None:
        (x0, y0), (x1, y1) = a, b
        n = max(abs(x1 - x0), abs(y1 - y0), 1)
        for i in range(n + 1):
            self._dot(cells, round(x0 + (x1 - x0) * i / n), round(y0 + (y1 - y0) * i / n))
