"""A text widget for values that change many times a second.

Static.update() asks for a layout of the whole screen (its size may depend on its
content); LiveText has its size from the stylesheet, so an update only repaints it.
"""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text
from textual.widget import Widget


class LiveText(Widget):
    DEFAULT_CSS = """
    LiveText {
        height: 1;
    }
    """

    def __init__(self, content: RenderableType = "", *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._content: RenderableType = content

    def update(self, content: RenderableType) -> None:
        self._content = content
        self.refresh()

    def render(self) -> RenderableType:
        return self._content if not isinstance(self._content, str) else Text(self._content)
