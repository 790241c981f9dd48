"""The Generate tab's side panel: the latest token's top alternatives, each with its
probability as a bar, and (in confidence mode) the key to the output's colours.

It is drawn from what it was last shown, in the theme's colours (tui.palette), so a
theme change only repaints it.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from minigpt_tui.tui.palette import colour
from minigpt_tui.tui.widgets.live_text import LiveText
from minigpt_tui.tui.widgets.stream_view import CONFIDENCE_LEVELS, confidence_role

BAR_CELLS = 8
SHOWN = 5  # alternatives listed


def token_label(text: str) -> str:
    """A token as the side panel shows it (whitespace made visible)."""
    shown = text.replace("\n", "⏎").replace("\t", "⇥")
    if shown == " ":
        return "␣"
    if shown.startswith(" ") and len(shown) > 1:
        shown = shown[1:]
    return shown if len(shown) <= 12 else shown[:11] + "…"


def fraction_bar(fraction: float, width: int) -> str:
    """A bar of `width` cells filled to `fraction`, in eighths of a cell."""
    eighths = max(0, min(width * 8, round(fraction * width * 8)))
    full, part = divmod(eighths, 8)
    return "█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")


class OddsPanel(LiveText):
    """Top alternatives of a token event (`.text`, `.prob`, `.top` as (text, prob) pairs), or a hint."""

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", name=name, id=id, classes=classes)
        self.event: Any = None
        self.confidence = False

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.refresh())

    def show(self, event: Any, confidence: bool) -> None:
        """Show `event` (None: the hint); with `confidence`, bars and key in the confidence colours."""
        self.event, self.confidence = event, confidence
        self.refresh()

    def render(self) -> Text:
        event = self.event
        out = Text(no_wrap=True, overflow="ellipsis")
        if event is None:
            out.append("Top alternatives\n", "bold")
            out.append("for the latest token\nappear here.\n", "dim")
        else:
            out.append("Latest ", "bold")
            out.append(token_label(event.text), "bold reverse")
            out.append(f" {event.prob:.0%}\n", "")
            bar_colour = None if self.confidence else colour(self.app, "primary")
            for text, prob in event.top[:SHOWN]:
                out.append(f"{token_label(text):<8}", "bold" if text == event.text else "")
                out.append(f"{prob:4.0%} ", "")
                out.append(fraction_bar(prob, BAR_CELLS) + "\n",
                           bar_colour or colour(self.app, confidence_role(prob)))
        if self.confidence:
            out.append("\nColour = probability\n", "bold")
            for _, role, label in CONFIDENCE_LEVELS:
                out.append("■ ", colour(self.app, role))
                out.append(label + "\n", "")
        return out
