"""The Generate tab's dialogs: the chat template editor (dialogue's fields, or instruct's system
prompt) and the list of saved conversations."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from minigpt_tui.core.generation.chat_template import ChatTemplate, TemplateError, shown

FIELDS = [  # (field, label, what it is)
    ("user", "You speak as", "a speaker name"),
    ("model", "The model as", "a speaker name"),
    ("user_tag", "Your tag", "before your words; {user} is your name, \\n a newline"),
    ("model_tag", "Model's tag", "before the reply; {model} is its name"),
    ("separator", "Between", "what separates speeches"),
    ("stops", "Reply ends at", "stop strings, separated by |"),
]


class TemplateScreen(ModalScreen["ChatTemplate | None"]):
    """Edit the dialogue template, or in instruct mode the system prompt (the model's own chat
    template does the rest); Enter in a field saves (a bad value is one sentence), Esc cancels."""

    DEFAULT_CSS = """
    TemplateScreen { align: center middle; }
    #template-dialog {
        width: 76; max-width: 98%; height: auto; max-height: 98%;
        border: thick $primary 70%; background: $surface; padding: 0 1;
    }
    #template-dialog .row { height: 1; }
    #template-dialog .row Label { width: 15; color: $text-muted; }
    #template-dialog .row Input { width: 1fr; height: 1; border: none; padding: 0; background: $boost; }
    #template-dialog .row Input:focus { background: $primary 30%; }
    #template-speakers, #template-hint { color: $text-muted; height: auto; }
    #template-error { color: $text-error; height: auto; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="template.cancel")]

    def __init__(self, template: ChatTemplate, speakers: list[str]) -> None:
        super().__init__()
        self.template = template
        self.speakers = speakers

    @property
    def instruct(self) -> bool:
        return self.template.mode == "instruct"

    def compose(self) -> ComposeResult:
        t = self.template
        if self.instruct:
            with Vertical(id="template-dialog"):
                yield Label(Text("Instruct template (remembered for this run)", style="bold"))
                yield Static("The model's own chat template writes the conversation; the system prompt "
                             "goes first (empty: none).", id="template-speakers")
                with Horizontal(classes="row"):
                    yield Label("System prompt")
                    yield Input(shown(t.system)[1:-1], placeholder="e.g. You are a helpful assistant.",
                                id="t-system", select_on_focus=False)
                yield Static("", id="template-error")
                yield Static("Enter saves, Esc cancels.", id="template-hint")
            return
        with Vertical(id="template-dialog"):
            yield Label(Text("Dialogue template (remembered for this run)", style="bold"))
            names = ", ".join(self.speakers[:10]) if self.speakers else "none (no NAME: lines)"
            yield Static(f"Speakers in the corpus: {names}", id="template-speakers")
            for name, label, hint in FIELDS:
                value = getattr(t, name)
                if name == "stops":
                    text = "|".join(shown(v)[1:-1] for v in value)
                elif name in ("user", "model"):
                    text = value
                else:
                    text = shown(value)[1:-1]
                with Horizontal(classes="row"):
                    yield Label(label)
                    yield Input(text, placeholder=hint, id=f"t-{name}", select_on_focus=False)
            yield Static("", id="template-error")
            yield Static("Enter saves, Esc cancels, Tab moves between fields.", id="template-hint")

    def on_mount(self) -> None:
        self.query_one("#t-system" if self.instruct else "#t-user", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        edited = ChatTemplate.from_dict(self.template.to_dict())
        if self.instruct:
            edited.set("system", self.query_one("#t-system", Input).value)
            self.dismiss(edited)
            return
        edited.mode = "dialogue"
        try:
            for name, _, _ in FIELDS:
                value = self.query_one(f"#t-{name}", Input).value
                edited.set(name, value.split("|") if name == "stops" else value)
        except TemplateError as err:
            self.query_one("#template-error", Static).update(str(err))
            return
        self.dismiss(edited)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConversationPickerScreen(ModalScreen["str | None"]):
    """Choose a saved conversation of the loaded run (newest first); returns its file path."""

    DEFAULT_CSS = """
    ConversationPickerScreen { align: center middle; }
    #chats-dialog { width: 76; max-width: 98%; height: auto; max-height: 90%;
                    border: thick $primary 70%; background: $surface; padding: 0 1; }
    #chats-list { height: auto; max-height: 20; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="chats.cancel")]

    def __init__(self, rows: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.rows = rows  # (path, title, description)

    def compose(self) -> ComposeResult:
        with Vertical(id="chats-dialog"):
            yield Label("Reopen which conversation? (Enter reopens, Esc cancels)")
            yield OptionList(*[Option(Text.assemble((title, "bold"), "  ", (desc, "dim")), id=path)
                               for path, title, desc in self.rows], id="chats-list")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
