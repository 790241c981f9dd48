"""The Generate tab's conversation: ChatActions, a part of GeneratePane.

The transcript is drawn from the conversation (core.generation.conversation) whenever its shape
changes: a new turn, undo, a flip to another version of a reply, a reopened
conversation. While a reply streams, only its new text is appended (tui.generate.streaming).
Each turn is drawn in its own style: the user's words bold, template text dimmed, the
model's text plain (or coloured by confidence, from the pieces kept per reply), and a
reply with other versions ends in a dimmed "‹2/3›".

Conversations are saved after every change into the run folder (atomic JSON), so
starting a new one keeps the old; they can be reopened, exported and copied.
Shares the pane's state: `chat`, `session`, `info`, `run_chat`, `output`, `gen`.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from rich.text import Text

from minigpt_tui.core.data.tokenizer import prettify
from minigpt_tui.core.generation.chat import ChatError
from minigpt_tui.core.generation.chat_template import ChatTemplate, TemplateError
from minigpt_tui.core.generation.conversation import (
    MODES,
    ConversationError,
    export_conversation,
    list_conversations,
    load_conversation,
    save_conversation,
)
from minigpt_tui.tui.generate.chat_screens import ConversationPickerScreen, TemplateScreen
from minigpt_tui.tui.widgets.stream_view import LABEL, MODEL, TEMPLATE, USER

log = logging.getLogger(__name__)

# Programs that put text on the system clipboard, tried in order; where none works (no
# display, over SSH) the text goes to the terminal (OSC 52), which may or may not pass it on.
CLIPBOARD_TOOLS = [["wl-copy"], ["xclip", "-selection", "clipboard"], ["xsel", "--clipboard", "--input"],
                   ["pbcopy"], ["clip.exe"]]


def system_clipboard(text: str) -> bool:
    """Copy with the first clipboard program that succeeds; False when none does."""
    for command in CLIPBOARD_TOOLS:
        if shutil.which(command[0]) is None:
            continue
        try:
            subprocess.run(command, input=text.encode("utf-8"), check=True, timeout=2,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return True
        except (OSError, subprocess.SubprocessError):
            continue
    return False


def with_label(pieces: list, label: tuple[str, str] | None) -> list:
    """A reply's pieces with its version label after the text, before the newlines it ends with."""
    if label is None:
        return pieces
    out, tail = list(pieces), ""
    while out and not out[-1][0].rstrip("\n"):
        tail = out.pop()[0] + tail
    if out:
        text, prob = out[-1]
        kept = text.rstrip("\n")
        out[-1], tail = (kept, prob), text[len(kept):] + tail
    return out + [label] + ([(tail, MODEL)] if tail else [])


class ChatActions:
    """New, undo, flip, mode, template, save/reopen/export/copy (mixed into GeneratePane)."""

    # ---- drawing -------------------------------------------------------------------------------
    def render_transcript(self) -> None:
        """Draw the conversation's path (a reply streaming now shows its template text so far)."""
        view = self.output
        view.clear()
        if self.chat is None:
            return
        pieces = []
        word_level = self.info is not None and self.info.word_level
        streaming = self.gen.turn if self.gen is not None else None
        for turn in self.chat.turns:
            if turn.prefix:
                pieces.append((turn.prefix, TEMPLATE))
            if turn is streaming:
                break
            if turn.role == "user":
                pieces.append((turn.text, USER))
            else:
                reply = self.turn_pieces.get(turn.id) or [(prettify(turn.text) if word_level else turn.text, MODEL)]
                pieces += with_label(reply, self.sibling_label(turn))
            if turn.suffix:
                pieces.append((turn.suffix, TEMPLATE))
        view.append_many(pieces)
        view.settle()

    def sibling_label(self, turn) -> tuple[str, str] | None:
        i, n = self.chat.conversation.sibling_position(turn)
        return (f" ‹{i}/{n}›", LABEL) if n > 1 and turn.role == "model" else None

    def _render_turn_bar(self) -> None:
        """The line under the transcript: the mode and its template, the turn, the reply's version."""
        bar = Text(no_wrap=True, overflow="ellipsis")
        if self.chat is None:
            bar.append("Each Enter adds a turn; the model reads the whole conversation.", "dim")
        else:
            i, n = self.chat.siblings()
            if n > 1:  # first: the line may be cut on the right
                keys = "←/→" if not self.prompt_focused else "Esc, then ←/→"
                bar.append(f"version {i}/{n} ({keys})", "bold")
                bar.append(" │ ", "dim")
            bar.append(self.chat.template.describe(), "")
        self.query_one("#gen-turn").update(bar)

    # ---- conversation actions --------------------------------------------------------------------
    def action_new_chat(self) -> None:
        if self.chat is None:
            return
        self.stop_generation()
        self.autosave()
        self.chat.new()
        self.turn_pieces.clear()
        self._after_change()
        self.app.notify("A new conversation; the last one is saved (h reopens it).", timeout=3)

    def action_undo(self) -> None:
        if self.chat is None:
            return
        self.stop_generation()
        try:
            removed = self.chat.undo()
        except ChatError as err:
            self.app.notify(str(err), severity="warning")
            return
        prompt = self.prompt
        if removed is not None and not prompt.value:
            prompt.value = removed.text  # edit and send it again
        self._after_change()

    def action_flip(self, delta: int) -> None:
        if self.chat is None:
            return
        self.stop_generation()
        try:
            i, n = self.chat.flip(delta)
        except ChatError as err:
            self.app.notify(str(err), severity="warning")
            return
        self._after_change()

    def _after_change(self) -> None:
        self.render_transcript()
        self.autosave()
        self._render_turn_bar()
        self._render_status()
        self.refresh_bindings()

    def action_mode(self) -> None:
        """The next mode the run can chat in (instruct only for a model with a chat template)."""
        if self.chat is None:
            return
        t = self.chat.template
        modes = self.run_chat.modes if self.run_chat is not None else tuple(m for m in MODES if m != "instruct")
        t.mode = modes[(modes.index(t.mode) + 1) % len(modes)] if t.mode in modes else modes[0]
        self._remember_template()
        self.app.notify(f"Mode: {t.describe()}.", timeout=4)

    def action_template(self) -> None:
        if self.chat is None:
            return
        speakers = self.run_chat.speakers if self.run_chat is not None else []

        def edited(template: ChatTemplate | None) -> None:
            if template is not None and self.chat is not None:
                for name, value in template.to_dict().items():
                    setattr(self.chat.template, name, value)
                self._remember_template()

        self.app.push_screen(TemplateScreen(self.chat.template, speakers), edited)

    def _remember_template(self) -> None:
        if self.run_chat is not None:
            self.run_chat.template = self.chat.template
            try:
                self.run_chat.save()
            except TemplateError as err:
                self.app.notify(str(err), severity="warning")
        self._render_turn_bar()
        self._render_status()

    # ---- files ---------------------------------------------------------------------------------------
    def autosave(self) -> None:
        """Keep the conversation in the run folder (nothing to keep when it is empty or has no run)."""
        if self.chat is None or not self.chat.conversation.turns or self.info is None or self.info.run_dir is None:
            return
        try:
            save_conversation(self.chat.conversation, self.info.run_dir)
        except ConversationError as err:
            self.app.notify(str(err), severity="warning")

    def action_saved(self) -> None:
        if self.chat is None or self.info is None or self.info.run_dir is None:
            return
        saved = list_conversations(self.info.run_dir)
        if not saved:
            self.app.notify("No saved conversations for this run yet; they are saved as you chat.", timeout=3)
            return
        rows = [(str(c.path), c.title, f"{c.date}, {c.turns} turns, {c.mode}") for c in saved]

        def chosen(path: str | None) -> None:
            if path:
                self.reopen(Path(path))

        self.app.push_screen(ConversationPickerScreen(rows), chosen)

    def reopen(self, path: Path) -> None:
        from minigpt_tui.core.generation.chat import Chat

        try:
            conv = load_conversation(path)
        except ConversationError as err:
            self.app.notify(str(err), severity="error")
            return
        self.stop_generation()
        self.autosave()
        self.session.reset()
        self.chat = Chat(self.session, self.chat.template, conv)  # the model reads it at the next reply
        self.turn_pieces.clear()
        self._after_change()

    def action_export(self) -> None:
        if self.chat is None or not self.chat.conversation.turns:
            self.app.notify("Nothing to export yet.", severity="warning")
            return
        from minigpt_tui.tui.screens import PromptScreen

        default = str(Path.home() / f"conversation-{self.chat.conversation.id}.md")

        def chosen(path: str | None) -> None:
            if not path:
                return
            try:
                kind = export_conversation(self.chat.conversation, Path(path))
            except ConversationError as err:
                self.app.notify(str(err), severity="error")
                return
            self.app.notify(f"Exported as {kind} to {Path(path).expanduser()}.", timeout=4)

        self.app.push_screen(PromptScreen("Export to which file? (.md: Markdown; else plain text)", default,
                                          hint="Enter exports, Esc cancels."), chosen)

    def action_copy(self) -> None:
        text = self.chat.conversation.text() if self.chat is not None else ""
        if not text:
            self.app.notify("Nothing to copy yet.", severity="warning")
            return
        self.app.copy_to_clipboard(text)  # also kept by the app (and sent to the terminal: OSC 52)
        if system_clipboard(text):
            self.app.notify(f"Copied {len(text):,} characters to the clipboard.", timeout=2)
        else:
            self.app.notify(f"No clipboard program here; sent {len(text):,} characters to the terminal, which "
                            "may not pass them on (export with e instead).", severity="warning", timeout=6)

    # ---- a newer checkpoint -------------------------------------------------------------------------
    def check_newer(self) -> None:
        """A timer: has the loaded run written a newer checkpoint of the kind loaded?"""
        info = self.info
        if info is None or info.run_dir is None or self.loaded_mtime is None or self.newer_step is not None:
            return
        from minigpt_tui.core.runs.run_dir import RunDir

        run = RunDir(info.run_dir)
        try:
            mtime = run.checkpoint_path(info.checkpoint).stat().st_mtime_ns
        except OSError:
            return
        if mtime > self.loaded_mtime:
            from minigpt_tui.core.errors import RunError

            try:
                self.newer_step = run.read_meta().step
            except RunError:
                self.newer_step = 0
            self._render_header()
