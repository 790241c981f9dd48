"""A conversation as data: turns in a tree, saved as JSON in the run's folder, exported as text.

Each turn is the user's text or the model's, with a parent. The conversation shown
is the path from the first turn to `current`; regenerating a reply adds a sibling
under the same user turn, so the old reply stays (Loom-style: nothing is thrown
away until the user undoes it). Template text the chat added around a turn (a
speaker tag, a blank line) is kept apart from the words in `prefix`/`suffix`, so a
transcript can show it dimmed and exports can leave it out or keep it.

`ids` are the tokens the model read for the turn (prefix, words and suffix) or
wrote; a reopened conversation feeds them back so the model sees exactly what it
saw (word-level text does not always re-tokenize to the same tokens).

Files: <run>/conversations/<id>.json, written atomically (core.fsutil), listed
newest first by `list_conversations` reading only the small JSON files.
Torch-free: the app lists and exports conversations without loading a model.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from minigpt_tui.core import fsutil
from minigpt_tui.core.runs.run_dir import RunDir

FORMAT = 1
MODES = ("cowrite", "dialogue", "instruct")
MODE_NAMES = {"cowrite": "co-write", "dialogue": "dialogue", "instruct": "instruct"}


class ConversationError(ValueError):
    """A conversation file that cannot be read or written; str(err) is one sentence."""


@dataclass
class Turn:
    id: int
    role: str  # "user" | "model"
    text: str = ""  # the words typed, or the words the model wrote
    parent: int | None = None
    prefix: str = ""  # template text added before the words (shown dimmed)
    suffix: str = ""  # template text added after them
    ids: list[int] = field(default_factory=list)  # the tokens the model read or wrote for this turn
    finish: str = ""  # model turns: "stop", "length", "cancelled"
    speaker: str = ""  # dialogue: who speaks (the names of the template at the time)
    created: float = 0.0

    @property
    def full(self) -> str:
        """What the turn adds to the document the model reads."""
        return self.prefix + self.text + self.suffix


@dataclass
class Conversation:
    id: str = ""
    run: str = ""  # the run's name when it was made
    mode: str = "cowrite"
    created: float = 0.0
    updated: float = 0.0
    turns: dict[int, Turn] = field(default_factory=dict)
    current: int | None = None  # the last turn of the path shown (None: empty)

    def __post_init__(self) -> None:
        now = time.time()
        self.created = self.created or now
        self.updated = self.updated or self.created
        if not self.id:
            stamp = datetime.fromtimestamp(self.created).strftime("%Y%m%d-%H%M%S")
            self.id = f"{stamp}-{secrets.token_hex(2)}"  # two made in one second still differ

    # ---- the tree -------------------------------------------------------------------------------
    def path(self, leaf: int | None = ...) -> list[Turn]:  # type: ignore[assignment]
        """The turns from the first to `leaf` (default: current), in order."""
        node = self.current if leaf is ... else leaf
        out = []
        while node is not None:
            turn = self.turns[node]
            out.append(turn)
            node = turn.parent
        return out[::-1]

    def children(self, parent: int | None) -> list[Turn]:
        return [t for t in self.turns.values() if t.parent == parent]

    def siblings(self, turn: Turn) -> list[Turn]:
        """The turns that answer the same parent in the same role (regenerated replies), oldest first."""
        return [t for t in self.children(turn.parent) if t.role == turn.role]

    def add(self, role: str, text: str = "", *, parent: int | None = ..., prefix: str = "",  # type: ignore[assignment]
            suffix: str = "", ids: list[int] | None = None, speaker: str = "") -> Turn:
        """A new turn under `parent` (default: current); it becomes current."""
        parent = self.current if parent is ... else parent
        turn = Turn(max(self.turns, default=0) + 1, role, text, parent, prefix, suffix, list(ids or []),
                    speaker=speaker, created=time.time())
        self.turns[turn.id] = turn
        self.current = turn.id
        self.updated = turn.created
        return turn

    def remove(self, turn_id: int) -> None:
        """Remove a turn and everything under it; current moves to its parent if it was inside."""
        doomed = {turn_id}
        changed = True
        while changed:
            extra = {t.id for t in self.turns.values() if t.parent in doomed} - doomed
            changed = bool(extra)
            doomed |= extra
        parent = self.turns[turn_id].parent
        if self.current in doomed:
            self.current = parent
        for i in doomed:
            del self.turns[i]
        self.updated = time.time()

    def latest_leaf(self, turn: Turn) -> Turn:
        """Follow the newest child down from `turn` (what flipping to a branch shows)."""
        while True:
            kids = self.children(turn.id)
            if not kids:
                return turn
            turn = kids[-1]

    def sibling_position(self, turn: Turn) -> tuple[int, int]:
        """(1-based index, count) of `turn` among its siblings: "2/3"."""
        sibs = self.siblings(turn)
        return sibs.index(turn) + 1, len(sibs)

    # ---- as text ------------------------------------------------------------------------------
    def text(self) -> str:
        """The document the model reads: every turn of the path with its template text."""
        return "".join(t.full for t in self.path())

    @property
    def title(self) -> str:
        first = next((t.text for t in self.path() if t.role == "user" and t.text.strip()), "")
        first = " ".join(first.split())
        return first if len(first) <= 48 else first[:47] + "…"

    def to_text(self) -> str:
        """Plain text export: the document as the model read it."""
        return self.text()

    def to_markdown(self) -> str:
        """Markdown export: one labelled section per turn of the path, texts kept exactly (fenced)."""
        when = datetime.fromtimestamp(self.created).strftime("%Y-%m-%d %H:%M")
        out = [f"# {self.title or 'Conversation'}", "",
               f"_{MODE_NAMES.get(self.mode, self.mode)} with {self.run or 'a model'}, {when}_", ""]
        for turn in self.path():
            who = turn.speaker or ("You" if turn.role == "user" else "Model")
            label = f"**{who}**" + ("" if turn.role == "user" else " (model)" if turn.speaker else "")
            i, n = self.sibling_position(turn)
            if n > 1:
                label += f" — version {i} of {n}"
            fence = "```"
            while fence in turn.text:
                fence += "`"
            out += [label, "", f"{fence}text", turn.text.strip("\n"), fence, ""]
        return "\n".join(out)

    # ---- JSON ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "id": self.id, "run": self.run, "mode": self.mode, "created": self.created,
                "updated": self.updated, "current": self.current, "title": self.title,
                "turns": [asdict(t) for t in self.turns.values()]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1)

    @classmethod
    def from_dict(cls, raw: dict) -> "Conversation":
        try:
            turns = {}
            for t in raw["turns"]:
                turn = Turn(**{k: t[k] for k in Turn.__dataclass_fields__ if k in t})
                if turn.role not in ("user", "model") or not isinstance(turn.text, str) or \
                        not all(isinstance(i, int) for i in turn.ids):
                    raise ValueError
                turns[int(turn.id)] = turn
            conv = cls(id=str(raw["id"]), run=str(raw.get("run", "")), mode=str(raw.get("mode", "cowrite")),
                       created=float(raw.get("created", 0)), updated=float(raw.get("updated", 0)), turns=turns,
                       current=raw.get("current"))
            if conv.current is not None and conv.current not in turns or \
                    any(t.parent is not None and t.parent not in turns for t in turns.values()):
                raise ValueError
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ConversationError("not a minigpt-tui conversation") from None
        if conv.mode not in MODES:
            conv.mode = "cowrite"
        return conv


# ---- files ------------------------------------------------------------------------------------------


def save_conversation(conv: Conversation, run_dir: Path) -> Path:
    """Write <run>/conversations/<id>.json atomically; ConversationError (one sentence) on failure."""
    folder = RunDir(run_dir).conversations_dir
    path = folder / f"{conv.id}.json"
    try:
        folder.mkdir(exist_ok=True)
        fsutil.atomic_write_text(path, conv.to_json())
    except OSError as err:
        raise ConversationError(f"Could not save the conversation to {path} ({err.strerror or err}).") from None
    return path


def load_conversation(path: Path) -> Conversation:
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError
        return Conversation.from_dict(raw)
    except FileNotFoundError:
        raise ConversationError(f"Conversation file {path} does not exist.") from None
    except (OSError, ValueError, UnicodeDecodeError):
        raise ConversationError(f"Conversation file {path} is unreadable or damaged.") from None


@dataclass
class ConversationInfo:
    """A row of the list of saved conversations."""

    id: str
    path: Path
    title: str
    updated: float
    turns: int
    mode: str

    @property
    def date(self) -> str:
        return datetime.fromtimestamp(self.updated).strftime("%Y-%m-%d %H:%M")


def list_conversations(run_dir: Path) -> list[ConversationInfo]:
    """The run's saved conversations, newest first (damaged files are skipped)."""
    out = []
    for path in RunDir(run_dir).conversations_dir.glob("*.json"):
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            out.append(ConversationInfo(str(raw["id"]), path, str(raw.get("title") or "(empty)"),
                                        float(raw.get("updated", 0)), len(raw.get("turns", [])),
                                        str(raw.get("mode", "cowrite"))))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return sorted(out, key=lambda c: c.updated, reverse=True)


EXPORT_FORMATS = {".md": "markdown", ".markdown": "markdown", ".txt": "text"}


def export_conversation(conv: Conversation, path: Path) -> str:
    """Write the conversation to `path`: Markdown for .md, plain text otherwise. Returns the format."""
    path = Path(path).expanduser()
    kind = EXPORT_FORMATS.get(path.suffix.lower(), "text")
    text = conv.to_markdown() if kind == "markdown" else conv.to_text()
    if path.is_dir():
        raise ConversationError(f"{path} is a folder; give a file name such as {path / 'chat.md'}.")
    if not path.parent.is_dir():
        raise ConversationError(f"Folder {path.parent} does not exist; create it or choose another path.")
    try:
        fsutil.atomic_write_text(path, text if text.endswith("\n") else text + "\n")
    except OSError as err:
        raise ConversationError(f"Could not write {path} ({err.strerror or err}).") from None
    return kind
