"""The Checkpoints tab: every run in a sortable table, its config and its loss curves.

Listing reads only the small files of each run (core.runs.run_dir.list_runs), in a
thread worker; a run whose files are broken is listed with the reason instead of
breaking the table. Runs can be marked (space) to compare them (c, see compare.py) or
delete them together; rename, notes and clearing stub runs keep the list tidy (run_tidy.py);
X exports the selected run for other tools (export_dialog.py).
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Static
from textual.widgets.data_table import CellDoesNotExist
from textual.worker import get_current_worker

from minigpt_tui.core.runs.run_dir import RunInfo
from minigpt_tui.tui.checkpoints.export_dialog import ExportActions
from minigpt_tui.tui.checkpoints.run_tidy import TidyActions, is_stub
from minigpt_tui.tui.formatting import break_name, fmt_params
from minigpt_tui.tui.palette import colour
from minigpt_tui.tui.screens import ConfirmScreen
from minigpt_tui.tui.widgets.loss_plot import PLOT_BINDINGS, VIEWS, LossPlot

# (key, label, sort key), most telling first so they stay in view at 80 columns
COLUMNS = [
    ("name", "Name", lambda r: r.name.lower()),
    ("steps", "Steps", lambda r: r.step),
    ("best", "Best val", lambda r: (r.best_val_loss is None, r.best_val_loss or 0.0)),
    ("params", "Params", lambda r: r.params),
    ("family", "Family", lambda r: (bool(r.error), r.family)),
    ("tokenizer", "Tok", lambda r: r.tokenizer),
    ("corpus", "Corpus", lambda r: r.corpus.lower()),
    ("date", "Date", lambda r: r.created),
]


class CheckpointsPane(TidyActions, ExportActions, Vertical):
    """A table of runs; the selected one's config and curves; open, resume, fine-tune from, delete; marks,
    compare, rename, notes, clearing stubs (TidyActions); export (ExportActions)."""

    BINDINGS = [
        Binding("g", "open_generate", "Generate", id="checkpoints.generate",
                tooltip="Open the selected run in the Generate tab (Enter works too)"),
        Binding("r", "resume", "Resume", id="checkpoints.resume",
                tooltip="Resume training the selected run (switches to Train)"),
        # F, not f: f is the loss plot's follow, in this tab as in every other plot. Out of the
        # footer (at 80 columns it would push out Plot and ? Help); help and ctrl+p list it.
        Binding("F", "start_from", "Fine-tune", show=False, id="checkpoints.start_from",
                tooltip="Fine-tune: set up a new run that starts from the selected run's weights (switches to Train)"),
        # X, not x: x clears stubs. Out of the footer too (help and ctrl+p list it).
        Binding("X", "export", "Export", show=False, id="checkpoints.export",
                tooltip="Export the selected run: a transformers folder, a GGUF file for llama.cpp and Ollama, "
                        "or (GRU/LSTM) a safetensors bundle"),
        Binding("d,delete", "delete", "Delete", id="checkpoints.delete",
                tooltip="Delete the marked runs, or else the selected one, with their checkpoints (asks first)"),
        # (out of the footer, which has room for 80 columns' worth: the column headers sort too)
        Binding("o", "sort", "Sort", show=False, id="checkpoints.sort",
                tooltip="Sort by the next column; pressing on the sorted column's header reverses"),
        Binding("O", "reverse", "Reverse", show=False, id="checkpoints.reverse",
                tooltip="Reverse the sort order"),
        Binding("space", "mark", "Mark", id="checkpoints.mark",
                tooltip="Mark or unmark the selected run (to compare or delete several)"),
        Binding("c", "compare", "Compare", id="checkpoints.compare",
                tooltip="Compare the marked runs: validation curves overlaid, configs side by side"),
        Binding("u", "unmark", "Unmark all", show=False, id="checkpoints.unmark", tooltip="Unmark every run"),
        Binding("e,f2", "rename", "Rename", show=False, id="checkpoints.rename",
                tooltip="Rename the selected run (its folder and its name in meta.json)"),
        Binding("n", "note", "Note", show=False, id="checkpoints.note",
                tooltip="Write a note about the selected run (shown beside its config)"),
        Binding("x", "clear_stubs", "Clear stubs", show=False, id="checkpoints.clear_stubs",
                tooltip="Delete every stub run (stopped before its first checkpoint; asks first)"),
        *PLOT_BINDINGS,
    ]

    class OpenRun(Message):
        def __init__(self, run_dir: Path, action: str) -> None:
            super().__init__()
            self.run_dir = run_dir
            self.action = action  # "generate" | "resume" | "from" (a new run from its weights)

    class RunDeleted(Message):
        def __init__(self, run_dir: Path) -> None:
            super().__init__()
            self.run_dir = run_dir

    class RunRenamed(Message):
        """A run's folder moved: whatever holds the old path (Generate, the remembered last run)
        should follow it."""

        def __init__(self, old_dir: Path, new_dir: Path) -> None:
            super().__init__()
            self.old_dir = old_dir
            self.new_dir = new_dir

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.runs: list[RunInfo] = []
        self.sort_column = "date"
        self.sort_reverse = True
        self.marked: set[str] = set()  # run names, kept in the order of the table when used
        self._detail_for: str | None = None
        self._select: str | None = None  # a run to put the cursor on at the next listing (renamed)
        self.exports_running: set[Path] = set()  # paths exports are writing now (ExportActions)

    def compose(self) -> ComposeResult:
        yield Static("", id="runs-empty")
        table = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        table.show_row_labels = False
        yield table
        with Horizontal(id="run-details"):
            yield LossPlot(id="run-plot", empty_message="Select a run to see its loss curves.")
            with VerticalScroll(id="run-config-box"):
                yield Static("", id="run-config")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label, _ in COLUMNS:
            table.add_column(label, key=key)
        self._update_headers()
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)

    def _theme_changed(self, _theme) -> None:
        """Cells and details hold colours read from the theme: build them again."""
        if self.runs:
            self.show_runs(self.runs)

    # ---- listing ---------------------------------------------------------------------------
    def refresh_runs(self) -> None:
        self._list_worker()

    @work(thread=True, exclusive=True, group="list-runs", exit_on_error=False)
    def _list_worker(self) -> None:
        from minigpt_tui.core.runs.run_dir import list_runs

        try:
            runs = list_runs()
        except OSError as err:
            self._from_thread(self.app.notify, f"Cannot list runs ({err.strerror or err}).", severity="error")
            return
        self._from_thread(self.show_runs, runs)

    def _from_thread(self, callback, *args, **kwargs) -> None:
        """Hand a result to the UI thread, unless the app has closed meanwhile."""
        if get_current_worker().is_cancelled:
            return
        try:
            self.app.call_from_thread(callback, *args, **kwargs)
        except RuntimeError:  # the app is no longer running
            pass

    def show_runs(self, runs: list[RunInfo]) -> None:
        table = self.query_one(DataTable)
        current, self._select = self._select or self.selected_name, None
        self.runs = runs
        self.marked &= {r.name for r in runs}
        sort_key = dict((k, f) for k, _, f in COLUMNS)[self.sort_column]
        ordered = sorted(runs, key=sort_key, reverse=self.sort_reverse)
        table.clear()
        for r in ordered:
            table.add_row(*self._cells(r), key=r.name)
        empty = self.query_one("#runs-empty", Static)
        if not runs:
            empty.update(Text("No runs yet. Train one on the Train tab (press 1, then s).", style="dim"))
        empty.display = not runs
        self.query_one("#run-details").display = bool(runs)
        if current and any(r.name == current for r in ordered):
            table.move_cursor(row=table.get_row_index(current), animate=False)
        self._show_details(force=True)
        self.refresh_bindings()

    def _cells(self, r: RunInfo) -> list[Text | str]:
        name = Text(r.name)
        if r.name in self.marked:  # marked: a tick and the accent colour, as in file managers
            name = Text.assemble(("✓ ", "bold"), r.name, style=f"bold {colour(self.app, 'accent')}")
        if r.error:
            name.stylize("dim")
            return [name, Text("⚠ unreadable", style=colour(self.app, "bad")), "", "", "", "", "", r.date]
        # (for an unreadable run the reason shows beside the table when it is selected)
        best = Text(f"{r.best_val_loss:.3f}" if r.best_val_loss is not None else "-", justify="right")
        steps = f"{r.step:,}/{r.max_steps:,}" if r.max_steps else f"{r.step:,}"
        if is_stub(r):  # stopped before its first checkpoint: nothing to open, x clears them
            name.stylize("dim")
            best = Text("stub", style="dim", justify="right")
        if r.status == "training":
            name.append(" ●", colour(self.app, "good"))
        return [name, Text(steps, justify="right"), best,
                Text(fmt_params(r.params), justify="right"), r.family, r.tokenizer, r.corpus, r.date]

    def show_live(self, name: str, step: int, best_val_loss: float | None) -> None:
        """(Called by the app, twice a second, for each run being trained.) meta.json is written
        at checkpoints only, so the row takes the trainer's live step and best instead."""
        run = next((r for r in self.runs if r.name == name and not r.error), None)
        if run is None or (run.meta.step == step and best_val_loss in (None, run.meta.best_val_loss)):
            return
        run.meta.step = step
        if best_val_loss is not None:
            run.meta.best_val_loss = best_val_loss
        table = self.query_one(DataTable)
        for key, cell in zip((k for k, _, _ in COLUMNS), self._cells(run)):
            if key in ("steps", "best"):
                try:
                    table.update_cell(name, key, cell)
                except CellDoesNotExist:  # (the table is being filled again)
                    return

    def _update_headers(self) -> None:
        table = self.query_one(DataTable)
        for key, label, _ in COLUMNS:
            column = table.columns.get(key)
            if column is None:
                continue
            arrow = (" ▼" if self.sort_reverse else " ▲") if key == self.sort_column else ""
            column.label = Text(label + arrow)
        table.refresh()

    @property
    def selected(self) -> RunInfo | None:
        table = self.query_one(DataTable)
        if not self.runs or table.row_count == 0:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except CellDoesNotExist:  # the cursor is past the rows (the table was just refilled)
            return None
        return next((r for r in self.runs if r.name == key), None)

    @property
    def selected_name(self) -> str | None:
        run = self.selected
        return run.name if run else None

    # ---- details ---------------------------------------------------------------------------------
    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_details()
        self.refresh_bindings()

    def _show_details(self, force: bool = False) -> None:
        run = self.selected
        name = run.name if run else None
        if name == self._detail_for and not force:
            return
        self._detail_for = name
        config_view = self.query_one("#run-config", Static)
        plot = self.query_one("#run-plot", LossPlot)
        if run is None:
            config_view.update("")
            plot.clear()
            return
        if run.error:
            bad = f"bold {colour(self.app, 'bad')}"
            config_view.update(Text.assemble(("Unreadable run\n", bad), run.error))
            plot.clear()
            return
        self._details_worker(run)

    @work(thread=True, exclusive=True, group="run-details", exit_on_error=False)
    def _details_worker(self, run: RunInfo) -> None:
        from minigpt_tui.core.errors import RunError
        from minigpt_tui.core.runs.run_dir import RunDir

        try:
            config_text = RunDir(run.path).config().to_toml()
        except RunError as err:
            config_text = f"# {err}"
        curves = RunDir(run.path).series("loss", "val_loss", "lr")
        train, val, lr = curves["loss"], curves["val_loss"], curves["lr"]
        import math

        vocab = run.meta.vocab_size  # read by the listing; 0 in a meta.json from before it was kept
        ln_v = math.log(vocab) if vocab > 1 else None
        from minigpt_tui.core.runs.evaluations import latest_by_split, read_evaluations, summary_parts

        evaluations = [summary_parts(r) for r in latest_by_split(read_evaluations(run.path)).values()]
        self._from_thread(self._apply_details, run, config_text, train, val, ln_v, lr, evaluations)

    def _apply_details(self, run: RunInfo, config_text: str, train, val, ln_v, lr,
                       evaluations: list[tuple[str, str]] = ()) -> None:
        if self._detail_for != run.name:
            return
        # Long names break after a hyphen, not mid-word, in the narrow details column.
        width = self.query_one("#run-config", Static).content_size.width or 27
        head = Text.assemble((break_name(run.name, width), "bold"), "\n")
        if run.meta.note:
            head.append(run.meta.note + "\n", f"italic {colour(self.app, 'accent')}")
        status = run.status or "?"
        head.append(f"{status}, step {run.step:,}", "dim")
        head.append(", checkpoint saved\n" if run.has_checkpoint else ", no checkpoint yet\n", "dim")
        if run.meta.receptive_field:  # (a CNN's or a Transformer's; an RNN's is unbounded)
            head.append(f"receptive field {run.meta.receptive_field:,} tokens\n", "dim")
        for score, detail in evaluations:  # the latest full-pass evaluation of each split (--evaluate)
            head.append(score + "\n")
            head.append(f"  {detail}\n", "dim")
        head.append("\n", "dim")
        body = Text()
        for line in config_text.splitlines():
            if line.startswith("["):
                body.append(line + "\n", "bold")
            else:
                body.append(line + "\n")
        self.query_one("#run-config", Static).update(head + body)
        self.query_one("#run-plot", LossPlot).set_data(train, val, ln_v, run.max_steps, lr=lr)

    # ---- actions -------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        run = self.selected
        if action in ("open_generate", "resume", "start_from", "export"):
            if run is None or run.error or not run.has_checkpoint:
                return None
            if action in ("resume", "start_from") and self.app.is_training():
                return None
        if action == "delete":
            if self.marked:
                return True
            if run is None or self.app.run_in_use(run.path):
                return None
        if action in ("mark", "rename") and run is None:
            return None
        if action == "note" and (run is None or run.error):
            return None
        if action == "compare" and len(self.compared_runs()) < 2:
            return False  # out of the footer until runs are marked: at 80 columns it has no room to spare
        if action == "unmark" and not self.marked:
            return None
        if action == "clear_stubs" and not any(is_stub(r) for r in self.runs):
            return None
        return True

    def action_open_generate(self) -> None:
        run = self._usable_run("open in Generate")
        if run is not None:
            self.post_message(CheckpointsPane.OpenRun(run.path, "generate"))

    def action_resume(self) -> None:
        run = self._usable_run("resume")
        if run is None:
            return
        if run.status == "imported":  # best.pt only: no optimizer state, no step to go on from
            self.app.notify(f"{run.name} is an imported model, so it has no training to resume; "
                            "press F to fine-tune from it.", severity="warning")
            return
        if self.app.is_training():
            self.app.notify("A run is already training; stop it first.", severity="warning")
            return
        self.post_message(CheckpointsPane.OpenRun(run.path, "resume"))

    def action_start_from(self) -> None:
        run = self._usable_run("fine-tune from")
        if run is None:
            return
        if self.app.is_training():
            self.app.notify("A run is already training; stop it first.", severity="warning")
            return
        self.post_message(CheckpointsPane.OpenRun(run.path, "from"))

    def _usable_run(self, what: str) -> RunInfo | None:
        run = self.selected
        if run is None:
            self.app.notify(f"No run selected to {what}.", severity="warning")
            return None
        if run.error:
            self.app.notify(f"Run {run.name} is unreadable: {run.error}", severity="error")
            return None
        if not run.has_checkpoint:
            self.app.notify(f"Run {run.name} has no checkpoint yet.", severity="warning")
            return None
        return run

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_generate()

    def action_delete(self) -> None:
        if self.marked:
            self.delete_many([r for r in self.runs if r.name in self.marked], "marked")
            return
        run = self.selected
        if run is None:
            self.app.notify("No run selected to delete.", severity="warning")
            return
        if self.app.run_in_use(run.path):
            self.app.notify(f"Run {run.name} is training; stop it before deleting it.", severity="warning")
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self._delete(run)

        self.app.push_screen(ConfirmScreen(
            f"Delete run {run.name} and all its checkpoints?\nThis cannot be undone.",
            yes="Delete", no="Keep", danger=True), answer)

    def _delete(self, run: RunInfo) -> None:
        from minigpt_tui.core.runs.run_dir import RunDir

        try:
            RunDir(run.path).delete()
        except OSError as err:
            self.app.notify(f"Could not delete {run.name} ({err.strerror or err}).", severity="error")
            return
        self.app.notify(f"Deleted run {run.name}.")
        self.runs = [r for r in self.runs if r.name != run.name]
        self.post_message(CheckpointsPane.RunDeleted(run.path))
        self.show_runs(self.runs)

    def action_plot(self, view: str) -> None:
        """The loss plot's l / m / f, from anywhere in the tab (the table has the focus)."""
        if view in VIEWS:
            self.query_one("#run-plot", LossPlot).toggle(view)

    def action_sort(self) -> None:
        keys = [k for k, _, _ in COLUMNS]
        self.sort_column = keys[(keys.index(self.sort_column) + 1) % len(keys)]
        self.sort_reverse = self.sort_column in ("date", "params", "steps")
        self._resort()

    def action_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self._resort()

    @on(DataTable.HeaderSelected)
    def _header(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        key = event.column_key.value
        if key == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = key, key in ("date", "params", "steps")
        self._resort()

    def _resort(self) -> None:
        self._update_headers()
        self.show_runs(self.runs)

    def focus_default(self) -> None:
        self.query_one(DataTable).focus()
