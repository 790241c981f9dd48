"""The help screen and the command palette of the app (a base class of MiniGPTApp): every
binding of the app and of each tab, listed by `?` and searchable with ctrl+p. The tabs'
classes are read from the app's panes (a module other than app.py may not import a tab).
"""

from __future__ import annotations

from functools import partial
from typing import Iterable

from textual.app import SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from minigpt_tui.tui.screens import HelpScreen

TAB_IDS = ("train", "checkpoints", "generate")
NOT_IN_PALETTE = {"leave_field", "leave_prompt"}  # about where the focus is; meaningless from the palette
TAB_TITLES = {"train": "Train", "checkpoints": "Checkpoints", "generate": "Generate"}

HELP_INTRO = (
    "Single keys act when the focus is not in a text field. In a field, Esc leaves it "
    "(in Generate, Enter generates and moves the focus to the output). Tab and Shift+Tab move "
    "between widgets; the mouse works too. Ctrl+P opens the command palette, which lists every action."
)


class HelpAndCommands:
    """key_for, the help screen's sections and the palette's commands (uses the app's panes)."""

    def key_for(self, binding: Binding) -> str:
        keys = self._keymap.get(binding.id, binding.key) if binding.id else binding.key
        shown = []
        for key in keys.split(","):
            key = key.strip()
            display = self.get_key_display(Binding(key, binding.action)) if key else key
            shown.append("ctrl+" + display[1:] if display.startswith("^") and len(display) > 1 else display)
        return " / ".join(dict.fromkeys(shown))

    def help_sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        sections = []
        for title, cls in [("Everywhere", type(self)), *((TAB_TITLES[t], type(self.pane(t))) for t in TAB_IDS)]:
            merged: dict[tuple[str, str], list[str]] = {}
            for binding in Binding.make_bindings(cls.BINDINGS):
                keys = merged.setdefault((binding.action, binding.tooltip or binding.description), [])
                shown = self.key_for(binding)
                if shown not in keys:
                    keys.append(shown)
            rows = [(" / ".join(keys), what) for (_, what), keys in merged.items()]
            if title == "Everywhere":
                rows.insert(3, ("ctrl+p", "Command palette: every action, searchable"))
            if title == "Train":
                rows.append(("enter", "In a form field: start training"))
            if title == "Checkpoints":
                rows.append(("enter", "Open the selected run in Generate"))
                rows.append(("click header", "Sort by that column (again: reverse)"))
            if title == "Generate":
                rows.insert(0, ("enter", "In the prompt: generate"))
            sections.append((title, rows))
        return sections

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss(None)
            return
        self.push_screen(HelpScreen(self.help_sections(), HELP_INTRO))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for tab in TAB_IDS:
            yield SystemCommand(f"Go to {TAB_TITLES[tab]}", f"Switch to the {TAB_TITLES[tab]} tab",
                                partial(self.action_show_tab, tab))
        yield SystemCommand("Help: keys", "Every key of the app", self.action_help)
        for tab, cls in ((t, type(self.pane(t))) for t in TAB_IDS):
            seen = set()
            for binding in Binding.make_bindings(cls.BINDINGS):
                if binding.action in seen or binding.action in NOT_IN_PALETTE:
                    continue
                seen.add(binding.action)
                title = f"{TAB_TITLES[tab]}: {binding.description}"
                help_text = f"{binding.tooltip or binding.description} (key: {self.key_for(binding)})"
                yield SystemCommand(title, help_text, partial(self._palette_action, tab, binding.action))

    def _palette_action(self, tab: str, action: str) -> None:
        if self.tabs.active != tab:
            self.tabs.active = tab
        pane = self.pane(tab)
        self.call_after_refresh(self.run_action, action, pane)
