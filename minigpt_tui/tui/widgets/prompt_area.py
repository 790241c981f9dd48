"""The Generate tab's prompt: multi-line text that Enter sends, with a history kept across launches.

* Enter sends. A newline is ctrl+j (the line feed every terminal sends for it, tmux
  included), alt+enter where the terminal delivers it, or a backslash typed at the end
  before Enter (as in a shell). shift+enter and ctrl+enter are not used: many terminals
  never deliver them. A paste arrives whole, newlines and all.
* Up on the first line and Down on the last recall earlier prompts (elsewhere they move
  the cursor, as in any editor). What was being typed comes back after the newest one.
* The history is a JSON list in the data home (`prompt_history.json`), newest last,
  written atomically and capped at HISTORY_LIMIT entries of at most HISTORY_MAX_CHARS; an unreadable file is an empty
  history, never an error.
"""

from __future__ import annotations

import json
from pathlib import Path

from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

from minigpt_tui.core import fsutil, paths

HISTORY_LIMIT = 500
HISTORY_MAX_CHARS = 10_000
HISTORY_NAME = "prompt_history.json"


class PromptHistory:
    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path is not None else paths.data_home() / HISTORY_NAME
        self.entries: list[str] = self._read()
        self.position: int | None = None  # browsing: an index into entries; None while typing
        self.draft = ""  # what was being typed when browsing started

    def _read(self) -> list[str]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return [e for e in raw if isinstance(e, str) and e][-HISTORY_LIMIT:] if isinstance(raw, list) else []

    def add(self, text: str) -> str | None:
        """Remember a sent prompt (a repeat of the newest is kept once); one sentence if it cannot be saved."""
        self.position = None
        if not text.strip() or len(text) > HISTORY_MAX_CHARS:  # (a pasted book is not worth recalling)
            return None
        if self.entries and self.entries[-1] == text:
            return None
        self.entries = (self.entries + [text])[-HISTORY_LIMIT:]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fsutil.atomic_write_text(self.path, json.dumps(self.entries, ensure_ascii=False))
        except OSError as err:
            return f"Could not save the prompt history to {self.path} ({err.strerror or err})."
        return None

    def older(self, current: str) -> str | None:
        if not self.entries or self.position == 0:
            return None
        if self.position is None:
            self.draft, self.position = current, len(self.entries)
        self.position -= 1
        return self.entries[self.position]

    def newer(self) -> str | None:
        if self.position is None:
            return None
        self.position += 1
        if self.position >= len(self.entries):
            self.position = None
            return self.draft
        return self.entries[self.position]


class PromptArea(TextArea):
    """A TextArea where Enter sends (see the module docstring)."""

    DEFAULT_CSS = """
    PromptArea {
        height: auto;
        min-height: 3;
        max-height: 8;
    }
    """
    BINDINGS = [
        Binding("ctrl+j,alt+enter", "newline", "Newline", id="prompt.newline", show=False,
                tooltip="In the prompt: a new line (Enter sends)"),
    ]

    class Submitted(Message):
        def __init__(self, area: "PromptArea", value: str) -> None:
            super().__init__()
            self.area = area
            self.value = value

        @property
        def control(self) -> "PromptArea":
            return self.area

    def __init__(self, *, history: PromptHistory | None = None, placeholder: str = "", id: str | None = None):
        super().__init__(id=id, soft_wrap=True, show_line_numbers=False, highlight_cursor_line=False,
                         tab_behavior="focus", placeholder=placeholder)
        self.prompt_history = history  # (TextArea's own `history` is its undo stack)

    @property
    def value(self) -> str:
        return self.text

    @value.setter
    def value(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)

    async def _on_key(self, event) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            row, column = self.cursor_location
            line = self.document[row]
            if column == len(line) and line.endswith("\\") and not line.endswith("\\\\"):
                self.replace("\n", (row, column - 1), (row, column))  # a backslash at the end: a newline
                return
            self.post_message(self.Submitted(self, self.text))
            return
        await super()._on_key(event)

    def action_newline(self) -> None:
        self.insert("\n")

    def action_cursor_up(self, select: bool = False) -> None:
        if not select and self.prompt_history is not None and self.cursor_location[0] == 0:
            recalled = self.prompt_history.older(self.text)
            if recalled is not None:
                self.value = recalled
            return
        super().action_cursor_up(select)

    def action_cursor_down(self, select: bool = False) -> None:
        if not select and self.prompt_history is not None and self.cursor_location[0] == self.document.line_count - 1:
            recalled = self.prompt_history.newer()
            if recalled is not None:
                self.value = recalled
            return
        super().action_cursor_down(select)
