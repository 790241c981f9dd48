"""The Checkpoints tab's Export action (X): the selected run as a transformers folder, a GGUF file
for llama.cpp and Ollama, or (GRU/LSTM) a safetensors bundle; the work is core/export's.

ExportScreen asks: a format among those that fit the run (one line on why another is not
offered), the weights' type for it, the checkpoint where both are written, and a path prefilled
with one that does not exist yet. ExportActions is mixed into CheckpointsPane: it reads which
formats fit in a thread (an imported model's tokenizer can be large), and the export itself runs
in a thread worker of the pane, not of the dialog, so closing the dialog lets it finish; the app
says when it is done.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, ProgressBar, Select, Static, TextArea

from minigpt_tui.core.export.fit import DEFAULT_DTYPE, FORMAT_DTYPES, FORMAT_WHAT, ExportChoices
from minigpt_tui.core.runs.run_dir import RunInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportRequest:
    fmt: str
    dtype: str
    checkpoint: str
    out: Path


class ExportScreen(ModalScreen[None]):
    """Export RUN: the choices, then progress, then the path written (and, for gguf, how to run
    it) or the error's sentence. Esc closes it, also while the export runs (it goes on)."""

    DEFAULT_CSS = """
    ExportScreen {
        align: center middle;
    }
    #export-dialog {
        width: 78;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: thick $primary 70%;
        background: $surface;
        padding: 0 1;
    }
    #export-title {
        height: 1;
        margin-bottom: 1;
    }
    #export-form {
        height: auto;
    }
    #export-choices {
        height: auto;
    }
    .export-field {
        width: 1fr;
        height: auto;
    }
    #export-why-not, .export-label {
        color: $text-muted;
    }
    #export-progress {
        height: 1;
        margin-top: 1;
        display: none;
    }
    #export-progress Bar {
        width: 16;
    }
    #export-progress-label {
        margin-left: 2;
    }
    #export-error {
        color: $text-error;
        height: auto;
        margin-top: 1;
        display: none;
    }
    #export-result {
        height: auto;
        display: none;
    }
    #export-instructions {
        height: auto;
        max-height: 11;
    }
    #export-buttons {
        height: auto;
        align-horizontal: right;
    }
    #export-buttons Button {
        margin-left: 2;
    }
    """
    BINDINGS = [Binding("escape", "close", "Close", id="export.close")]

    def __init__(self, run_name: str, choices: ExportChoices, defaults: dict[str, Path],
                 start: Callable[["ExportScreen", ExportRequest], None]) -> None:
        super().__init__()
        self.run_name = run_name
        self.choices = choices
        self.defaults = defaults  # format -> a path that does not exist yet
        self._start = start
        self.state = "form"  # -> "running" -> "done" | "failed" (then the form again)
        self.closed = False  # dismissed: an export still running reports to the app instead
        self.exported_text = ""

    def compose(self) -> ComposeResult:
        fmt = self.choices.formats[0]
        checkpoints = self.choices.checkpoints or ("best",)
        with Vertical(id="export-dialog"):
            yield Label(Text(f"Export {self.run_name}", style="bold"), id="export-title")
            with Vertical(id="export-form"):
                with Horizontal(id="export-choices"):
                    with Vertical(classes="export-field"):
                        yield Label("Format", classes="export-label")
                        yield Select([(f, f) for f in self.choices.formats], value=fmt, allow_blank=False,
                                     id="export-format")
                    with Vertical(classes="export-field"):
                        yield Label("Weights", classes="export-label")
                        yield Select(self._dtype_options(fmt), value=DEFAULT_DTYPE[fmt], allow_blank=False,
                                     id="export-dtype")
                    with Vertical(classes="export-field"):
                        yield Label("Checkpoint", classes="export-label")
                        yield Select([(k, k) for k in checkpoints], value="best" if "best" in checkpoints
                                     else checkpoints[0], allow_blank=False, id="export-checkpoint")
                yield Static(self._what(fmt), id="export-what")
                yield Static(self.choices.why_not, id="export-why-not")
                yield Label("Write to (Enter exports, Esc cancels)", classes="export-label")
                yield Input(str(self.defaults[fmt]), id="export-out")
            with Horizontal(id="export-progress"):
                yield ProgressBar(total=None, show_eta=False, show_percentage=False)
                yield Label("", id="export-progress-label")
            yield Static("", id="export-error")
            yield Static("", id="export-result")
            with Horizontal(id="export-buttons"):
                yield Button("Export", variant="primary", id="export-go")
                yield Button("Copy", id="export-copy")
                yield Button("Cancel", id="export-close")

    def on_mount(self) -> None:
        self.query_one("#export-why-not").display = bool(self.choices.why_not)
        self.query_one("#export-copy").display = False
        self.query_one("#export-checkpoint").disabled = len(self.choices.checkpoints) < 2
        field = self.query_one("#export-out", Input)
        field.focus()
        field.cursor_position = len(field.value)

    @staticmethod
    def _dtype_options(fmt: str) -> list[tuple[str, str]]:
        return [(d + (" (default)" if d == DEFAULT_DTYPE[fmt] else ""), d) for d in FORMAT_DTYPES[fmt]]

    @staticmethod
    def _what(fmt: str) -> Text:
        return Text.assemble((fmt, "bold"), f": {FORMAT_WHAT[fmt]}")

    @property
    def fmt(self) -> str:
        return str(self.query_one("#export-format", Select).value)

    @on(Select.Changed, "#export-format")
    def _format_changed(self, event: Select.Changed) -> None:
        event.stop()
        fmt = str(event.value)
        dtype = self.query_one("#export-dtype", Select)
        dtype.set_options(self._dtype_options(fmt))
        dtype.value = DEFAULT_DTYPE[fmt]
        self.query_one("#export-what", Static).update(self._what(fmt))
        field = self.query_one("#export-out", Input)
        if field.value.strip() in {str(p) for p in self.defaults.values()}:  # not edited: follow the format
            field.value = str(self.defaults[fmt])

    # ---- starting, and what comes back -----------------------------------------------------------------
    @on(Input.Submitted, "#export-out")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_export()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "export-go":
            self.action_export()
        elif event.button.id == "export-copy":
            self.app.copy_to_clipboard(self.exported_text)
            self.app.notify("Copied the path and the instructions.", title="Export")
        else:
            self.action_close()

    def action_export(self) -> None:
        if self.state not in ("form", "failed"):
            return
        text = self.query_one("#export-out", Input).value.strip()
        if not text:
            self._show_error("Give a path to write to.")
            return
        request = ExportRequest(self.fmt, str(self.query_one("#export-dtype", Select).value),
                                str(self.query_one("#export-checkpoint", Select).value), Path(text).expanduser())
        self.state = "running"
        self.query_one("#export-form").disabled = True
        self.query_one("#export-error").display = False
        self.query_one("#export-go").disabled = True
        self.query_one("#export-progress-label", Label).update(
            f"Exporting {self.run_name} as {request.fmt}… (Esc closes this; the export goes on)")
        self.query_one("#export-progress").display = True
        self.query_one("#export-close", Button).label = "Close"
        self.query_one("#export-close").focus()
        self._start(self, request)

    def show_done(self, path: Path | None, summary: str, instructions: str, error: str) -> None:
        """The export's outcome: what was written (the form gives way to it), or the error's
        sentence under the form, which comes back to change the path or the format."""
        self.query_one("#export-progress").display = False
        self.query_one("#export-form").disabled = False
        if error:
            self.state = "failed"
            self.query_one("#export-go").disabled = False
            self._show_error(error)
            self.query_one("#export-out", Input).focus()
            return
        self.state = "done"
        self.query_one("#export-title", Label).update(Text(f"Exported {self.run_name}", style="bold"))
        self.query_one("#export-form").display = False
        self.query_one("#export-go").display = False
        self.query_one("#export-copy").display = True
        result = self.query_one("#export-result", Static)
        result.update(Text(summary))
        result.display = True
        self.exported_text = str(path) + (f"\n\n{instructions}" if instructions else "")
        if instructions:  # selectable (mouse, shift+arrows) and ctrl+c copies; Copy takes it all
            area = TextArea(instructions, read_only=True, soft_wrap=True, id="export-instructions")
            self.query_one("#export-dialog").mount(area, before=self.query_one("#export-buttons"))
        self.query_one("#export-close").focus()

    def _show_error(self, sentence: str) -> None:
        error = self.query_one("#export-error", Static)
        error.update(sentence)
        error.display = True

    def action_close(self) -> None:
        self.closed = True
        self.dismiss(None)


class ExportActions:
    """The Checkpoints pane's Export action (see the module docstring)."""

    exports_running: set[Path]  # the paths being written (a second export's default avoids them)

    def action_export(self) -> None:
        run = self._usable_run("export")
        if run is not None:
            self._export_choices_worker(run)

    @work(thread=True, exclusive=True, group="export-choices", exit_on_error=False)
    def _export_choices_worker(self, run: RunInfo) -> None:
        from minigpt_tui.core.errors import USER_ERRORS
        from minigpt_tui.core.export.fit import default_out, export_choices
        from minigpt_tui.core.runs.run_dir import RunDir

        try:
            choices = export_choices(RunDir(run.path))
            busy = set(self.exports_running)
            defaults = {fmt: default_out(run.name, fmt, taken=busy) for fmt in choices.formats}
        except USER_ERRORS as err:
            self._from_thread(self.app.notify, str(err), severity="error", title="Export")
            return
        except OSError as err:
            self._from_thread(self.app.notify, f"Cannot read run {run.name} ({err.strerror or err}).",
                              severity="error", title="Export")
            return
        self._from_thread(self._open_export, run, choices, defaults)

    def _open_export(self, run: RunInfo, choices: ExportChoices, defaults: dict[str, Path]) -> None:
        def start(screen: ExportScreen, request: ExportRequest) -> None:
            self.exports_running.add(request.out)
            self._export_worker(run, request, screen)

        self.app.push_screen(ExportScreen(run.name, choices, defaults, start))

    @work(thread=True, group="export", exit_on_error=False)
    def _export_worker(self, run: RunInfo, request: ExportRequest, screen: ExportScreen) -> None:
        from minigpt_tui.core.errors import USER_ERRORS
        from minigpt_tui.core.export.exporter import export_run
        from minigpt_tui.core.runs.run_dir import RunDir

        try:
            done = export_run(RunDir(run.path), request.fmt, request.out, request.checkpoint, request.dtype)
        except USER_ERRORS as err:
            self._from_thread(self._export_done, run, request, screen, None, "", "", str(err))
        except Exception as err:  # a bug or an odd file: one sentence here, the traceback in the debug log
            log.exception("exporting run %s as %s to %s", run.path, request.fmt, request.out)
            self._from_thread(self._export_done, run, request, screen, None, "", "",
                              f"Could not export run {run.name} ({type(err).__name__}: {err}).")
        else:
            self._from_thread(self._export_done, run, request, screen, done.path, done.summary,
                              done.instructions, "")

    def _export_done(self, run: RunInfo, request: ExportRequest, screen: ExportScreen, path: Path | None,
                     summary: str, instructions: str, error: str) -> None:
        self.exports_running.discard(request.out)
        if not screen.closed:
            screen.show_done(path, summary, instructions, error)
        if error:
            if screen.closed:
                self.app.notify(error, severity="error", title=f"Export of {run.name}")
        else:
            self.app.notify(f"Exported {run.name} as {request.fmt} to {path}.", title="Export")
