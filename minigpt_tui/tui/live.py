"""Training state outside the Train tab: a one-line bar at the top of every tab, and
watching a run another process trains.

The bar shows the run this app trains or watches (from the Train tab's state) and the
runs other processes train: a headless `minigpt-tui --train` in another terminal,
torchrun, a batch job. Those are found every POLL_S seconds in a thread by the lock
their trainer holds, with their step read from the end of their events.jsonl
(core.runs.follow), so the app needs to be no trainer's parent to see them. While nothing
trains the bar is hidden and takes no row. LiveRuns is the app's part of this: it feeds
the bar and the Checkpoints rows twice a second and opens a run to watch in Train.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from rich.text import Text
from textual import work
from textual.app import SystemCommand
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.worker import get_current_worker

from minigpt_tui.core.runs.follow import RunPeek, training_runs
from minigpt_tui.tui.formatting import fmt_duration
from minigpt_tui.tui.palette import colour
from minigpt_tui.tui.screens import RunPickerScreen
from minigpt_tui.tui.widgets.live_text import LiveText

POLL_S = 2.0  # how often the runs folder is looked at for runs other processes train
LIVE_STATUSES = ("starting", "training", "stopping")


@dataclass
class LiveRun:
    """One run being trained, as the bar shows it."""

    name: str
    step: int
    max_steps: int
    loss: float | None = None
    eta_s: float = math.nan
    best_val_loss: float | None = None
    status: str = "training"  # starting | training | stopping
    where: str = "here"  # here (this app's trainer) | watched (followed in the Train tab) | elsewhere

    @classmethod
    def of_state(cls, state, where: str) -> "LiveRun":
        """From the Train tab's RunState (read by its field names: a tab's types stay in the tab)."""
        return cls(state.run_name, state.step, state.max_steps, state.loss, state.eta_s, state.best_val_loss,
                   state.status, where)

    @classmethod
    def of_peek(cls, peek: RunPeek) -> "LiveRun":
        loss = peek.loss if math.isfinite(peek.loss) else None
        return cls(peek.name, peek.step, peek.max_steps, loss, peek.eta_s, peek.best_val_loss, "training",
                   "elsewhere")


class WatchRun(Message):
    """Ask the app to show a run another process trains in the Train tab (any tab may post it)."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)


class TrainingBar(LiveText):
    """'● training NAME  step 1,100/5,000  loss 1.830  ETA 7m 05s', hidden while nothing trains."""

    class Changed(Message):
        """The runs other processes train are not the ones they were (one started or ended)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.elsewhere: list[RunPeek] = []  # runs whose lock a process other than this app holds
        self._names: tuple[str, ...] = ()
        self._shown: tuple = ()

    def on_mount(self) -> None:
        self.display = False
        self.set_interval(POLL_S, self.poll)
        self.poll()
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)

    def _theme_changed(self, _theme) -> None:
        self._shown = ()  # drawn again, in the new colours, on the next show()

    def poll(self) -> None:
        """Look for runs other processes train now (in a thread)."""
        if self.is_attached:
            self._poll_worker()

    @work(thread=True, exclusive=True, group="training-bar", exit_on_error=False)
    def _poll_worker(self) -> None:
        found = training_runs()
        if get_current_worker().is_cancelled:
            return
        try:
            self.app.call_from_thread(self._polled, found)
        except RuntimeError:  # the app has closed meanwhile
            pass

    def _polled(self, found: list[RunPeek]) -> None:
        # A lock this very process holds is a moment's edit (a rename, a note), not a trainer.
        self.elsewhere = [p for p in found if p.pid != os.getpid()]
        names = tuple(p.name for p in self.elsewhere)
        if names != self._names:
            self._names = names
            self.post_message(self.Changed())

    def others(self, current: LiveRun | None, own_pid: int | None) -> list[RunPeek]:
        """The runs other processes train, less the one this app trains or watches."""
        return [p for p in self.elsewhere
                if (own_pid is None or p.pid != own_pid) and (current is None or p.name != current.name)]

    def show(self, current: LiveRun | None, others: list[RunPeek]) -> None:
        """Draw the run this app trains or watches (if any), then the others; hide when none."""
        runs = ([current] if current is not None else []) + [LiveRun.of_peek(p) for p in others]
        key = tuple((r.name, r.status, r.where, r.step, r.max_steps, r.loss, fmt_duration(r.eta_s)) for r in runs)
        if key == self._shown:
            return
        self._shown = key
        self.display = bool(runs)
        if runs:
            self.update(self.describe(runs[0], runs[1:]))

    def describe(self, first: LiveRun, rest: list[LiveRun]) -> Text:
        line = Text(no_wrap=True, overflow="ellipsis")
        role = "warn" if first.status != "training" else "good"
        line.append(f"● {first.status} ", f"bold {colour(self.app, role)}")
        line.append(first.name, "bold")
        if first.where == "elsewhere":
            line.append(" (another process)", "dim")
        elif first.where == "watched":
            line.append(" (watched)", "dim")
        line.append(f"  step {first.step:,}" + (f"/{first.max_steps:,}" if first.max_steps else ""))
        if first.loss is not None:
            line.append("  loss ")
            line.append(f"{first.loss:.3f}", colour(self.app, "train"))
        if first.status == "training":
            line.append(f"  ETA {fmt_duration(first.eta_s)}")
        if rest:
            line.append(f"  · {len(rest)} more training", "dim")
        if any(r.where == "elsewhere" for r in [first, *rest]):
            line.append("  w: watch", "dim")
        return line


class LiveRuns:
    """The app's part (a base class of MiniGPTApp): the bar and the Checkpoints rows follow
    every run being trained, and `w` opens one another process trains in the Train tab.
    Uses the app's train and checkpoints panes and its tabs."""

    LIVE_TICK_S = 0.5

    @property
    def training_bar(self) -> TrainingBar:
        return self.query_one("#training-bar", TrainingBar)

    def start_live(self) -> None:
        self.set_interval(self.LIVE_TICK_S, self._live_tick)

    def _current_run(self) -> LiveRun | None:
        """The run the Train tab shows, while it trains (here or in the process watched)."""
        train = self.train
        if train.proc is None or not train.state.run_name or train.state.status not in LIVE_STATUSES:
            return None
        return LiveRun.of_state(train.state, "watched" if train.watching else "here")

    def watchable_runs(self) -> list[RunPeek]:
        """Runs other processes train, less the one the Train tab already shows."""
        try:
            bar = self.training_bar
        except NoMatches:  # asked before the widgets are composed, or after they are gone
            return []
        own_pid = getattr(self.train.proc, "pid", None) if self.train.training else None
        return bar.others(self._current_run(), own_pid)

    def _open(self) -> bool:
        """Whether the app still has its widgets: timers and messages can outlive them while it closes."""
        return self.is_running and bool(self.screen_stack) and self.screen.is_mounted

    def _live_tick(self) -> None:
        """meta.json is written at checkpoints only, so a listing alone lags the trainer: the
        rows of runs being trained take their step and best from the live state."""
        if not self._open():
            return
        try:
            current, others = self._current_run(), self.watchable_runs()
            self.training_bar.show(current, others)
            for run in ([current] if current else []) + [LiveRun.of_peek(p) for p in others]:
                self.checkpoints.show_live(run.name, run.step, run.best_val_loss)
        except NoMatches:  # (the widgets went while this ran: the app is closing)
            if self._open():
                raise

    def action_watch_run(self) -> None:
        runs = self.watchable_runs()
        if not runs:
            self.notify("No run is being trained by another process.", severity="warning")
            return
        if len(runs) == 1:
            self.watch_run(runs[0].path)
            return
        paths = {r.name: r.path for r in runs}
        choices = [(r.name, f"step {r.step:,}/{r.max_steps:,}" + (f", pid {r.pid}" if r.pid else "")) for r in runs]
        self.push_screen(RunPickerScreen(choices), lambda name: name and self.watch_run(paths[name]))

    def watch_run(self, run_dir: Path) -> None:
        """Show a run another process trains in the Train tab, as if this app trained it."""
        if self.train.follow_run(Path(run_dir)):
            self.tabs.active = "train"

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if self.watchable_runs():
            yield SystemCommand("Watch a run another process trains",
                                "Follow a headless or torchrun run in the Train tab (key: w)", self.action_watch_run)

    def on_watch_run(self, message: WatchRun) -> None:
        if self._open():
            self.watch_run(message.run_dir)

    def on_training_bar_changed(self, message: TrainingBar.Changed) -> None:
        if self._open():
            self.checkpoints.refresh_runs()  # a run appeared (or went): list it, with its ● or without
            self.refresh_bindings()
