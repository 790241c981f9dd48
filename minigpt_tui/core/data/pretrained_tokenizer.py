"""The tokenizer of a model made elsewhere (kind "hf"): its Hugging Face tokenizer.json, used as is.

An imported model (core/pretrained) keeps the tokenizer it was trained with, read by the
`tokenizers` library exactly as transformers reads it, plus the few facts from its
tokenizer_config.json and generation_config.json that decide how text meets the model:

* bos: the token put before a prompt where the config says so (Llama's `<s>`; GPT-2 none);
* ends: the tokens that end a reply (the end-of-text token, the chat template's end of turn);
* chat_template: the Jinja template of an instruct model (core/generation's instruct mode).

Two families of vocabularies are understood, which covers GPT-2, SmolLM and Llama/TinyLlama:
byte-level ones (tokens written in GPT-2's byte symbols) and SentencePiece-style ones (a "▁"
for a space, "<0x0A>" for a byte that has no token of its own, the first space of a text
dropped). Each token is turned into the bytes it stands for once, so decoding and streaming
work as for our own byte-level BPE (bpe_tokenizer.py). Special tokens decode to their text.
"""

from __future__ import annotations

import codecs
import json
import re

from minigpt_tui.core.data.bpe_tokenizer import byte_of_symbol
from minigpt_tui.core.errors import TokenizerError

_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")
SPACE_MARK = "▁"


class PretrainedStreamDecoder:
    """feed(id) -> the text that is now complete; a SentencePiece text drops its first space."""

    def __init__(self, tokenizer: "PretrainedTokenizer", prev_id: int | None):
        self._bytes = tokenizer.token_bytes
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._strip_space = tokenizer.strips_first_space and prev_id is None

    def feed(self, token_id: int) -> str:
        piece = self._utf8.decode(self._bytes[token_id])
        if self._strip_space and piece:
            self._strip_space = False
            if piece.startswith(" "):
                piece = piece[1:]
        return piece

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)


class PretrainedTokenizer:
    """A core.data.tokenizer.Tokenizer over a Hugging Face tokenizer.json (see the module docstring).

    `settings` holds what came from the model's other files: bos_token, eos_token (and unk_token,
    pad_token, ... where it has them), add_bos, end_tokens (more ids that end a reply),
    chat_template, and vocab_size (the model's embedding rows, which may exceed the
    tokenizer's: the extra ids decode to nothing)."""

    kind = "hf"

    def __init__(self, tokenizer_json: dict, settings: dict):
        from tokenizers import Tokenizer as HFTokenizer  # (a dependency already: bpe_tokenizer)

        try:
            self.hf = HFTokenizer.from_str(json.dumps(tokenizer_json))
        except Exception:  # the library raises a bare Exception for malformed JSON
            raise TokenizerError("its tokenizer.json cannot be read by the tokenizers library") from None
        self.tokenizer_json, self.settings = tokenizer_json, dict(settings)
        vocab = self.hf.get_vocab(with_added_tokens=True)
        size = max(int(settings.get("vocab_size") or 0), max(vocab.values(), default=-1) + 1)
        byte_level = _uses_byte_level(tokenizer_json)
        self.strips_first_space = not byte_level and _strips_first_space(tokenizer_json)
        special = {t["content"] for t in tokenizer_json.get("added_tokens", []) if t.get("special")}
        table = byte_of_symbol()
        token_bytes = [b""] * size
        for token, i in vocab.items():
            token_bytes[i] = _bytes_of(token, byte_level and token not in special, table)
        self.token_bytes = token_bytes
        self.itos = [_display(b) for b in token_bytes]
        self.stoi = {}
        for i, b in enumerate(token_bytes):
            try:
                self.stoi.setdefault(b.decode("utf-8"), i)
            except UnicodeDecodeError:
                pass
        self.bos_id = self._id(settings.get("bos_token"))
        self.eos_id = self._id(settings.get("eos_token"))
        self.bos_ids: tuple[int, ...] = (self.bos_id,) if settings.get("add_bos") and self.bos_id is not None else ()
        ends = {self.eos_id, *(self._id(t) for t in settings.get("end_tokens", []))}
        self._ends = frozenset(i for i in ends if i is not None)
        self._end_ids: frozenset[int] | None = None
        self.chat_template: str | None = settings.get("chat_template") or None

    @property
    def end_ids(self) -> frozenset[int]:
        """The tokens that end a reply: the eos token, generation_config's, and the chat template's
        end of turn (core.data.hf_chat_template: found by rendering, so on first use, not at load)."""
        if self._end_ids is None:
            ends = set(self._ends)
            if self.chat_template:
                from minigpt_tui.core.data.hf_chat_template import end_of_turn_ids

                ends |= end_of_turn_ids(self)
            self._end_ids = frozenset(ends)
        return self._end_ids

    def _id(self, token) -> int | None:
        if isinstance(token, int):
            return token
        if not isinstance(token, str) or not token:
            return None
        return self.hf.token_to_id(token)

    # ---- the Tokenizer protocol ---------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.token_bytes)

    def encode(self, text: str) -> list[int]:
        """The ids of `text` alone (no BOS: a prompt gets bos_ids in front where the model wants it).
        Special tokens written in the text (a rendered chat template's) are read as themselves."""
        return self.hf.encode(text, add_special_tokens=False).ids if text else []

    def decode(self, ids: list[int]) -> str:
        decoder = self.stream_decoder()
        return "".join(decoder.feed(i) for i in ids) + decoder.flush()

    def unknown_symbols(self, text: str) -> list[str]:
        unk = self.hf.token_to_id("<unk>")
        if unk is None or not text:
            return []
        pieces = self.hf.encode(text, add_special_tokens=False)
        return sorted({text[a:b] for i, (a, b) in zip(pieces.ids, pieces.offsets) if i == unk})

    def stream_decoder(self, prev_id: int | None = None) -> PretrainedStreamDecoder:
        return PretrainedStreamDecoder(self, prev_id)

    def start_ids(self) -> list[int]:
        """What an empty prompt starts from: the BOS token, else the end-of-text token (GPT-2's
        <|endoftext|>, which also begins its documents)."""
        for i in (self.bos_id, self.eos_id):
            if i is not None:
                return [i]
        return [self.stoi.get("\n", 0)]

    # ---- files --------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "tokenizer": self.tokenizer_json, "settings": self.settings},
                          ensure_ascii=False)

    @classmethod
    def from_raw(cls, raw: dict) -> "PretrainedTokenizer":
        inner, settings = raw.get("tokenizer"), raw.get("settings", {})
        if not isinstance(inner, dict) or not isinstance(settings, dict):
            raise TokenizerError("it has no Hugging Face tokenizer")
        return cls(inner, settings)


def _uses_byte_level(tokenizer_json: dict) -> bool:
    """Whether tokens are written in GPT-2's byte symbols (a ByteLevel decoder or pre-tokenizer)."""
    return "ByteLevel" in json.dumps(tokenizer_json.get("decoder")) or \
        "ByteLevel" in json.dumps(tokenizer_json.get("pre_tokenizer"))


def _strips_first_space(tokenizer_json: dict) -> bool:
    """SentencePiece-style decoders drop the space their encoder puts before a text."""
    decoder = json.dumps(tokenizer_json.get("decoder"))
    return '"Strip"' in decoder or ('"Metaspace"' in decoder and '"never"' not in decoder)


def _bytes_of(token: str, byte_level: bool, table: dict[str, int]) -> bytes:
    if byte_level and all(ch in table for ch in token):
        return bytes(table[ch] for ch in token)
    match = _BYTE_TOKEN.fullmatch(token)
    if match:  # SentencePiece's byte fallback
        return bytes([int(match.group(1), 16)])
    return token.replace(SPACE_MARK, " ").encode("utf-8")


def _display(b: bytes) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(f"<0x{x:02X}>" for x in b)
