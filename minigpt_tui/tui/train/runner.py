"""The Train tab's run: starting this app's trainer or watching another process's, taking in
its events, stopping it. A part of TrainPane (its base class), kept apart from the form
and the layout (pane.py).

Both kinds of run have one face (process.py): TrainerProcess, this app's child, read
from its stdout; WatchedRun, a run another process trains, followed from its files.
Either way its events go through handle_event, so the plot, status and samples of a
watched run are drawn exactly as those of our own.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from rich.text import Text
from textual.widgets import Static

from minigpt_tui.core.runs import events as ev
from minigpt_tui.core.runs.run_dir import RunDir
from minigpt_tui.tui.train.process import TrainerProcess, WatchedRun
from minigpt_tui.tui.train.standby import STANDBY_DELAY_S
from minigpt_tui.tui.train.state import RunState


class RunDriver:
    """TrainPane's run handling (mixed into the pane: it uses the pane's widgets and state)."""

    @property
    def training(self) -> bool:
        """This app's own trainer is running (see watching)."""
        return self.proc is not None and not getattr(self.proc, "watched", False)

    @property
    def watching(self) -> bool:
        """A run another process trains is shown here."""
        return self.proc is not None and getattr(self.proc, "watched", False)

    def start_process(self, args: list[str]) -> None:
        """Start the headless trainer with these CLI arguments (plus --events jsonl)."""
        trainer = TrainerProcess(args)
        self.state = RunState(status="starting")
        self.stop_requested = False
        self.plot.clear()
        self._dirty = True
        shown = " ".join(shlex.quote(a) for a in ["minigpt-tui", *args])
        self.query_one("#train-sample", Static).update(
            Text.assemble(("Starting the trainer", "bold"), (" (the same as running:\n", "dim"), (shown, "dim"), (")", "dim")))
        self.run_worker(self._run_process(trainer, resuming="--resume" in args, standby=self.standby.take()),
                        group="train", exclusive=True, exit_on_error=False, name="trainer")

    def schedule_standby(self) -> None:
        """Have a standby trainer waiting for the next start, in a moment (tui/train/standby.py):
        when the Train tab is shown, and after each run."""
        if self.standby.wanted:
            self.standby.scheduled = True
            self.set_timer(STANDBY_DELAY_S, self._start_standby)

    def _start_standby(self) -> None:
        self.standby.scheduled = False
        if not self.training:  # (a run started meanwhile: the next _finish schedules one)
            self.run_worker(self.standby.start(), group="standby", exit_on_error=False)

    async def _run_process(self, trainer: TrainerProcess, resuming: bool, standby=None) -> None:
        try:
            await trainer.start(standby)
        except OSError as err:
            self.state.status = "failed"
            self.state.message = f"Could not start the trainer ({err.strerror or err})."
            self.app.notify(self.state.message, severity="error", title="Training")
            self._render_status()
            return
        self.proc = trainer
        self._set_form_mode()
        self._update_buttons()
        self._ui_timer.resume()
        try:
            async for event in trainer:
                self.handle_event(event, resuming=resuming)
        finally:
            if self.proc is trainer:  # (a watch cancelled by a start: the new trainer is not ours to drop)
                self.proc = None
        self._finish(trainer)

    def follow_run(self, run_dir: Path) -> bool:
        """Watch a run another process trains, followed from its files; False (and a notice)
        while this app trains a run of its own. (Not `watch`: Textual's DOMNode has one.)"""
        if self.training:
            self.app.notify("A run is training here; stop it before you watch another.", severity="warning")
            return False
        self.state = RunState(status="starting", watched=True)
        self.stop_requested = False
        self.plot.clear()
        self._dirty = True
        self.query_one("#train-sample", Static).update(Text.assemble(
            ("Watching ", "bold"), (Path(run_dir).name, "bold"), (" (trained by another process; followed "
                                                                   "from its files)", "dim")))
        self.run_worker(self._run_process(WatchedRun(run_dir), resuming=False), group="train", exclusive=True,
                        exit_on_error=False, name="watch")
        return True

    def handle_event(self, event: ev.Event, resuming: bool = False) -> None:
        """Update the run state from one trainer event (the display catches up on the next tick)."""
        self._dirty = True
        self.state.apply(event, stopping=self.stop_requested)
        if isinstance(event, ev.Started):
            train, val, lr = [], [], []
            if resuming or event.start_step > 0:  # the plot shows the steps before this resume too
                curves = RunDir(event.run_dir).series("loss", "val_loss", "lr", upto=event.start_step)
                train, val, lr = curves["loss"], curves["val_loss"], curves["lr"]
                self.state.resumed_from(val)
            self.plot.set_data(train, val, event.ln_vocab, event.max_steps, lr=lr)
        elif isinstance(event, ev.Step):
            self.plot.add_train(event.step, event.loss)
            self.plot.add_lr(event.step, event.lr)
        elif isinstance(event, ev.Eval):
            self.plot.add_val(event.step, event.val_loss)
        if isinstance(event, (ev.Started, ev.CheckpointSaved, ev.Done, ev.Error)):
            self.post_message(self.RunEvent(event))

    def _finish(self, trainer: TrainerProcess) -> None:
        self._ui_timer.pause()
        # returncode is set: the events end only once the trainer has exited
        notice = self.state.end(trainer.returncode, self.stop_requested, trainer.crash_message)
        if notice is not None:
            self.app.notify(notice.message, severity=notice.severity, title=notice.title, timeout=notice.timeout)
        self.stop_requested = False
        self._set_form_mode()
        self._update_buttons()
        self._render_status()
        self.plot.request_redraw(now=True)
        self.post_message(self.Ended(self.state.status, self.state.run_dir))
        self.schedule_standby()

    def action_stop(self) -> None:
        if self.proc is None:
            self.app.notify("Nothing is training.", severity="warning")
            return
        self.request_stop()

    def request_stop(self) -> None:
        if self.proc is None or self.stop_requested:
            return
        if not self.proc.stop() and self.proc.watched:
            self.app.notify("This run's trainer cannot be signalled from here; stop it where it runs (Ctrl-C).",
                            severity="warning")
            return
        self.stop_requested = True
        self.state.status = "stopping"
        self._dirty = True
        self._render_status()
        self._update_buttons()

    async def stop_and_wait(self, timeout: float = 60.0) -> None:
        """Stop the trainer and wait until it has saved and exited (for quitting)."""
        proc = self.proc
        if proc is None:
            return
        self.request_stop()
        await proc.stop_and_wait(timeout)
