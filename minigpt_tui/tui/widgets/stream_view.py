"""A scrolling view of streamed text that only ever appends: the Generate tab's transcript.

Text arrives as pieces (tokens), each with a probability, or marked as the user's words,
template text or a label (see USER, TEMPLATE, MODEL, LABEL). The view keeps
logical lines (split at newlines) and their soft-wrapped rows; appending a piece
re-wraps only the last row of the last line (greedy word wrap never moves an
earlier row when text is added at the end), so streaming costs the same per token
however long the output grows, and only the rows that changed are repainted.

With `confidence` on, each token is coloured by its probability, in colours of the
app's theme (see tui.palette; a theme change recolours the view). Rows are wrapped
by terminal cells, so wide characters (CJK, emoji) take two. The view follows the
end while the user is at the bottom and stays put once they scroll up.

Cheap to stream into: a change of virtual size makes Textual lay out the whole
screen, so while text streams the virtual height grows a few screenfuls at a time
(the blank headroom is trimmed by `settle()` when the stream ends), and finished rows
are cached as strips cut to the view's width.
"""

from __future__ import annotations

import re
import time
from bisect import bisect_right
from dataclasses import dataclass, field

from rich.cells import cell_len, get_character_cell_size
from rich.segment import Segment
from rich.style import Style
from textual.cache import LRUCache
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from minigpt_tui.tui.palette import colour

try:  # rich >= 15 measures graphemes (an emoji with modifiers is one); older rich, characters
    from rich.cells import split_graphemes
except ImportError:  # pragma: no cover - depends on the installed rich
    split_graphemes = None

FOLLOW_HZ = 8
# What a piece is, besides a model token with its probability (a float):
USER = None  # the user's words (bold)
TEMPLATE = "template"  # text a chat template added (a speaker tag, a blank line): dimmed
MODEL = "model"  # model text without a probability (a reply redrawn from a saved conversation)
LABEL = "label"  # a marker such as a reply's "‹2/3›": drawn, dimmed, but not part of `text`
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # everything but \n shows as a space

# Probability thresholds and palette roles for confidence mode (low -> high).
CONFIDENCE_LEVELS: list[tuple[float, str, str]] = [
    (0.10, "confidence-0", "< 10%"),
    (0.30, "confidence-1", "10-30%"),
    (0.60, "confidence-2", "30-60%"),
    (1.01, "confidence-3", ">= 60%"),
]


def confidence_level(prob: float) -> int:
    """The index in CONFIDENCE_LEVELS of a probability."""
    for i, (limit, _, _) in enumerate(CONFIDENCE_LEVELS):
        if prob < limit:
            return i
    return len(CONFIDENCE_LEVELS) - 1


def confidence_role(prob: float) -> str:
    """The palette role (see tui.palette) that colours a token of this probability."""
    return CONFIDENCE_LEVELS[confidence_level(prob)][1]


@dataclass
class _Line:
    text: str = ""
    starts: list[int] = field(default_factory=list)  # offset of each span in text
    probs: list[float | str | None] = field(default_factory=list)  # see USER, TEMPLATE, MODEL, LABEL
    rows: list[int] = field(default_factory=lambda: [0])  # offset where each wrapped row starts


def wrap_rows(text: str, start: int, width: int) -> list[int]:
    """Row start offsets for text[start:] wrapped greedily at spaces into `width` terminal cells.

    A wide character (CJK, emoji) takes two cells, and a character is never split from
    what joins it (an emoji and its modifiers); one wider than a whole row gets a row
    of its own (cropped when drawn). Greedy: appending text never moves an earlier row.
    """
    width = max(1, width)
    if text[start:].isascii():
        return _wrap_narrow(text, start, width)
    units = _cell_units(text[start:])  # (offset, cells) of each grapheme
    rows = [start]
    i, n = 0, len(units)
    while True:
        cells, j = 0, i
        while j < n and cells + units[j][1] <= width:
            cells += units[j][1]
            j += 1
        j = max(j, i + 1)  # a grapheme wider than the row: alone on it
        if j >= n:
            return rows
        # Break after the row's last space: the first grapheme that does not fit counts (the space
        # at a break is not drawn); the row's first does not (that would leave the row empty).
        k = next((k for k in range(j, i, -1) if text[start + units[k][0]] == " "), None)
        i = j if k is None else k + 1
        if i >= n:  # the break space was the last character: an empty row follows, as in narrow text
            rows.append(len(text))
            return rows
        rows.append(start + units[i][0])


def _wrap_narrow(text: str, start: int, width: int) -> list[int]:
    """wrap_rows for text of one cell per character (ASCII, the common case): offsets are cells."""
    rows = [start]
    pos, n = start, len(text)
    while n - pos > width:
        cut = text.rfind(" ", pos + 1, pos + width + 1)
        pos = pos + width if cut <= pos else cut + 1  # the space at a break is not drawn
        rows.append(pos)
    return rows


def _cell_units(text: str) -> list[tuple[int, int]]:
    """(offset, width in cells) of each grapheme of `text` (each character with an older rich)."""
    if split_graphemes is not None:
        return [(s, w) for s, _, w in split_graphemes(text)[0]]
    return [(i, get_character_cell_size(c)) for i, c in enumerate(text)]


class StreamView(ScrollView, can_focus=True):
    """Append-only text with soft wrapping, optional per-token colouring and follow-the-end."""

    DEFAULT_CSS = """
    StreamView {
        background: $surface;
        color: $text;
        scrollbar-gutter: stable;
        overflow-y: scroll;
        overflow-x: hidden;
        padding: 0 1;
    }
    """

    confidence = reactive(False)

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._parts: list[str] = []
        self._text_cache: str | None = ""
        self._lines: list[_Line] = [_Line()]
        self._row_index: list[tuple[int, int]] = [(0, 0)]  # visual row -> (line, row within line)
        self._wrap_width = 0
        self._virtual_rows = 1  # >= the rows there are: headroom while streaming
        self._cache: LRUCache[tuple[int, int], Strip] = LRUCache(2048)
        self.appends = 0  # calls to append_many (tests check the drain batches tokens)
        self.layouts = 0  # virtual-size changes (each costs a screen layout)
        self.scrolls = 0  # follow-the-end scrolls (each repaints the whole view)
        self._last_follow = 0.0
        self._follow_pending = False  # the end is below the view, to be scrolled to soon
        self._level_colours: list[Style] | None = None  # CONFIDENCE_LEVELS in the theme's colours

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)

    def _theme_changed(self, _theme) -> None:
        self._level_colours = None
        self._cache.clear()
        self.refresh()

    # ---- content ----------------------------------------------------------------------------
    @property
    def text(self) -> str:
        """Everything appended, exactly."""
        if self._text_cache is None:
            self._text_cache = "".join(self._parts)
        return self._text_cache

    def rendered_text(self) -> str:
        """The text as the view holds it for drawing (lines joined by newlines)."""
        return "\n".join(line.text for line in self._lines)

    def clear(self) -> None:
        self._parts.clear()
        self._text_cache = ""
        self._lines = [_Line()]
        self._row_index = [(0, 0)]
        self._cache.clear()
        self._virtual_rows = 1
        self._follow_pending = False
        self._set_virtual(self._wrap_width or self._content_width(), 1)
        self.scroll_to(0, 0, animate=False)
        self.refresh()

    def append(self, text: str, prob: float | None = None) -> None:
        self.append_many([(text, prob)])

    def append_many(self, pieces: list[tuple[str, float | str | None]]) -> None:
        """Append pieces (text, a probability or one of USER, TEMPLATE, MODEL, LABEL) in one repaint."""
        if not pieces:
            return
        self.appends += 1
        follow = self._at_end()
        first_line = len(self._lines) - 1
        lines = self._lines
        for text, prob in pieces:
            if not text:
                continue
            if prob != LABEL:
                self._parts.append(text)
            clean = _CONTROL.sub(" ", text)
            segments = clean.split("\n")
            for i, seg in enumerate(segments):
                if i:
                    lines.append(_Line())
                if seg:
                    line = lines[-1]
                    line.starts.append(len(line.text))
                    line.probs.append(prob)
                    line.text += seg
        self._text_cache = None
        self._rewrap_from(first_line, headroom=True)
        if follow:
            self._follow()

    def settle(self) -> None:
        """The stream has ended: drop the blank headroom below the last row."""
        follow = self._at_end()
        self._virtual_rows = len(self._row_index)
        self._set_virtual(self._wrap_width or self._content_width(), self._virtual_rows)
        if follow:
            self.call_after_refresh(self._follow_now)

    def _follow(self) -> None:
        """Keep the last row in view. A scroll repaints the whole view, so while text streams in
        it happens at most FOLLOW_HZ times a second, and only as part of an append (no frame of its
        own); `settle()` makes the final one when the stream ends."""
        if self._end_y() == self.scroll_offset.y:
            return
        if time.monotonic() - self._last_follow >= 1.0 / FOLLOW_HZ:
            self._follow_now()
        else:
            self._follow_pending = True

    def _follow_now(self) -> None:
        self._follow_pending = False
        y = self._end_y()
        if y != self.scroll_offset.y:
            self._last_follow = time.monotonic()
            self.scrolls += 1
            self.scroll_to(y=y, animate=False, immediate=True)

    def _end_y(self) -> int:
        """The scroll offset that shows the last row at the bottom."""
        return max(0, len(self._row_index) - self.scrollable_content_region.height)

    def _set_virtual(self, width: int, rows: int) -> None:
        size = Size(width, rows)
        if self.virtual_size != size:
            self.layouts += 1
            self.virtual_size = size

    # ---- wrapping -----------------------------------------------------------------------------
    def _content_width(self) -> int:
        return max(1, self.scrollable_content_region.width)

    def _rewrap_from(self, first_line: int, headroom: bool = False) -> None:
        """Re-wrap lines from `first_line` on (its kept rows stay), update rows and repaint them."""
        width = self._wrap_width or self._content_width()
        self._wrap_width = width
        lines = self._lines
        first = lines[first_line]
        keep = len(first.rows) - 1  # rows of the old last line before its last row are final
        first.rows = first.rows[:keep] + wrap_rows(first.text, first.rows[keep], width)
        for line in lines[first_line + 1 :]:
            line.rows = wrap_rows(line.text, 0, width)
        # Drop the visual rows of first_line onwards and rebuild them.
        index = self._row_index
        start_row = len(index)
        while start_row and index[start_row - 1][0] >= first_line:
            start_row -= 1
        del index[start_row:]
        for li in range(first_line, len(lines)):
            index.extend((li, r) for r in range(len(lines[li].rows)))
        width_now = self.scrollable_content_region.width
        for y in range(start_row, len(index)):
            self._cache.discard((y, width_now))
        if len(index) > self._virtual_rows or not headroom:
            room = max(64, 3 * self.scrollable_content_region.height) if headroom else 0
            self._virtual_rows = len(index) + room
        self._set_virtual(width, self._virtual_rows)
        self.refresh_lines(start_row, len(index) - start_row)

    def _rewrap_all(self) -> None:
        self._wrap_width = self._content_width()
        for line in self._lines:
            line.rows = wrap_rows(line.text, 0, self._wrap_width)
        self._row_index = [(li, r) for li, line in enumerate(self._lines) for r in range(len(line.rows))]
        self._cache.clear()
        self._virtual_rows = len(self._row_index)
        self._set_virtual(self._wrap_width, self._virtual_rows)
        self.refresh()

    def on_resize(self) -> None:
        if self._content_width() != self._wrap_width:
            follow = self._at_end()
            self._rewrap_all()
            if follow:
                self.call_after_refresh(self._follow_now)

    def _at_end(self) -> bool:
        """Is the user following the end (or is a follow scroll on its way)?"""
        if self.is_vertical_scrollbar_grabbed:
            return False
        return self._follow_pending or self.scroll_offset.y >= self._end_y() - 1

    def watch_confidence(self) -> None:
        self._cache.clear()
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cache.clear()

    # ---- drawing --------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        row = self.scroll_offset.y + y
        width = self.scrollable_content_region.width
        base = self.rich_style
        if row >= len(self._row_index):
            return Strip.blank(width, base)
        key = (row, width)
        strip = self._cache.get(key)
        if strip is None:
            strip = self._render_row(row, base).crop_extend(0, width, base)
            self._cache[key] = strip
        return strip

    def _render_row(self, row: int, base: Style) -> Strip:
        li, r = self._row_index[row]
        line = self._lines[li]
        start = line.rows[r]
        end = line.rows[r + 1] if r + 1 < len(line.rows) else len(line.text)
        text = line.text
        if end > start and text[end - 1] == " " and r + 1 < len(line.rows):
            end -= 1  # the break space
        segments: list[Segment] = []
        bold = base + Style(bold=True)
        dim = base + Style(dim=True, italic=True)
        i = max(0, bisect_right(line.starts, start) - 1)
        pos = start
        levels = self._confidence_colours() if self.confidence else None
        while pos < end and i < len(line.starts):
            span_end = line.starts[i + 1] if i + 1 < len(line.starts) else len(text)
            stop = min(span_end, end)
            if stop > pos:
                prob = line.probs[i]
                if prob is None:
                    style = bold
                elif prob == MODEL:
                    style = base
                elif isinstance(prob, str):  # TEMPLATE, LABEL
                    style = dim
                elif levels:
                    style = base + levels[confidence_level(prob)]
                else:
                    style = base
                segments.append(Segment(text[pos:stop], style))
            pos = max(pos, stop)
            i += 1
        return Strip(segments, sum(cell_len(seg.text) for seg in segments))

    def _confidence_colours(self) -> list[Style]:
        """The Style of each confidence level, read from the theme once per theme (rows are drawn often)."""
        if self._level_colours is None:
            self._level_colours = [Style(color=colour(self.app, role)) for _, role, _ in CONFIDENCE_LEVELS]
        return self._level_colours
