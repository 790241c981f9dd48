"""The run comparison (Checkpoints: mark runs with space, press c): the marked runs' validation
curves overlaid, against steps, wall time or tokens seen (x cycles), with a legend naming each
run in its colour, and their configs side by side with the fields that differ first and
highlighted. Esc closes it.

Metrics are read in a thread worker (a long run's metrics.jsonl has many thousand lines); the
screen shows "Reading…" until they are in.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from minigpt_tui.core.errors import RunError
from minigpt_tui.core.runs.run_dir import RunDir, RunInfo
from minigpt_tui.tui.formatting import fmt_params
from minigpt_tui.tui.palette import SERIES_ROLES, colour
from minigpt_tui.tui.widgets.chart import Panel, Series, fmt_seconds, fmt_steps, fmt_tokens, render_chart, y_range

X_AXES = ("step", "time", "tokens")
X_TITLES = {"step": "steps", "time": "wall time (training, evaluation included)", "tokens": "tokens seen"}
X_FORMATS = {"step": fmt_steps, "time": fmt_seconds, "tokens": fmt_tokens}
FOLLOW_FRACTION = 0.3


@dataclass
class RunCurves:
    """One run's validation curve with every x it can be drawn against, and its config."""

    name: str
    val: list[tuple[int, float]] = field(default_factory=list)  # (step, validation loss)
    seconds: list[float] = field(default_factory=list)  # wall time at each val point
    tokens_per_step: int = 0
    config: dict[str, Any] = field(default_factory=dict)  # "section.key" -> value
    facts: dict[str, str] = field(default_factory=dict)  # status, steps, best val, ... (shown first)

    def points(self, x_axis: str) -> list[tuple[float, float]]:
        if x_axis == "time":
            return [(t, v) for t, (_, v) in zip(self.seconds, self.val)]
        if x_axis == "tokens":
            return [(s * self.tokens_per_step, v) for s, v in self.val]
        return [(float(s), v) for s, v in self.val]


def load_curves(run: RunInfo) -> RunCurves:
    """Read what the comparison draws for one run (no app; called in a thread)."""
    curves = RunCurves(run.name)
    rundir = RunDir(run.path)
    # Step records carry "time", seconds since their trainer started; a resumed run's
    # trainer starts again at 0, so each restart carries the time before it over.
    steps, times = [], []
    offset = last = 0.0
    for rec in rundir.read_metrics():
        t = rec.get("time")
        if isinstance(t, (int, float)) and not isinstance(t, bool):
            if t < last:
                offset += last
            last = t
            steps.append(rec["step"])
            times.append(offset + t)
        v = rec.get("val_loss")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            curves.val.append((rec["step"], float(v)))
    for step, _ in curves.val:  # an evaluation at step s follows the step records before s
        i = bisect.bisect_left(steps, step)
        curves.seconds.append(times[i - 1] if i > 0 else 0.0)
    try:
        config = rundir.config()
        t = config.train
        curves.tokens_per_step = t.batch_size * t.grad_accum * config.model.context_length * max(1, run.meta.world_size)
        curves.config = {f"{section}.{key}": value for section, values in config.to_dict().items()
                         for key, value in values.items()}
    except RunError as err:
        curves.facts["config"] = str(err)
    meta = run.meta
    curves.facts.update({
        "status": run.status or "?",
        "steps": f"{run.step:,}/{run.max_steps:,}" if run.max_steps else f"{run.step:,}",
        "best val": f"{run.best_val_loss:.3f}" if run.best_val_loss is not None else "-",
        "params": fmt_params(run.params),
        "corpus": run.corpus,
        "date": run.date,
    })
    if meta.note:
        curves.facts["note"] = meta.note
    return curves


class ComparePlot(Widget):
    """Validation curves of several runs over one x axis (step, time or tokens)."""

    DEFAULT_CSS = """
    ComparePlot {
        height: 1fr;
        min-height: 6;
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.runs: list[RunCurves] = []
        self.x_axis = "step"
        self.log_y = False
        self.follow = False

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.refresh())

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        series = [(colour(self.app, SERIES_ROLES[i % len(SERIES_ROLES)]), run.points(self.x_axis))
                  for i, run in enumerate(self.runs)]
        series = [(style, pts) for style, pts in series if pts]
        if not series:
            return Text("None of these runs has a validation loss yet.", style="dim", justify="center")
        if width < 16 or height < 4:
            return Text("(plot too small)", style="dim")
        x_hi = max(x for _, pts in series for x, _ in pts) or 1.0
        x_lo = x_hi * (1 - FOLLOW_FRACTION) if self.follow else 0.0
        values = [v for _, pts in series for x, v in pts if x >= x_lo] or [v for _, pts in series for _, v in pts]
        lo, hi = y_range(values, log=self.log_y, pad=0.06)
        muted = colour(self.app, "muted")
        legend = Text(f"validation loss against {X_TITLES[self.x_axis]}", muted)
        views = [name for name, on in (("log", self.log_y), ("follow", self.follow)) if on]
        if views:
            legend.append("  [" + " ".join(views) + "]", muted)
        panel = Panel([Series(pts, style) for style, pts in series], lo, hi, height - 2, log=self.log_y)
        return render_chart([panel], x_lo, x_hi, width, muted, x_fmt=X_FORMATS[self.x_axis], legend=legend)


class CompareScreen(ModalScreen[None]):
    """Several runs side by side: curves overlaid, configs with their differences highlighted.
    (Modal, so that the tab keys do not switch tabs unseen behind it.)"""

    DEFAULT_CSS = """
    CompareScreen {
        layout: vertical;
        background: $background;
    }
    #compare-title {
        height: 1;
        padding: 0 1;
        background: $panel;
    }
    #compare-legend {
        height: auto;
        padding: 0 1;
    }
    #compare-plot {
        padding: 0 1;
    }
    #compare-configs {
        height: 45%;
        min-height: 6;
        border-top: solid $foreground 20%;
        padding: 0 1;
        scrollbar-size-vertical: 1;
    }
    """
    BINDINGS = [
        Binding("escape", "close", "Close", id="compare.close", tooltip="Back to the run list"),
        Binding("x", "cycle_x", "X axis", id="compare.x_axis",
                tooltip="Plot against steps, wall time or tokens seen (cycles)"),
        Binding("l", "toggle('log_y')", "Log scale", id="compare.log", tooltip="Log scale on the loss axis (on/off)"),
        Binding("f", "toggle('follow')", "Follow", id="compare.follow",
                tooltip="Show the last part of the curves, loss axis fitted to it (on/off)"),
    ]

    def __init__(self, runs: list[RunInfo]) -> None:
        super().__init__()
        self.run_infos = runs
        self.curves: list[RunCurves] = []
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Static(Text(f"Comparing {len(self.run_infos)} runs", style="bold"), id="compare-title")
        yield Static("", id="compare-legend")
        yield ComparePlot(id="compare-plot")
        with VerticalScroll(id="compare-configs"):
            yield Static(Text("Reading the runs' metrics…", style="dim"), id="compare-table")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#compare-configs").focus()
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._show())
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def _load(self) -> None:
        curves = [load_curves(run) for run in self.run_infos]
        if get_current_worker().is_cancelled:
            return
        try:
            self.app.call_from_thread(self._loaded, curves)
        except RuntimeError:  # the app has closed meanwhile
            pass

    def _loaded(self, curves: list[RunCurves]) -> None:
        self.curves = curves
        self.loaded = True
        self._show()

    @property
    def plot(self) -> ComparePlot:
        return self.query_one("#compare-plot", ComparePlot)

    def _show(self) -> None:
        if not self.loaded:
            return
        self.plot.runs = self.curves
        self.plot.refresh()
        legend = Text()
        for i, run in enumerate(self.curves):
            if i:
                legend.append("   ")
            legend.append(f"━ {run.name}", colour(self.app, SERIES_ROLES[i % len(SERIES_ROLES)]))
        self.query_one("#compare-legend", Static).update(legend)
        self.query_one("#compare-table", Static).update(self.config_table())

    def config_table(self) -> Table:
        """Facts first, then the config fields that differ (highlighted), then those alike (dim)."""
        table = Table(box=None, padding=(0, 2), expand=True, show_edge=False, header_style="bold")
        keys = list(dict.fromkeys(k for run in self.curves for k in run.config))
        key_w = max([len(k) + 2 for k in keys] + [10])
        table.add_column("", no_wrap=True, style="bold", width=key_w)
        # Names end in their date, which tells runs of one recipe apart: a long one loses its middle.
        # (each column is padded by 2 cells on both sides)
        width = self.query_one("#compare-configs").content_size.width
        name_w = max(8, (width - key_w - 4) // len(self.curves) - 4)
        for i, run in enumerate(self.curves):
            style = f"bold {colour(self.app, SERIES_ROLES[i % len(SERIES_ROLES)])}"
            table.add_column(Text(_middle_out(run.name, name_w), style=style, no_wrap=True, overflow="ellipsis"),
                             overflow="fold", ratio=1)
        facts = list(dict.fromkeys(k for run in self.curves for k in run.facts))
        for key in facts:
            table.add_row(key, *[run.facts.get(key, "") for run in self.curves])
        differ = [k for k in keys if len({repr(run.config.get(k)) for run in self.curves}) > 1]
        alike = [k for k in keys if k not in differ]
        accent = f"bold {colour(self.app, 'accent')}"
        muted = colour(self.app, "muted")
        if differ:
            table.add_row(Text("differs", style=accent), *[""] * len(self.curves))
        for key in differ:
            table.add_row(Text("≠ " + key, style=accent),
                          *[Text(_show_value(run.config.get(key)), style=accent) for run in self.curves])
        if alike:
            table.add_row(Text("alike", style=muted), *[""] * len(self.curves))
        for key in alike:
            value = _show_value(self.curves[0].config.get(key))
            table.add_row(Text("  " + key, style=muted), *[Text(value, style=muted) for _ in self.curves])
        return table

    # ---- actions ---------------------------------------------------------------------------------
    def action_close(self) -> None:
        self.dismiss(None)

    def action_cycle_x(self) -> None:
        plot = self.plot
        plot.x_axis = X_AXES[(X_AXES.index(plot.x_axis) + 1) % len(X_AXES)]
        plot.refresh()

    def action_toggle(self, view: str) -> None:
        plot = self.plot
        setattr(plot, view, not getattr(plot, view))
        plot.refresh()


def _show_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return repr(value) if value == "" else value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _middle_out(name: str, width: int) -> str:
    if len(name) <= width:
        return name
    tail = min(len(name) // 2, max(4, (width - 1) // 2))
    return name[: width - 1 - tail] + "…" + name[-tail:]
