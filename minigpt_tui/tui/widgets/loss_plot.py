"""A loss plot drawn with braille characters: training and validation curves against steps,
with ln(V) (the loss of a model that knows nothing) as a dotted reference line, and the
learning rate as a small second plot under it when there is room.

Three views help late in a run, when the interesting part is a small dip at the bottom:
`l` a log y axis, `m` smoothing (TensorBoard's debiased EMA of the training curve, drawn over
the raw curve shown faint), and `f` follow (the last part of the run, with the y axis fitted
to it instead of anchored at ln V). The keys are bindings of the plot (when it has focus);
a pane that holds a plot adds PLOT_BINDINGS and an `action_plot` that calls `plot.toggle`, so
they work from anywhere in the pane.

Colours come from the app's theme (tui.palette) and follow a theme change.
Points can arrive hundreds of times a second; the widget redraws at most `MAX_FPS` times a
second (a one-shot timer coalesces the requests, so an idle plot costs nothing), and the
smoothed curve is extended point by point rather than recomputed.
"""

from __future__ import annotations

import math
import time

from rich.text import Text
from textual.binding import Binding
from textual.timer import Timer
from textual.widget import Widget

from minigpt_tui.tui.palette import colour, faded
from minigpt_tui.tui.widgets.chart import EmaState, Panel, Series, fmt_lr, render_chart, y_range

PLOT = Binding.Group("Plot", compact=True)
PLOT_BINDINGS = [
    Binding("l", "plot('log')", "Log scale", group=PLOT, id="plot.log",
            tooltip="Loss plot: log scale on the loss axis (on/off)"),
    Binding("m", "plot('smooth')", "Smooth", group=PLOT, id="plot.smooth",
            tooltip="Loss plot: smooth the training curve, the raw one faint behind (on/off)"),
    Binding("f", "plot('follow')", "Follow", group=PLOT, id="plot.follow",
            tooltip="Loss plot: follow the recent part of the run, loss axis fitted to it (on/off)"),
]
VIEWS = ("log", "smooth", "follow")
SMOOTHING = 0.9  # EMA weight per logged point (TensorBoard's slider; 0.9 averages ~10 points)
FOLLOW_FRACTION = 0.3  # follow shows the last 30% of the steps so far
LR_MIN_HEIGHT = 14  # below this many rows the learning-rate strip would squeeze the loss plot


class LossPlot(Widget, can_focus=True):
    """Training loss, validation loss and ln V (dotted) against steps (palette roles train, val,
    muted), the learning rate under them (role lr). Feed it with set_data / add_train / add_val
    / add_lr; toggle views with toggle("log" | "smooth" | "follow")."""

    DEFAULT_CSS = """
    LossPlot {
        height: 1fr;
        min-height: 6;
    }
    """
    BINDINGS = PLOT_BINDINGS
    MAX_FPS = 4.0

    def __init__(self, *, empty_message: str = "No data yet.", name: str | None = None,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.train: list[tuple[int, float]] = []
        self.val: list[tuple[int, float]] = []
        self.lr: list[tuple[int, float]] = []
        self.ln_vocab: float | None = None
        self.max_steps: int = 0
        self.log_y = False
        self.smooth = False
        self.follow = False
        self.empty_message = empty_message
        self.redraws = 0  # how many times the plot was actually drawn (tests check the throttle)
        self._smoothed: list[tuple[int, float]] = []
        self._ema = EmaState(SMOOTHING)
        self._last_draw = 0.0
        self._pending: Timer | None = None

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.refresh())

    # ---- data -------------------------------------------------------------------------
    def clear(self) -> None:
        self.set_data([], [], None, 0)

    def set_data(self, train: list[tuple[int, float]], val: list[tuple[int, float]],
                 ln_vocab: float | None = None, max_steps: int = 0,
                 lr: list[tuple[int, float]] | None = None) -> None:
        self.train, self.val = list(train), list(val)
        self.lr = [p for p in (lr or []) if math.isfinite(p[1])]
        self.ln_vocab = ln_vocab
        self.max_steps = max_steps
        self._ema = EmaState(SMOOTHING)
        self._smoothed = [(s, self._ema.add(v)) for s, v in self.train]
        self.request_redraw(now=True)

    def add_train(self, step: int, loss: float) -> None:
        if math.isfinite(loss):
            self.train.append((step, loss))
            self._smoothed.append((step, self._ema.add(loss)))
            self.request_redraw()

    def add_val(self, step: int, loss: float) -> None:
        if math.isfinite(loss):
            self.val.append((step, loss))
            self.request_redraw()

    def add_lr(self, step: int, lr: float) -> None:
        """The learning rate used at `step` (a Step event's lr; metrics.jsonl's step records hold it too)."""
        if math.isfinite(lr):
            self.lr.append((step, lr))
            self.request_redraw()

    # ---- views ----------------------------------------------------------------------------
    def toggle(self, view: str) -> bool:
        """Turn a view ("log", "smooth" or "follow") on or off; returns its new state."""
        attr = {"log": "log_y", "smooth": "smooth", "follow": "follow"}[view]
        setattr(self, attr, not getattr(self, attr))
        self.request_redraw(now=True)
        return getattr(self, attr)

    def action_plot(self, view: str) -> None:
        if view in VIEWS:
            self.toggle(view)

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

    def x_range(self) -> tuple[float, float]:
        """The steps shown: all of them, or in follow the last FOLLOW_FRACTION of them.
        (The x axis spans the data, not max_steps: a long run's curve would otherwise hug the
        left edge; the status line says how far along max_steps the run is.)"""
        x_max = max([s for s, _ in self.train[-1:]] + [s for s, _ in self.val[-1:]] + [1])
        if not self.follow:
            return 0.0, float(x_max)
        return x_max * (1 - FOLLOW_FRACTION), float(x_max)

    def curves(self) -> list[tuple[str, list[tuple[int, float]]]]:
        """(role, points) in drawing order (the later wins a shared cell): what the views show."""
        if self.smooth:
            return [("train-faint", self.train), ("train", self._smoothed), ("val", self.val)]
        return [("train", self.train), ("val", self.val)]

    def _draw(self, width: int, height: int) -> Text:
        x_lo, x_hi = self.x_range()
        curves = self.curves()
        muted = colour(self.app, "muted")
        styles = {"train": colour(self.app, "train"), "val": colour(self.app, "val"), "lr": colour(self.app, "lr"),
                  "train-faint": faded(self.app, "train")}
        if self.follow:
            # Fit the recent curve (the smoothed one when smoothing: the raw noise would set the range).
            fitted = [role for role, _ in curves if role != "train-faint"]
            values = [v for role, pts in curves if role in fitted for s, v in pts if s >= x_lo]
        else:
            values = [v for _, pts in curves for _, v in pts]
            if self.ln_vocab is not None:
                values.append(self.ln_vocab)
        if not values:  # (follow, and nothing in the window yet)
            values = [v for _, pts in curves for _, v in pts]
        lo, hi = y_range(values, log=self.log_y, pad=0.08 if self.follow else 0.04)

        plot_rows = height - 2  # legend line on top, axis labels below
        lr_rows = 0
        if self.lr and height >= LR_MIN_HEIGHT:
            lr_rows = 2 if height < 24 else 3
        refs = [(self.ln_vocab, muted)] if self.ln_vocab is not None else []
        panels = [Panel([Series(pts, styles[role]) for role, pts in curves], lo, hi, plot_rows - lr_rows,
                        log=self.log_y, refs=refs)]
        if lr_rows:
            lr_hi = max(v for _, v in self.lr) or 1.0
            panels.append(Panel([Series(self.lr, styles["lr"])], 0.0, lr_hi * 1.05, lr_rows, y_fmt=fmt_lr,
                                name="lr", name_style=styles["lr"]))
        return render_chart(panels, x_lo, x_hi, width, muted, legend=self._legend(styles, muted, lr_rows > 0))

    def _legend(self, styles: dict[str, str], muted: str, lr_shown: bool) -> Text:
        legend = Text()
        legend.append("━ train", styles["train"])
        if self.val:
            legend.append("  ━ val", styles["val"])
        # The views that are on come before the rest: a narrow plot crops the legend's end.
        views = [name for name, on in (("log", self.log_y), ("smooth", self.smooth), ("follow", self.follow)) if on]
        if views:
            legend.append("  [" + " ".join(views) + "]", muted)
        if self.ln_vocab is not None:
            legend.append(f"  ┄ ln V {self.ln_vocab:.2f}", muted)
        if lr_shown:
            legend.append("  ━ lr", styles["lr"])
        return legend
