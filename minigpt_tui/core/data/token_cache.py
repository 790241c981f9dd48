"""The token cache: each split of a corpus tokenized once, into a flat file of token ids that
training, resuming and evaluation map into memory instead of tokenizing again.

Where: paths.cache_dir() / "tokens" (and "tokenizers"); everything there can be deleted at any
time and is rebuilt when needed. A file holds the ids of one split as the smallest unsigned
integer type that holds the vocabulary (uint8, int16 or int32), next to a small JSON meta
(dtype, number of tokens, the split's characters). Its name is a digest of what fixes its
content: the split's text (the source file's digest and the character range, corpus.Split),
the tokenizer's JSON, and FORMAT. A changed corpus has another digest, so another file.

Building streams the split's chunks through tokenizer.encode (any tokenizer with encode() and
to_json() works; char tokenizers take a vectorised path with identical ids) in constant
memory. It writes a temporary file, renames it into place and writes the meta last, so a kill
at any moment leaves nothing that looks usable; builders of the same file take turns under a
lock (flock), and the one that waited finds the file built. The tokenizer a new run trains is
cached the same way (keyed by the training split, tokenizer kind and vocab_size).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from minigpt_tui.core import fsutil, paths
from minigpt_tui.core.config import DataConfig
from minigpt_tui.core.data.corpus import Progress, Split, load_corpus
from minigpt_tui.core.data.tokenizer import Tokenizer, build_tokenizer, tokenizer_from_json
from minigpt_tui.core.errors import CorpusError, TokenizerError

FORMAT = 2  # of the files and of their keys; a change rebuilds every cache (2: int16/int32 ids)
SPLIT_WORDS = {"train": "training", "valid": "validation", "test": "test"}


@dataclass(frozen=True)
class CachedSplit:
    tokens: torch.Tensor  # 1-D, uint8/int16/int32, a view on the mapped file
    n_chars: int  # characters of the split's text (for bits per character)
    path: Path  # the token file


def tokens_dir() -> Path:
    return paths.cache_dir() / "tokens"


def tokenizers_dir() -> Path:
    return paths.cache_dir() / "tokenizers"


def dtype_for(vocab_size: int) -> np.dtype:
    """The smallest integer type that holds ids 0 .. vocab_size - 1 among those every torch >= 2.4
    indexes, compares and widens (uint16 and uint32 are bare storage types in older releases)."""
    for dtype in (np.uint8, np.int16, np.int32):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    raise ValueError(f"a vocabulary of {vocab_size} tokens is too large")


def split_tokens(data: DataConfig, tokenizer: Tokenizer, split: str,
                 progress: Progress | None = None) -> tuple[torch.Tensor, int]:
    """The token ids of one split ("train", "valid" or "test") of the corpus `data` names, as
    `tokenizer` encodes it, and the split's length in characters. Tokenized once, then mapped
    from the cache. CorpusError (one sentence) for a bad corpus or a split it does not have."""
    cached = cached_tokens(load_corpus(data, progress, check_all=False).split(split), tokenizer, progress)
    return cached.tokens, cached.n_chars


def cached_tokens(split: Split, tokenizer: Tokenizer, progress: Progress | None = None,
                  chunk_chars: int | None = None) -> CachedSplit:
    """The split's token ids, from the cache, tokenized into it first if needed."""
    key = _key({"format": FORMAT, "text": split.definition(), "tokenizer": tokenizer.to_json()})
    folder = tokens_dir()
    token_file, meta_file = folder / f"{key}.bin", folder / f"{key}.json"
    meta = _usable(token_file, meta_file)
    if meta is None:
        with _writing(folder), _locked(folder / f"{key}.lock"):
            meta = _usable(token_file, meta_file)  # built while this process waited?
            if meta is None:
                for leftover in folder.glob(f".{token_file.name}.*{fsutil.TEMP_SUFFIX}"):
                    leftover.unlink(missing_ok=True)  # a killed builder's (none runs: the lock is ours)
                meta = _build(split, tokenizer, token_file, progress, chunk_chars)
                fsutil.atomic_write_text(meta_file, json.dumps(meta))  # last: the file is now usable
    return CachedSplit(_map(token_file, meta), int(meta["n_chars"]), token_file)


@contextmanager
def _writing(folder: Path):
    """Writes into the cache `folder` (made if missing); a failed one (a full disk, no
    permission) is one sentence, not a traceback."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        yield
    except OSError as err:
        raise CorpusError(f"The token cache in {folder} cannot be written ({err.strerror or err}); free some "
                          f"disk space, or set MINIGPT_TUI_HOME to a folder that can hold it.",
                          "token cache not writable") from None


def cached_tokenizer(kind: str, vocab_size: int, train: Split, progress: Progress | None = None) -> Tokenizer:
    """The tokenizer build_tokenizer trains on the training split, trained once per text and settings."""
    key = _key({"format": FORMAT, "text": train.definition(), "kind": kind, "vocab_size": vocab_size})
    folder = tokenizers_dir()
    path = folder / f"{key}.json"
    found = _read_tokenizer(path)
    if found is not None:
        return found
    with _writing(folder), _locked(folder / f"{key}.lock"):
        found = _read_tokenizer(path)
        if found is not None:
            return found
        chunks = _reporting(train.chunks(), train.n_chars, progress, "Building the vocabulary")
        text = build_tokenizer(kind, chunks, vocab_size).to_json()
        fsutil.atomic_write_text(path, text)
    # As read back, so the token cache's key (the tokenizer's JSON) is the one later starts and
    # resumes compute from the run's tokenizer.json.
    return tokenizer_from_json(text, source=str(path))


# ---- building ---------------------------------------------------------------------------------


def _key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()[:40]


def _read_tokenizer(path: Path) -> Tokenizer | None:
    try:
        return tokenizer_from_json(path.read_text(encoding="utf-8"), source=str(path))
    except (OSError, UnicodeDecodeError, TokenizerError):  # none yet, or damaged: train it again
        return None


def _reporting(chunks: Iterable[str], total: int, progress: Progress | None, what: str) -> Iterator[str]:
    """The chunks, telling `progress` the fraction of `total` characters handed out so far."""
    done = 0
    for chunk in chunks:
        yield chunk
        done += len(chunk)
        if progress is not None:
            progress(what, done / total if total else 1.0)


def _build(split: Split, tokenizer: Tokenizer, token_file: Path, progress: Progress | None,
           chunk_chars: int | None) -> dict:
    """Tokenize the split into token_file (via a temporary file renamed into place); its meta."""
    dtype = dtype_for(tokenizer.vocab_size)
    encode = _encoder(tokenizer)
    what = f"Tokenizing the {SPLIT_WORDS.get(split.name, split.name)} text"
    n_tokens = n_chars = 0
    fd, tmp = tempfile.mkstemp(prefix=f".{token_file.name}.", suffix=fsutil.TEMP_SUFFIX, dir=token_file.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            chunks = split.chunks(chunk_chars)
            if getattr(tokenizer, "kind", "") in ("bpe", "hf"):  # (SentencePiece-style ones split there too)
                chunks = _bpe_cuts(chunks)
            for chunk in _reporting(chunks, split.n_chars, progress, what):
                ids = encode(chunk)
                f.write(ids.astype(dtype, copy=False).tobytes())
                n_tokens += int(ids.size)
                n_chars += len(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, token_file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"format": FORMAT, "dtype": dtype.name, "n_tokens": n_tokens, "n_chars": n_chars,
            "split": split.name, "text": split.definition(), "vocab_size": tokenizer.vocab_size}


# A cut between a non-space character and the space after it is always a boundary of GPT-2's
# pre-tokenizer (letters, digits and punctuation runs never take in whitespace, and a
# whitespace run is a piece of its own or the start of " word"), so BPE merges never cross it.
_BPE_SAFE_CUT = re.compile(r"\S(?=\s)")


def _bpe_cuts(chunks: Iterable[str], max_carry: int = 4) -> Iterator[str]:
    """The chunks re-cut where a byte-level BPE's pre-tokenizer always splits (after a
    non-space character that a space follows), so encoding them one by one gives the ids of
    encoding the whole text; a cut inside a run of whitespace could merge differently. Text
    with no such place for max_carry chunks (no whitespace at all) is cut where it was."""
    carry: list[str] = []
    for chunk in chunks:
        carry.append(chunk)
        cut = _last_safe_cut(chunk)
        if cut:
            carry[-1] = chunk[:cut]
            yield "".join(carry)
            carry = [chunk[cut:]]
        elif len(carry) >= max_carry:
            yield "".join(carry)
            carry = []
    if carry and any(carry):
        yield "".join(carry)


def _last_safe_cut(chunk: str, window: int = 4096) -> int:
    """The position after the chunk's last non-space character that a space follows, or 0."""
    for start in (max(0, len(chunk) - window), 0):
        found = 0
        for found_match in _BPE_SAFE_CUT.finditer(chunk, start):
            found = found_match.end()
        if found or start == 0:
            return found
    return 0


def _encoder(tokenizer: Tokenizer) -> Callable[[str], np.ndarray]:
    """text -> its ids as an array: tokenizer.encode, or for characters a lookup table by code
    point that gives the same ids (tens of times faster than a Python loop per character)."""
    if getattr(tokenizer, "kind", "") != "char":
        return lambda text: np.asarray(tokenizer.encode(text), dtype=np.int64)
    points = {ord(sym): i for i, sym in enumerate(tokenizer.itos) if len(sym) == 1}
    table = np.zeros(max(points, default=0) + 2, dtype=np.int64)  # the last slot: unknown (0)
    for point, i in points.items():
        table[point] = i

    def encode(text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        return table[np.minimum(codes, len(table) - 1)]

    return encode


# ---- reading ----------------------------------------------------------------------------------


def _usable(token_file: Path, meta_file: Path) -> dict | None:
    """The meta of a complete token file, or None (missing, half-written or of another format)."""
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        dtype = np.dtype(meta["dtype"])
        ok = (meta["format"] == FORMAT and token_file.stat().st_size == int(meta["n_tokens"]) * dtype.itemsize)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return meta if ok else None


def _map(token_file: Path, meta: dict) -> torch.Tensor:
    """The file as a 1-D tensor on a private mapping: pages are read as batches touch them, and
    the memory is the page cache's, shared with other processes mapping the same file."""
    dtype = np.dtype(meta["dtype"])
    n = int(meta["n_tokens"])
    if n == 0:
        return torch.from_numpy(np.zeros(0, dtype=dtype))
    return torch.from_numpy(np.memmap(token_file, dtype=dtype, mode="c", shape=(n,)))


@contextmanager
def _locked(path: Path):
    """An exclusive flock on `path` while the block runs (waits for the holder); where there is
    no flock, none (concurrent builders then both build, and the renames keep one whole file)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without locks
            pass
        yield
    finally:
        os.close(fd)
