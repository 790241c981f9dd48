"""What the Train tab knows about the current (or last) run, and how it is drawn.

RunState is fed by trainer events (RunState.apply); the render_* functions turn it into
Rich Text. Colours come from the app's theme through palette.colour, read at render
time, so the pane re-renders them when the theme changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from rich.text import Text
from textual.app import App

from minigpt_tui.core.data.tokenizer import prettify
from minigpt_tui.core.runs import events as ev
from minigpt_tui.tui.formatting import fmt_duration
from minigpt_tui.tui.palette import colour

BAR_WIDTH = 12  # cells of the progress bar

# status -> (badge text, palette role or a plain style)
BADGES: dict[str, tuple[str, str]] = {
    "idle": ("ready", "dim"),
    "starting": ("● starting", "warn"),
    "training": ("● training", "good"),
    "stopping": ("● stopping, saving a checkpoint", "warn"),
    "finished": ("✓ finished", "good"),
    "stopped": ("■ stopped", "warn"),
    "failed": ("✗ failed", "bad"),
}


@dataclass
class Notice:
    """A notification for the app to show (App.notify's arguments)."""

    message: str
    severity: str = "information"
    title: str = "Training"
    timeout: float | None = None


@dataclass
class RunState:
    """What the tab knows about the current (or last) run, fed by events."""

    status: str = "idle"  # idle | starting | training | stopping | finished | stopped | failed
    run_name: str = ""
    run_dir: str = ""
    family: str = ""
    corpus: str = ""
    params: int = 0
    device: str = ""
    dtype: str = ""
    compiled: bool = False  # torch.compile'd: its first steps compile
    ln_vocab: float | None = None
    start_step: int = 0
    max_steps: int = 0
    step: int = 0
    loss: float | None = None
    val_loss: float | None = None
    best_val_loss: float | None = None
    tokens_per_s: float = 0.0
    eta_s: float = float("nan")
    sample: str = ""
    sample_step: int | None = None
    message: str = ""
    preparing: str = ""  # before Started: "Tokenizing the training text… 45%" (a first start)
    checkpoints: list[tuple[int, str]] = field(default_factory=list)
    watched: bool = False  # another process trains this run; the tab follows its files

    def apply(self, event: ev.Event, stopping: bool = False) -> None:
        """Take in one trainer event. `stopping`: a stop was asked for before the run started."""
        if isinstance(event, ev.Preparing):
            self.preparing = f"{event.what}… {event.fraction:.0%}"
        elif isinstance(event, ev.Started):
            self.status = "training" if not stopping else "stopping"
            self.run_name, self.run_dir, self.family, self.corpus = (event.run_name, event.run_dir, event.family,
                                                                     event.corpus)
            self.params, self.device, self.dtype = event.params, event.device, event.dtype
            self.compiled = event.compiled
            self.ln_vocab, self.start_step, self.max_steps = event.ln_vocab, event.start_step, event.max_steps
            self.step = event.start_step
        elif isinstance(event, ev.Step):
            self.step = event.step
            self.loss, self.tokens_per_s, self.eta_s = event.loss, event.tokens_per_s, event.eta_s
            self.max_steps = event.max_steps or self.max_steps  # (a time budget re-sizes it)
        elif isinstance(event, ev.Eval):
            self.step = max(self.step, event.step)
            self.val_loss, self.best_val_loss = event.val_loss, event.best_val_loss
        elif isinstance(event, ev.Sample):
            self.sample, self.sample_step = event.text, event.step
        elif isinstance(event, ev.CheckpointSaved):
            self.checkpoints.append((event.step, event.kind))
        elif isinstance(event, ev.Done):
            self.status = event.reason
            self.step = event.step
            self.best_val_loss = event.best_val_loss
        elif isinstance(event, ev.Error):
            self.status = "failed"
            self.message = event.message

    def end(self, returncode: int, stop_requested: bool, crash_message: Callable[[], str]) -> Notice | None:
        """Settle the status once the trainer has exited; the notification to show, if any.
        `crash_message` says why the trainer died, asked only when its own events did not."""
        if self.status == "failed" or (returncode != 0 and self.status not in ("finished", "stopped")):
            if stop_requested and returncode < 0:  # SIGTERM before the trainer could catch it
                self.status = "stopped"
                self.message = "Stopped before the first step; nothing was saved."
                return Notice(self.message)
            if not self.message:
                self.message = crash_message()
            self.status = "failed"
            return Notice(self.message, severity="error", title="Training failed", timeout=10)
        if self.status == "stopped":
            return Notice(f"Stopped {self.run_name} at step {self.step}; its checkpoint is saved.")
        if self.status == "finished":
            best = f", best val loss {self.best_val_loss:.3f}" if self.best_val_loss is not None else ""
            return Notice(f"Finished {self.run_name} at step {self.step}{best}.")
        self.status = "stopped"  # exited cleanly without a Done event
        return None

    def resumed_from(self, val: list[tuple[int, float]]) -> None:
        """A resumed run starts with the validation losses its earlier steps logged."""
        if val:
            self.val_loss = val[-1][1]
            # step 0 is the untrained model: a reference, never the best (as the trainer counts)
            self.best_val_loss = min((v for step, v in val if step > 0), default=None)


def _style(app: App, role: str) -> str:
    """A palette role's colour; a plain style ("dim", "") passes through."""
    return role if role in ("dim", "") else colour(app, role)


def render_badge(state: RunState, app: App) -> Text:
    text, role = BADGES.get(state.status, (state.status, ""))
    return Text(text, style=_style(app, role), justify="right")


def render_idle(verb: str, name: str, corpus_ok: bool, corpus: str) -> Text:
    """The status lines before a run: what s will do, and on what."""
    lines = Text(no_wrap=True, overflow="ellipsis")
    lines.append(f"Press s to {verb} ", "bold")
    lines.append(name or "?", "bold")
    lines.append(f"\non {corpus}." if corpus_ok else "\n(fix the corpus path first).", "dim")
    lines.append("\nIts loss starts near where that run's ended." if verb == "fine-tune from"
                 else "\nIts loss starts near ln V, then falls.", "dim")
    return lines


def progress_bar(app: App, step: int, total: int, width: int = BAR_WIDTH) -> Text:
    """━━━━━━━━──── 42%: the done part in the theme's success colour."""
    frac = min(1.0, step / total) if total else 0.0
    filled = int(round(frac * width))
    bar = Text()
    bar.append("━" * filled, colour(app, "good"))
    bar.append("━" * (width - filled), colour(app, "muted"))
    bar.append(f" {frac:4.0%}")
    return bar


def render_status(state: RunState, app: App) -> Text:
    """The status lines once a run is starting or has started (see render_idle before)."""
    s = state
    lines = Text(no_wrap=True, overflow="ellipsis")
    if not s.run_name:  # the trainer has not started a run (yet, or at all)
        waiting = "Reading the run's events…" if s.watched else s.preparing or "Starting the trainer…"
        lines.append(waiting if s.status in ("starting", "stopping") else s.message or s.status,
                     "bold" if s.status != "failed" else f"bold {colour(app, 'bad')}")
        return lines
    lines.append(s.run_name, "bold")
    if s.watched:
        lines.append("  watched: another process trains it", "dim")
    total = s.max_steps or 0
    lines.append("\nstep ")
    lines.append(f"{s.step:,}", "bold")
    if total:
        lines.append(f"/{total:,} ")
        lines.append_text(progress_bar(app, s.step, total))
    lines.append("\nloss ")
    lines.append(f"{s.loss:.3f}" if s.loss is not None else "-", f"bold {colour(app, 'train')}")
    lines.append("  val ")
    lines.append(f"{s.val_loss:.3f}" if s.val_loss is not None else "-", f"bold {colour(app, 'val')}")
    if s.best_val_loss is not None:
        lines.append(f" (best {s.best_val_loss:.3f})")
    lines.append("\n")
    if s.tokens_per_s:
        lines.append(f"{s.tokens_per_s:,.0f} tok/s")
    else:  # (a compiled run's first step waits for the compile: seconds warm, a minute cold)
        lines.append("compiling…" if s.compiled and s.status == "training" else "- tok/s")
    if s.status in ("training", "stopping"):
        lines.append(f"  ETA {fmt_duration(s.eta_s)}")
    if s.ln_vocab is not None:
        lines.append(f"  ln V {s.ln_vocab:.2f}", "dim")
    if s.device:
        lines.append(f"  {s.device}{', compiled' if s.compiled else ''}", "dim")
    if s.message and s.status == "failed":
        lines.append("\n")
        lines.append(s.message, colour(app, "bad"))
    return lines


def render_sample(state: RunState, app: App) -> Text | None:
    """The sample panel: the latest sample, else why the run failed; None leaves it as it is
    (it shows the command being started until the first sample)."""
    s = state
    if s.sample:
        return Text.assemble((f"sample at step {s.sample_step}\n", "bold dim"), prettify(s.sample.strip("\n")))
    if s.status == "failed":
        return Text(s.message, style=colour(app, "bad"))
    if s.status == "stopped" and not s.run_name:
        return Text(s.message, style="dim")
    return None
