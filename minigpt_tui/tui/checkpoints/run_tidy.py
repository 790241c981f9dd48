"""Keeping the run list tidy, for the Checkpoints tab: marking runs (to compare or delete them
together), rename, notes, and clearing stub runs (stopped before their first checkpoint).

TidyActions is mixed into CheckpointsPane (it uses the pane's table, runs, refresh_runs and
show_runs, and posts its RunDeleted / RunRenamed messages); the checks and the wording of the
questions are plain functions, so they read (and test) on their own.
"""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable

from minigpt_tui.core.errors import RunError
from minigpt_tui.core.runs.run_dir import RunDir, RunInfo
from minigpt_tui.core.runs.run_names import MAX_NOTE_CHARS, run_name_problem
from minigpt_tui.tui.screens import ConfirmScreen, PromptScreen

LISTED = 12  # a delete question names this many runs, then says how many more


def is_stub(run: RunInfo) -> bool:
    """A run stopped before its first checkpoint: nothing to open or resume from (a run that is
    training now is none: its first checkpoint may be on the way)."""
    return not run.error and not run.has_checkpoint and run.status != "training"


def rename_problem(run: RunInfo, text: str) -> str:
    """Why `text` cannot be the run's new name (one sentence), or ""."""
    name = text.strip()
    problem = run_name_problem(name)
    if not problem and name != run.name and Path(run.path).with_name(name).exists():
        problem = f"A run named {name} already exists; choose another name."
    return problem


def note_problem(text: str) -> str:
    if len(text.strip()) > MAX_NOTE_CHARS:
        return f"A note can be at most {MAX_NOTE_CHARS} characters; this one has {len(text.strip())}."
    return ""


def delete_question(doomed: list[RunInfo], busy: list[RunInfo], kind: str) -> str:
    names = [f"  {r.name}" for r in doomed[:LISTED]]
    if len(doomed) > LISTED:
        names.append(f"  and {len(doomed) - LISTED} more")
    what = f"the {kind} run {doomed[0].name}" if len(doomed) == 1 else f"these {len(doomed)} {kind} runs"
    lines = [f"Delete {what} and all their checkpoints?"]
    if len(doomed) > 1:
        lines += names
    if busy:
        lines.append(f"({', '.join(r.name for r in busy)} {'is' if len(busy) == 1 else 'are'} "
                     "being trained and will be kept.)")
    lines.append("This cannot be undone.")
    return "\n".join(lines)


class TidyActions:
    """The Checkpoints pane's actions on marked runs and on the list as a whole."""

    marked: set[str]
    runs: list[RunInfo]

    def action_mark(self) -> None:
        run = self.selected
        if run is None:
            return
        self.marked ^= {run.name}
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.update_cell(run.name, "name", self._cells(run)[0], update_width=True)
        if row + 1 < table.row_count:  # on to the next run, so a run of space presses marks a run of runs
            table.move_cursor(row=row + 1, animate=False)
        self.refresh_bindings()

    def action_unmark(self) -> None:
        self.marked.clear()
        self.show_runs(self.runs)

    def compared_runs(self) -> list[RunInfo]:
        """The marked runs in table order (the selected run joins a single marked one); unreadable
        runs are left out."""
        names = set(self.marked)
        if len(names) == 1 and self.selected_name:
            names.add(self.selected_name)
        order = {row.value: i for i, row in enumerate(self.query_one(DataTable).rows)}
        return sorted((r for r in self.runs if r.name in names and not r.error), key=lambda r: order.get(r.name, 0))

    def action_compare(self) -> None:
        from minigpt_tui.tui.checkpoints.compare import CompareScreen

        runs = self.compared_runs()
        if len(runs) < 2:
            self.app.notify("Mark two or more runs with space, then press c to compare them.", severity="warning")
            return
        self.app.push_screen(CompareScreen(runs))

    # ---- rename and note --------------------------------------------------------------------------
    def action_rename(self) -> None:
        run = self.selected
        if run is None:
            return
        if self.app.run_in_use(run.path):
            self.app.notify(f"Run {run.name} is training; stop it before renaming it.", severity="warning")
            return

        def answer(text: str | None) -> None:
            if text is None or text.strip() == run.name:
                return
            try:
                renamed = RunDir(run.path).rename(text)
            except RunError as err:
                self.app.notify(str(err), severity="error", title="Rename")
                return
            self.app.notify(f"Renamed run {run.name} to {renamed.name}.")
            if run.name in self.marked:
                self.marked = (self.marked - {run.name}) | {renamed.name}
            self._select = renamed.name
            self.post_message(self.RunRenamed(run.path, renamed.path))
            self.refresh_runs()

        self.app.push_screen(PromptScreen(f"New name for run {run.name}:", run.name,
                                          check=lambda text: rename_problem(run, text)), answer)

    def action_note(self) -> None:
        run = self.selected
        if run is None or run.error:
            return
        if self.app.run_in_use(run.path):
            # Its trainer rewrites meta.json from memory and would drop the note.
            self.app.notify(f"Run {run.name} is training; add the note once it stops.", severity="warning")
            return

        def answer(text: str | None) -> None:
            if text is None:
                return
            try:
                RunDir(run.path).set_note(text)
            except RunError as err:
                self.app.notify(str(err), severity="error", title="Note")
                return
            self.refresh_runs()

        self.app.push_screen(PromptScreen(f"A note about run {run.name} (empty removes it):", run.meta.note,
                                          placeholder="what this run tried, how it went", check=note_problem),
                             answer)

    # ---- deleting several -----------------------------------------------------------------------------
    def action_clear_stubs(self) -> None:
        stubs = [r for r in self.runs if is_stub(r)]
        if not stubs:
            self.app.notify("No stub runs (runs stopped before their first checkpoint).")
            return
        self.delete_many(stubs, "stub")

    def delete_many(self, runs: list[RunInfo], kind: str) -> None:
        """Ask once, naming them, then delete `runs`; runs being trained are kept, and the question
        says so."""
        busy = [r for r in runs if self.app.run_in_use(r.path)]
        doomed = [r for r in runs if r not in busy]
        if not doomed:
            self.app.notify(f"The {kind} runs are being trained; stop them before deleting them.", severity="warning")
            return

        def answer(yes: bool | None) -> None:
            if not yes:
                return
            failed = []
            for run in doomed:
                try:
                    RunDir(run.path).delete()
                except OSError as err:
                    failed.append(f"{run.name} ({err.strerror or err})")
                    continue
                self.marked.discard(run.name)
                self.runs = [r for r in self.runs if r.name != run.name]
                self.post_message(self.RunDeleted(run.path))
            if failed:
                self.app.notify(f"Could not delete {', '.join(failed)}.", severity="error")
            deleted = len(doomed) - len(failed)
            if deleted:
                self.app.notify(f"Deleted {deleted} run{'s' if deleted != 1 else ''}.")
            self.show_runs(self.runs)

        self.app.push_screen(ConfirmScreen(delete_question(doomed, busy, kind), yes="Delete", no="Keep",
                                           danger=True), answer)
