"""Three ways to talk to a model, and the template that says how: two for a model that was never
taught to chat, one for a model that ships a chat template of its own.

co-write   the user's text and the model's form one document: the model continues
           after whatever the user adds (the natural mode for the Bible or for prose).
dialogue   the user speaks as one speaker and the model answers as another, in the
           corpus's own format. For tiny Shakespeare that is a speaker line, the
           speech and a blank line:

               ROMEO:
               What light through yonder window breaks?

               JULIET:
               ...

           so a user turn adds "ROMEO:\\n" before the words and the blank line after,
           the reply starts after "JULIET:\\n" and ends at the next blank line or
           speaker tag (stop strings). Text without speaker lines (the Bible) gets an
           inline format, "You: ...\\nModel: ...", one line a turn.

instruct   a model tuned to chat (an imported one whose tokenizer has a chat template):
           the conversation is rendered by the model's own template each turn
           (core.generation.instruct), after an optional system prompt.

The template is those few strings, with {user} and {model} standing for the names;
it is visible (the chat shows what it adds, dimmed), editable, and remembered per
run in <run>/chat.json. Speaker names are found by a cheap scan of the corpus's
first megabytes (or the samples the trainer wrote) for `NAME:` lines; only names
the run's vocabulary can spell are offered.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from minigpt_tui.core import fsutil
from minigpt_tui.core.generation.conversation import MODE_NAMES, MODES
from minigpt_tui.core.runs.run_dir import RunDir

SCAN_BYTES = 2_000_000
NAME = r"[A-Z][A-Za-z'.-]*(?: [A-Za-z'.-]+){0,2}"  # "ROMEO", "First Citizen", "LADY CAPULET"
_BLOCK = re.compile(rf"^({NAME}):[ \t]*$", re.M)  # a speaker line of its own, the speech below
_INLINE = re.compile(rf"^({NAME}): \S", re.M)  # "NAME: speech" on one line
MIN_LINES = 3  # a name must open at least this many speeches to count
EDITABLE = ("user", "model", "user_tag", "model_tag", "separator", "stops")  # dialogue's fields


class TemplateError(ValueError):
    """A template value that cannot be used; str(err) is one sentence."""


@dataclass
class ChatTemplate:
    mode: str = "cowrite"
    user: str = "You"
    model: str = "Model"
    user_tag: str = "{user}: "  # before the user's words (dialogue)
    model_tag: str = "{model}: "  # before the model's reply (dialogue)
    separator: str = "\n"  # between speeches (dialogue)
    stops: list[str] = field(default_factory=lambda: ["\n"])  # end the model's turn (dialogue)
    system: str = ""  # the system prompt (instruct; none when empty)

    def fill(self, text: str) -> str:
        return text.replace("{user}", self.user).replace("{model}", self.model)

    # ---- what a turn adds ----------------------------------------------------------------------
    def user_turn(self, document: str, words: str, word_level: bool = False) -> tuple[str, str]:
        """(prefix, suffix) the chat adds around the user's words, given the document so far."""
        if self.mode != "dialogue":
            # Co-write joins texts as they are; word-level text needs a space between words.
            joined = word_level and document and words and not document[-1].isspace() and not words[0].isspace()
            return (" " if joined else ""), ""
        tag = self.fill(self.user_tag)
        spoken = tag.rstrip()  # "ROMEO:"
        if document and spoken and document.endswith("\n" + spoken):
            prefix = tag[len(spoken):]  # the last reply stopped at the user's speaker tag: complete it
        else:
            prefix = missing(document, (self.separator if document else "") + tag)
        return prefix, missing(document + prefix + words, self.separator)

    def model_prefix(self, document: str) -> str:
        """What the chat adds before the model's reply (dialogue: the model's speaker tag)."""
        if self.mode != "dialogue":
            return ""
        return missing(document, self.fill(self.model_tag))

    def reply_stops(self) -> list[str]:
        return [self.fill(s) for s in self.stops if s] if self.mode == "dialogue" else []

    def describe(self) -> str:
        """One line for a status bar: the mode, and in dialogue who speaks and what ends a reply."""
        if self.mode == "instruct":
            system = f"system prompt {shown(short(self.system))}" if self.system else "no system prompt"
            return f"instruct: the model's chat template, {system}"
        if self.mode != "dialogue":
            return f"{MODE_NAMES['cowrite']}: the model continues the document"
        stops = " or ".join(shown(s) for s in self.reply_stops()) or "length"
        return f"dialogue: you are {self.user}, the model {self.model}; a reply ends at {stops}"

    # ---- editing and files ---------------------------------------------------------------------
    def set(self, name: str, value: str | list[str]) -> None:
        """Change one field (the REPL's /template, the app's editor); TemplateError if it cannot be."""
        if name == "mode":
            if value not in MODES:
                raise TemplateError(f"The mode must be one of {', '.join(MODES)}, got {value!r}.")
        elif name == "system":
            value = unescape(str(value)).strip()
        elif name not in EDITABLE:
            raise TemplateError(f"The template has no field {name!r}; it has {', '.join(EDITABLE)} and system.")
        elif name == "stops":
            value = [value] if isinstance(value, str) else list(value)
            value = [unescape(v) for v in value if v]
        elif name in ("user", "model"):
            value = " ".join(str(value).split())
            if not value or ":" in value:
                raise TemplateError(f"A speaker name must be non-empty and without ':', got {value!r}.")
        else:
            value = unescape(str(value))
        setattr(self, name, value)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> "ChatTemplate":
        out = cls()
        for f in fields(cls):
            value = raw.get(f.name)
            if f.name == "stops":
                if isinstance(value, list) and all(isinstance(v, str) for v in value):
                    out.stops = value
            elif isinstance(value, str):
                setattr(out, f.name, value)
        if out.mode not in MODES:
            out.mode = "cowrite"
        return out


def missing(document: str, wanted: str) -> str:
    """The part of `wanted` the document does not already end with: after a reply that
    stopped at a blank line, a separator of a blank line adds nothing more."""
    for k in range(min(len(wanted), len(document)), 0, -1):
        if document.endswith(wanted[:k]):
            return wanted[k:]
    return wanted


def short(text: str, width: int = 40) -> str:
    """A long text cut to `width` characters for a one-line summary."""
    return text if len(text) <= width else text[: width - 1] + "…"


def shown(text: str) -> str:
    """A template string as a person reads it: newlines as \\n, quoted."""
    return '"' + text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t") + '"'


def unescape(text: str) -> str:
    """\\n and \\t typed in a command or a field mean a newline and a tab."""
    return re.sub(r"\\([nt\\])", lambda m: {"n": "\n", "t": "\t", "\\": "\\"}[m.group(1)], text)


# ---- speakers -----------------------------------------------------------------------------------------


def find_speakers(text: str, limit: int = 12) -> tuple[list[str], str]:
    """Speaker names of `text` by how many speeches they open, and the style: "block" (a
    name line, the speech below), "inline" ("NAME: speech") or "" (none found)."""
    block = Counter(_BLOCK.findall(text))
    inline = Counter(_INLINE.findall(text))
    counts, style = (block, "block") if sum(block.values()) >= sum(inline.values()) else (inline, "inline")
    names = [n for n, c in counts.most_common() if c >= MIN_LINES][:limit]
    return names, (style if names else "")


def speaker_text(run_dir: Path) -> str:
    """Text to look for speakers in: the start of the run's corpus, else its training samples."""
    run = RunDir(run_dir)
    path = run.data_path()  # (as written: a config.toml that is not whole still names its corpus)
    candidates = []
    if path:
        from minigpt_tui.core.data import catalogue  # (imports torch-free modules only)
        from minigpt_tui.core.errors import CorpusError

        try:
            path = catalogue.resolve(path)  # "tiny-shakespeare" -> its downloaded file
        except CorpusError:  # a catalogue corpus not downloaded (any more): the samples will do
            path = ""
    if path:
        p = Path(path).expanduser()
        candidates = [p] if p.is_file() else [p / n for n in ("wiki.train.tokens", "wiki.train.raw", "train.txt")]
    for candidate in candidates:
        try:
            with open(candidate, "rb") as f:
                return f.read(SCAN_BYTES).decode("utf-8", errors="replace")
        except OSError:
            continue
    samples = []
    try:
        for line in run.events_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if '"sample"' in line:
                try:
                    samples.append(json.loads(line).get("text", ""))
                except ValueError:
                    continue
    except OSError:
        pass
    return "\n".join(s for s in samples if isinstance(s, str))


def spellable(names: list[str], tokenizer) -> list[str]:
    """The names the vocabulary can write (a word-level vocabulary needs "NAME:" as a word)."""
    if tokenizer is None or tokenizer.kind == "bpe":  # bytes spell anything
        return names
    if tokenizer.kind == "word":
        return [n for n in names if all(w in tokenizer.stoi for w in f"{n}:".split())]
    return [n for n in names if all(c in tokenizer.stoi for c in f"{n}:")]


def default_template(names: list[str], style: str) -> ChatTemplate:
    """Dialogue between the two most frequent speakers in the corpus's own format."""
    t = ChatTemplate()
    if len(names) >= 2:
        t.user, t.model = names[0], names[1]
    if style == "block":
        t.user_tag, t.model_tag, t.separator = "{user}:\n", "{model}:\n", "\n\n"
        t.stops = ["\n\n", "\n{user}:"]
    return t


def instruct_problem(tokenizer) -> str | None:
    """Why instruct mode cannot be used with this tokenizer (one sentence), or None."""
    if getattr(tokenizer, "chat_template", None):
        return None
    return "This run's model has no chat template, so instruct mode is not available; use cowrite or dialogue."


class RunChat:
    """A run's chat settings: its template (chat.json) and the speakers its corpus names. A run
    whose tokenizer has a chat template opens in instruct mode until another is chosen."""

    def __init__(self, run_dir: Path, tokenizer=None):
        self.run_dir = Path(run_dir)
        self.instruct = instruct_problem(tokenizer) is None
        names, self.style = find_speakers(speaker_text(self.run_dir))
        self.speakers = spellable(names, tokenizer)
        self.template = self.load()

    @property
    def modes(self) -> tuple[str, ...]:
        """The modes this run can chat in, in the order `m` cycles through them."""
        return MODES if self.instruct else tuple(m for m in MODES if m != "instruct")

    @property
    def path(self) -> Path:
        return RunDir(self.run_dir).chat_template_path

    def load(self) -> ChatTemplate:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(raw, dict):
                template = ChatTemplate.from_dict(raw)
                if template.mode == "instruct" and not self.instruct:
                    template.mode = "cowrite"
                return template
        except (OSError, ValueError):
            pass  # missing or damaged: the defaults (rewritten at the next change)
        template = default_template(self.speakers, self.style)
        if self.instruct:  # a model tuned to chat talks best in its own format
            template.mode = "instruct"
        return template

    def save(self) -> None:
        """Remember the template for this run; TemplateError (one sentence) if it cannot be written."""
        try:
            fsutil.atomic_write_text(self.path, json.dumps(self.template.to_dict(), ensure_ascii=False, indent=1))
        except OSError as err:
            raise TemplateError(f"Could not save the chat template to {self.path} ({err.strerror or err}).") from None
