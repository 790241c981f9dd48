"""The Tokenizer protocol every tokenizer satisfies, the character- and word-level tokenizers,
and reading any tokenizer back from its JSON (never pickled).

Three kinds: "char" and "word" (VocabTokenizer, here) and "bpe" (BPETokenizer, bpe_tokenizer.py).
tokenizer_from_json and load_tokenizer pick the class by the file's "kind".

Char and word tokenizers keep the most frequent symbols up to a cap; everything else maps
to <unk> (id 0). Characters decode by joining with ""; words by joining with " ", except
around newlines, which are tokens of their own so paragraphs survive.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Protocol, runtime_checkable

from minigpt_tui.core.errors import TokenizerError

UNK = "<unk>"
_WORDS = re.compile(r"\n|[^\s]+")


def unk_token_id(tokenizer) -> int | None:
    """The id of <unk> in a char or word vocabulary (always 0); None for a BPE (whose bytes cover
    every input) or an imported tokenizer."""
    return 0 if tokenizer.kind in ("char", "word") else None


@runtime_checkable
class StreamDecoder(Protocol):
    """Incremental decoding: feed(id) gives the text a token adds (possibly "", while a character
    is incomplete), flush() what is left at the end; together exactly decode() of the ids fed."""

    def feed(self, token_id: int) -> str: ...

    def flush(self) -> str: ...


@runtime_checkable
class Tokenizer(Protocol):
    """What every tokenizer offers (CharTokenizer, WordTokenizer, BPETokenizer), and all that
    training, sampling, chat and the token cache use of one."""

    kind: str  # "char" | "word" | "bpe" | "hf": the config's data.tokenizer, and "kind" in tokenizer.json
    itos: list[str]  # id -> display text of the token (a BPE token inside a character shows its bytes)
    stoi: dict[str, int]  # the tokens that are whole text -> id ("\n" starts an empty prompt)
    bos_ids: tuple[int, ...]  # put before a prompt (an imported model's BOS where it wants one)
    end_ids: frozenset[int]  # tokens that end a reply (an imported model's end of text / turn)

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def unknown_symbols(self, text: str) -> list[str]:
        """The distinct symbols of `text` the vocabulary lacks (for a warning)."""

    def stream_decoder(self, prev_id: int | None = None) -> StreamDecoder:
        """Incremental decoding (streaming uses only this); `prev_id` is the token before the
        first one fed (None at the start of the text)."""

    def to_json(self) -> str:
        """The tokenizer.json text, read back by tokenizer_from_json."""


class VocabTokenizer:
    """A vocabulary of whole symbols (characters or words) split by `split`; the base of
    CharTokenizer and WordTokenizer."""

    kind = ""
    joiner = ""
    bos_ids: tuple[int, ...] = ()
    end_ids: frozenset[int] = frozenset()

    def __init__(self, tokens: list[str]):
        if not tokens or tokens[0] != UNK:
            raise TokenizerError(f"a tokenizer vocabulary must start with {UNK}")
        self.itos = list(tokens)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise TokenizerError("a tokenizer vocabulary must not repeat a token")

    # ---- building -----------------------------------------------------------
    @classmethod
    def split(cls, text: str) -> list[str]:
        raise NotImplementedError

    @classmethod
    def train(cls, chunks: Iterable[str] | str, vocab_size: int = 0) -> "VocabTokenizer":
        """Keep the most frequent symbols (ties broken by the symbol), up to vocab_size with <unk>.
        `chunks`: the text, whole or in pieces that never cut a symbol (corpus.Split.chunks)."""
        counts: Counter = Counter()
        for chunk in [chunks] if isinstance(chunks, str) else chunks:
            counts.update(cls.split(chunk))
        counts.pop(UNK, None)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if vocab_size:
            ranked = ranked[: vocab_size - 1]
        # Sorted by symbol so ids are stable and readable; <unk> is always 0.
        return cls([UNK] + sorted(sym for sym, _ in ranked))

    # ---- use ------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        get = self.stoi.get
        return [get(sym, 0) for sym in self.split(text)]

    def unknown_symbols(self, text: str) -> list[str]:
        """The distinct symbols of `text` the vocabulary lacks (for a warning)."""
        seen = dict.fromkeys(s for s in self.split(text) if s not in self.stoi)
        return list(seen)

    def decode(self, ids: list[int]) -> str:
        return "".join(self.piece(i, prev) for prev, i in zip([None, *ids[:-1]], ids))

    def piece(self, token_id: int, prev_id: int | None) -> str:
        """The text one token adds after `prev_id` (None at the start): decoding incrementally
        piece by piece gives exactly decode() of the whole sequence."""
        return self.itos[token_id]

    def stream_decoder(self, prev_id: int | None = None) -> "VocabStreamDecoder":
        """Incremental decoding (see StreamDecoder): the pieces, each after the token before it."""
        return VocabStreamDecoder(self, prev_id)

    # ---- files ----------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "tokens": self.itos}, ensure_ascii=False)


class CharTokenizer(VocabTokenizer):
    kind = "char"
    joiner = ""

    @classmethod
    def split(cls, text: str) -> list[str]:
        return list(text)


class WordTokenizer(VocabTokenizer):
    """Words split at whitespace, case and punctuation kept; a newline is a token."""

    kind = "word"
    joiner = " "

    @classmethod
    def split(cls, text: str) -> list[str]:
        return _WORDS.findall(text)

    def piece(self, token_id: int, prev_id: int | None) -> str:
        tok = self.itos[token_id]
        if prev_id is None or tok == "\n" or self.itos[prev_id] == "\n":
            return tok
        return " " + tok


class VocabStreamDecoder:
    """A char or word tokenizer's incremental decoding: its pieces, with the previous token."""

    def __init__(self, tokenizer: VocabTokenizer, prev_id: int | None = None):
        self.tokenizer, self.prev = tokenizer, prev_id

    def feed(self, token_id: int) -> str:
        piece = self.tokenizer.piece(token_id, self.prev)
        self.prev = token_id
        return piece

    def flush(self) -> str:
        return ""  # a symbol is whole text: nothing is ever held back


def build_tokenizer(kind: str, chunks: Iterable[str] | str, vocab_size: int) -> Tokenizer:
    """A tokenizer of `kind` trained on the text (a string, or chunks of it)."""
    if kind == "bpe":
        from minigpt_tui.core.data.bpe_tokenizer import BPETokenizer  # (imports `tokenizers`: only when used)

        return BPETokenizer.train(chunks, vocab_size)
    klass = {"char": CharTokenizer, "word": WordTokenizer}[kind]
    return klass.train(chunks, vocab_size)


def tokenizer_from_json(text: str, source: str = "tokenizer") -> Tokenizer:
    """The tokenizer a to_json() text describes, of the class its "kind" names; TokenizerError
    (one sentence starting with `source`) when the text is not one."""
    try:
        raw = json.loads(text)
        kind = raw["kind"]
        if kind not in ("bpe", "hf"):
            klass, tokens = {"char": CharTokenizer, "word": WordTokenizer}[kind], raw["tokens"]
            if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                raise TypeError
    except (ValueError, KeyError, TypeError):
        raise TokenizerError(f"{source} is not a valid minigpt-tui tokenizer file.") from None
    try:
        if kind == "bpe":
            from minigpt_tui.core.data.bpe_tokenizer import BPETokenizer  # (imports `tokenizers`)

            return BPETokenizer.from_raw(raw)
        if kind == "hf":
            from minigpt_tui.core.data.pretrained_tokenizer import PretrainedTokenizer  # (imports `tokenizers`)

            return PretrainedTokenizer.from_raw(raw)
        return klass(tokens)
    except TokenizerError as err:
        raise TokenizerError(f"{source} is not a valid minigpt-tui tokenizer file ({err}).") from None


def load_tokenizer(path: Path) -> Tokenizer:
    """A tokenizer file (a run's tokenizer.json); TokenizerError, one sentence naming the file
    and what to do, when it is missing, unreadable or damaged."""
    path = Path(path)
    source = f"Tokenizer file {path}"
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise TokenizerError(f"{source} is missing; the run cannot be used without it.") from None
    except UnicodeDecodeError:
        raise TokenizerError(f"{source} is not UTF-8 text, so it is damaged; "
                             "restore it from a backup or train the run again.") from None
    except OSError as err:
        raise TokenizerError(f"{source} cannot be read ({err.strerror or err}).") from None
    try:
        return tokenizer_from_json(text, source=source)
    except TokenizerError:
        raise TokenizerError(f"{source} is not a valid minigpt-tui tokenizer file (it is damaged); "
                             "restore it from a backup or train the run again.") from None


# WikiText writes "3 @.@ 5" and "well @-@ known": show them as "3.5" and "well-known".
# The one table of these joins; `prettify` and `WikiTextJoins` both read it.
WIKITEXT_JOINS = {" @-@": "-", " @.@": ".", " @,@": ","}  # as word-level pieces -> display text
_WIKITEXT_JOINS = re.compile("(" + "|".join(re.escape(m) for m in WIKITEXT_JOINS) + ") ")


def prettify(text: str) -> str:
    """Display form of generated text (WikiText's @-@ style joins read back sensibly)."""
    return _WIKITEXT_JOINS.sub(lambda m: WIKITEXT_JOINS[m.group(1)], text)


class WikiTextJoins:
    """`prettify` for text that arrives piece by piece (word-level tokens, streamed).

    A join marker is held back until the next piece shows whether a space follows it
    (then it reads as "-", "." or ","); `flush()` gives back a marker the stream ended on.
    Feeding every piece and then flushing gives exactly prettify() of the joined pieces.
    """

    def __init__(self) -> None:
        self.held = ""  # a join marker waiting for the next piece

    def feed(self, piece: str) -> str:
        """The display text `piece` adds (possibly "", while a marker is held)."""
        if not piece:
            return ""
        out = ""
        if self.held:
            held, self.held = self.held, ""
            if not piece.startswith(" "):
                return held + piece
            out, piece = WIKITEXT_JOINS[held], piece[1:]  # the space after a marker is part of the join
        if piece in WIKITEXT_JOINS:
            self.held = piece
            return out
        return out + piece

    def flush(self) -> str:
        """The marker the stream ended on, as written (no space followed it), or ""."""
        held, self.held = self.held, ""
        return held
