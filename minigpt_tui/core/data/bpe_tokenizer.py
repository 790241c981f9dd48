"""Byte-level BPE tokenizer (Hugging Face `tokenizers`), saved as JSON (never pickled).

Text is read as UTF-8 bytes; the initial alphabet holds all 256 byte values, so
every input encodes and nothing is ever <unk>. Merges are learnt from the
training split up to `data.vocab_size` tokens (0 means DEFAULT_VOCAB_SIZE).
Pre-tokenization is GPT-2's (words, numbers, punctuation, whitespace runs) with
no added prefix space, so decode(encode(text)) == text for every string.

Decoding maps each token to its bytes and decodes the joined bytes as UTF-8
(errors="replace": a model may emit byte sequences that are not UTF-8). A token
can end in the middle of a character; `stream_decoder()` holds such bytes back
until the character is complete, so streamed text is always valid and the pieces
join to exactly decode() of the whole sequence.

Encoding pieces of a text separately gives the same ids as encoding the whole only
where the cut falls between GPT-2 pre-tokens (e.g. after a newline that a non-space
follows, where encode() itself cuts long texts); inside a run of whitespace the two
can differ. Both decode to the same
text. A chat encodes each turn on its own and feeds those ids, so its state is
always the ids it shows (see core.generation.chat).
"""

from __future__ import annotations

import codecs
import json
import re
from functools import lru_cache
from typing import Iterable

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from minigpt_tui.core.errors import TokenizerError

# data.vocab_size = 0: 4096 tokens, a vocabulary whose embedding stays a minor part of a
# small model (524k parameters at width 128) while most common words of an English corpus
# are one token (the Bible's held-out text: 3.6 characters per token; see README, Recipes).
DEFAULT_VOCAB_SIZE = 4096
ALPHABET_SIZE = 256
ENCODE_CHUNK = 1 << 16  # characters: longer texts are encoded in pieces, in parallel
_SAFE_CUT = re.compile(r"\n(?=\S)")


@lru_cache(maxsize=1)
def byte_of_symbol() -> dict[str, int]:
    """GPT-2's byte <-> printable-character table (what ByteLevel writes tokens in): symbol -> byte."""
    # Printable Latin-1 bytes stand for themselves; the others (controls, space, ...) for 256 + n.
    byte_values = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = list(byte_values)
    for b in range(256):
        if b not in byte_values:
            byte_values.append(b)
            codes.append(256 + len(codes) - 188)  # 188 printable bytes come first
    return {chr(c): b for b, c in zip(byte_values, codes)}


def _chunks(text: str | Iterable[str]) -> Iterable[str]:
    return [text] if isinstance(text, str) else text


class BPEStreamDecoder:
    """Incremental decoding: feed(token_id) gives the text that is now complete (possibly "");
    flush() gives what a dangling partial character decodes to (U+FFFD) at the end."""

    def __init__(self, token_bytes: list[bytes]):
        self._bytes = token_bytes
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        return self._utf8.decode(self._bytes[token_id])

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)


class BPETokenizer:
    """A core.data.tokenizer.Tokenizer of byte-level BPE tokens (see the module docstring)."""

    kind = "bpe"
    bos_ids: tuple[int, ...] = ()
    end_ids: frozenset[int] = frozenset()

    def __init__(self, hf: HFTokenizer):
        self.hf = hf
        vocab = hf.get_vocab()  # token (in GPT-2 byte symbols) -> id
        table = byte_of_symbol()
        try:
            token_bytes: list[bytes | None] = [None] * len(vocab)
            for token, i in vocab.items():
                token_bytes[i] = bytes(table[ch] for ch in token)
        except (KeyError, IndexError):
            raise TokenizerError("a bpe tokenizer must be byte-level, with ids 0..vocab_size-1") from None
        if any(b is None for b in token_bytes) or len({*token_bytes}) != len(token_bytes):
            raise TokenizerError("a bpe tokenizer's ids must each stand for different bytes")
        missing = ALPHABET_SIZE - len({b for b in token_bytes if len(b) == 1})
        if missing:
            raise TokenizerError(f"a bpe tokenizer must hold all 256 bytes ({missing} missing)")
        self.token_bytes: list[bytes] = token_bytes  # type: ignore[assignment]
        # Display names (top alternatives, tests): a token's text, or its bytes when it is part
        # of a character. stoi holds the tokens that are whole text ("\n" starts an empty prompt).
        self.itos = [_display(b) for b in self.token_bytes]
        self.stoi = {}
        for i, b in enumerate(self.token_bytes):
            try:
                self.stoi[b.decode("utf-8")] = i
            except UnicodeDecodeError:
                pass

    # ---- building -----------------------------------------------------------
    @classmethod
    def train(cls, text: str | Iterable[str], vocab_size: int = 0) -> "BPETokenizer":
        """Learn merges from text (a string or an iterable of chunks) up to vocab_size tokens
        (0: DEFAULT_VOCAB_SIZE; never below the 256 bytes)."""
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=max(vocab_size or DEFAULT_VOCAB_SIZE, ALPHABET_SIZE),
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False, special_tokens=[])
        hf.train_from_iterator(_chunks(text), trainer=trainer)
        return cls(hf)

    # ---- use ------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.token_bytes)

    def encode(self, text: str) -> list[int]:
        if len(text) <= ENCODE_CHUNK:
            return self.hf.encode(text, add_special_tokens=False).ids if text else []
        # A long text (a corpus) is encoded in pieces, in parallel: cut only after a newline that
        # a non-space follows, which GPT-2's pre-tokenizer always splits at, so the ids are the same.
        pieces, start = [], 0
        while start < len(text):
            cut = _SAFE_CUT.search(text, start + ENCODE_CHUNK) if len(text) - start > ENCODE_CHUNK else None
            end = cut.end() if cut else len(text)
            pieces.append(text[start:end])
            start = end
        return [i for enc in self.hf.encode_batch(pieces, add_special_tokens=False) for i in enc.ids]

    def unknown_symbols(self, text: str) -> list[str]:
        """Always []: every text is bytes, and every byte is a token."""
        return []

    def decode(self, ids: list[int]) -> str:
        return b"".join(self.token_bytes[i] for i in ids).decode("utf-8", errors="replace")

    def stream_decoder(self, prev_id: int | None = None) -> BPEStreamDecoder:
        """Incremental decode (see BPEStreamDecoder); `prev_id` is not needed by bytes."""
        return BPEStreamDecoder(self.token_bytes)

    # ---- files ----------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "tokenizer": json.loads(self.hf.to_str())}, ensure_ascii=False)

    @classmethod
    def from_raw(cls, raw: dict) -> "BPETokenizer":
        """From tokenizer.json's parsed object; TokenizerError (a clause) when it is not usable."""
        inner = raw.get("tokenizer")
        if not isinstance(inner, (dict, str)):
            raise TokenizerError("it has no bpe tokenizer")
        try:
            hf = HFTokenizer.from_str(inner if isinstance(inner, str) else json.dumps(inner))
        except Exception:  # the library raises a bare Exception for any malformed JSON
            raise TokenizerError("its bpe tokenizer cannot be read") from None
        return cls(hf)


def _display(b: bytes) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(f"<0x{x:02X}>" for x in b)
