"""Modal screens: a yes/no question, a one-line prompt, the help screen, and a run picker."""

from __future__ import annotations

from typing import Callable

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option


class ConfirmScreen(ModalScreen[bool]):
    """Ask one question; y / Enter on the confirm button says yes, n / Esc says no."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: str, yes: str = "Yes", no: str = "Cancel", danger: bool = False) -> None:
        super().__init__()
        self.question = question
        self.yes_label = yes
        self.no_label = no
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.question, id="question")
            with Horizontal(id="dialog-buttons"):
                yield Button(f"{self.yes_label} (y)", variant="error" if self.danger else "primary", id="yes")
                yield Button(f"{self.no_label} (n)", id="no")

    def on_mount(self) -> None:
        # The safe answer has focus: Enter on a delete question keeps the run.
        self.query_one("#no" if self.danger else "#yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PromptScreen(ModalScreen["str | None"]):
    """Ask for one line of text (a run's new name, its note). Enter answers with the text unless
    `check` finds a problem, which is shown under the field (one sentence); Esc cancels."""

    DEFAULT_CSS = """
    PromptScreen {
        align: center middle;
    }
    #prompt-dialog {
        width: 72;
        max-width: 95%;
        height: auto;
        border: thick $primary 70%;
        background: $surface;
        padding: 1 2;
    }
    #prompt-question {
        width: 1fr;
        margin-bottom: 1;
    }
    #prompt-error {
        color: $text-error;
        height: auto;
        display: none;
    }
    #prompt-hint {
        color: $text-muted;
        height: 1;
    }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(self, question: str, value: str = "", placeholder: str = "",
                 check: Callable[[str], str] | None = None, hint: str = "Enter saves, Esc cancels.") -> None:
        super().__init__()
        self.question = question
        self.value = value
        self.placeholder = placeholder
        self.check = check
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-dialog"):
            yield Label(self.question, id="prompt-question")
            yield Input(self.value, placeholder=self.placeholder, id="prompt-input")
            yield Static("", id="prompt-error")
            yield Static(self.hint, id="prompt-hint")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        problem = self.check(event.value) if self.check else ""
        error = self.query_one("#prompt-error", Static)
        error.update(problem)
        error.display = bool(problem)
        if not problem:
            self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """Every key of the app, by tab (built from the live bindings, so it cannot go stale)."""

    BINDINGS = [
        Binding("escape,q,f1,question_mark", "dismiss_help", "Close", id="help.close"),
    ]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]], intro: str = "") -> None:
        super().__init__()
        self.sections = sections
        self.intro = intro

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog"):
            yield Static(Text("minigpt-tui keys", style="bold"), id="help-title")
            with VerticalScroll(id="help-body"):
                if self.intro:
                    yield Static(self.intro, id="help-intro")
                for title, rows in self.sections:
                    table = Table.grid(padding=(0, 2), expand=True)
                    table.add_column(no_wrap=True, min_width=12)
                    table.add_column(ratio=1, overflow="fold")
                    for key, what in rows:
                        table.add_row(Text(key, style="bold"), Text(what))
                    yield Static(Text(title, style="bold underline"), classes="help-section")
                    yield Static(table, classes="help-table")
            yield Static(Text("Esc, q, ? or F1 closes this screen.", style="dim"), id="help-foot")

    def on_mount(self) -> None:
        self.query_one("#help-body").focus()

    def action_dismiss_help(self) -> None:
        self.dismiss(None)


class RunPickerScreen(ModalScreen["str | None"]):
    """Choose a run to load in Generate (runs with a checkpoint, newest first)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="picker.cancel")]

    def __init__(self, runs: list[tuple[str, str]], current: str = "",
                 title: str = "Open which run? (Enter opens, Esc cancels)") -> None:
        super().__init__()
        self.runs = runs  # (name, description)
        self.current = current
        self.title_text = title  # the Train tab's corpus picker asks its own question

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-dialog"):
            yield Label(self.title_text, id="picker-title")
            options = [Option(Text.assemble((name, "bold"), "  ", (desc, "dim")), id=name) for name, desc in self.runs]
            yield OptionList(*options, id="picker-list")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.focus()
        for i, (name, _) in enumerate(self.runs):
            if name == self.current:
                options.highlighted = i

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
