"""Which run the Generate tab shows: RunChoice, a part of GeneratePane.

With nothing loaded, opening the tab offers a run: the one the app used last, else the newest
with a checkpoint (and again after a training writes its first checkpoint). `o` opens a picker
of every run with a checkpoint. Listing runs reads each run's small files, which on a slow disk
or with many runs takes a while: a thread worker lists them, never the UI thread.
"""

from __future__ import annotations

import logging
from textual import work

from minigpt_tui.tui.formatting import fmt_params
from minigpt_tui.tui.screens import RunPickerScreen

log = logging.getLogger(__name__)


class RunChoice:
    """Offer and pick runs (mixed into GeneratePane). The offer and the picker list runs in
    workers of their own groups, so that neither cancels the other."""

    offered = False  # a run was loaded or offered: opening the tab again offers nothing (load sets it)

    def offer_run(self, last_run: str = "") -> None:
        """Load `last_run` (a run name) if it has a checkpoint, else the newest run that has one;
        nothing if a run is loaded, loading or was offered already."""
        if self.sampler is not None or self.loading or self.offered:
            return
        self.offered = True
        self._offer_worker(last_run)

    def checkpoint_written(self) -> None:
        """A training wrote a checkpoint: with no run loaded, offer one again."""
        if self.sampler is None and not self.loading:
            self.offered = False

    @work(thread=True, exclusive=True, group="offer-run", exit_on_error=False)
    def _offer_worker(self, last_run: str) -> None:
        runs = self._runs_with_checkpoints()
        if runs is None or not self._from_thread(self._offer, runs, last_run):
            self.offered = False  # listing failed or was cancelled: offer again next time

    def _offer(self, runs: list, last_run: str) -> None:
        if self.sampler is not None or self.loading:  # a run was asked for meanwhile
            return
        if not runs:
            self.offered = False  # offer again once a run has a checkpoint
            return
        last = next((r for r in runs if r.name == last_run), None)
        self.load((last or runs[0]).path)

    def action_pick_run(self) -> None:
        self._pick_worker()

    @work(thread=True, exclusive=True, group="pick-run", exit_on_error=False)
    def _pick_worker(self) -> None:
        runs = self._runs_with_checkpoints()
        if runs is not None:
            self._from_thread(self._pick, runs)

    def _pick(self, runs: list) -> None:
        if not runs:
            self.app.notify("No run has a checkpoint yet; train one on the Train tab.", severity="warning")
            return
        current = self.info.run_name if self.info else ""
        choices = [(r.name, f"{r.family} {fmt_params(r.params)}, step {r.step:,}, {r.corpus}") for r in runs]

        def chosen(name: str | None) -> None:
            if name:
                self.load(next(r for r in runs if r.name == name).path)

        self.app.push_screen(RunPickerScreen(choices, current), chosen)

    def _runs_with_checkpoints(self) -> list | None:
        """(In a worker) the runs with a checkpoint, newest first; None (said) if the runs folder
        cannot be read."""
        from minigpt_tui.core.runs.run_dir import list_runs

        try:
            return [r for r in list_runs() if not r.error and r.has_checkpoint]
        except OSError as err:
            log.exception("listing runs")
            self._from_thread(self.app.notify, f"Cannot list runs ({err.strerror or err}).", severity="error")
            return None
