"""The byte-level BPE tokenizer: every text round-trips, nothing is <unk>, streamed text is
always whole characters and joins to decode(), and a bpe run trains, saves, loads and generates."""

from __future__ import annotations

import json
import random

import pytest

from minigpt_tui.cli import main
from minigpt_tui.core.data.bpe_tokenizer import DEFAULT_VOCAB_SIZE, BPETokenizer
from minigpt_tui.core.data.tokenizer import build_tokenizer, tokenizer_from_json
from minigpt_tui.core.errors import TokenizerError
from minigpt_tui.core.generation.sampling import Sampler, SamplingSettings
from minigpt_tui.core.runs.run_dir import RunDir

from kit import TINY_TEXT, tiny_config, train_tiny_run, write_corpus

# (TINY_TEXT runs out of merges at 276.) ASCII merges: any other character is several byte tokens.
BPE = BPETokenizer.train(TINY_TEXT, 300)
# Code points from several planes: ASCII, Latin-1, combining marks, Cyrillic, CJK, Hangul, emoji, a private
# use area and plane 2 (surrogates are not text and cannot be UTF-8 encoded).
RANGES = [(0x00, 0x7F), (0x80, 0x2FF), (0x300, 0x36F), (0x400, 0x4FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3),
          (0xE000, 0xF8FF), (0x1F300, 0x1FAFF), (0x20000, 0x2A6DF), (0x10FF00, 0x10FFFF)]
SPECIAL = ["", "\n", "\n\n\n", "a  b   c\t\td", "  leading and trailing  ", "\r\n", "the cat  sat\n\n  on",
           "café naïve", "e\u0301\u0301", "👩‍👩‍👧‍👦 🇬🇧", "日本語のテキスト", "한국어", "\x00\x7f", "<unk>"]


def random_texts(n: int = 300, seed: int = 1234) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        lo, hi = rng.choice(RANGES)
        pool = [lo, hi] + [0x20, 0x0A]  # some spaces and newlines between
        texts.append("".join(chr(rng.randint(lo, hi) if rng.random() < 0.8 else rng.choice(pool[2:]))
                             for _ in range(rng.randint(1, 40))))
    return texts


def test_every_text_round_trips_and_is_spelt_in_its_own_bytes():
    for text in SPECIAL + random_texts():
        ids = BPE.encode(text)
        assert BPE.decode(ids) == text
        # Nothing is <unk>: the tokens' bytes are exactly the text's UTF-8 bytes.
        assert b"".join(BPE.token_bytes[i] for i in ids) == text.encode("utf-8")
        assert BPE.unknown_symbols(text) == []
    assert 256 < BPE.vocab_size <= 300 and "the" in BPE.stoi and " cat" in BPE.stoi  # merges were learnt


def test_a_long_text_encodes_in_pieces_to_the_same_ids():
    text = ("\n".join(SPECIAL) + "\n  indented\n\n\tline\n" + TINY_TEXT) * 25  # ~100k characters
    assert len(text) > 1 << 16
    assert BPE.encode(text) == BPE.hf.encode(text).ids  # the one-call encoding


def test_training_takes_chunks_or_a_string_alike():
    chunks = [TINY_TEXT[i:i + 100] for i in range(0, len(TINY_TEXT), 100)]
    assert BPETokenizer.train(iter(chunks), 300).to_json() == BPETokenizer.train(chunks, 300).to_json()
    assert build_tokenizer("bpe", TINY_TEXT, 300).to_json() == BPE.to_json()
    # vocab_size 0 is the default size; a small text runs out of merges before it
    assert 256 < BPETokenizer.train(TINY_TEXT, 0).vocab_size <= DEFAULT_VOCAB_SIZE


def stream(tok, ids) -> list[str]:
    decoder = tok.stream_decoder()
    return [decoder.feed(i) for i in ids] + [decoder.flush()]


def test_streamed_text_waits_for_whole_characters():
    text = "a é€😀 中文 e\u0301!\n"
    ids = BPE.encode(text)
    pieces = stream(BPE, ids)
    assert "".join(pieces) == BPE.decode(ids) == text
    assert all("\ufffd" not in p for p in pieces)
    assert pieces.count("") >= len("é€😀中文".encode()) - 5  # every token inside a character shows nothing yet
    assert "😀" in pieces  # ... and the character shows whole with its last byte


def test_streamed_text_joins_to_decode_for_any_ids():
    """A model may emit bytes that are not UTF-8: streaming still gives exactly decode()."""
    rng = random.Random(7)
    for _ in range(200):
        ids = [rng.randrange(BPE.vocab_size) for _ in range(rng.randint(0, 12))]
        assert "".join(stream(BPE, ids)) == BPE.decode(ids)
    # a character cut off at the end: held until the end, then shown as one U+FFFD (as decode does)
    cut = BPE.encode("é")[:1]
    assert stream(BPE, cut) == ["", "\ufffd"] and BPE.decode(cut) == "\ufffd"


def test_char_and_word_tokenizers_stream_their_pieces():
    for kind in ("char", "word"):
        tok = build_tokenizer(kind, TINY_TEXT, 0)
        ids = tok.encode("the cat sat\non the mat.")
        assert "".join(stream(tok, ids)) == tok.decode(ids)
        after = tok.stream_decoder(ids[0])  # continuing after a token: a word gets its space
        assert after.feed(ids[1]) == tok.piece(ids[1], ids[0])


def test_the_tokenizer_file_round_trips_and_damage_is_one_sentence(tmp_path):
    again = tokenizer_from_json(BPE.to_json())
    assert isinstance(again, BPETokenizer) and again.token_bytes == BPE.token_bytes
    for text in SPECIAL + random_texts(50, seed=5):
        assert again.encode(text) == BPE.encode(text)
    raw = json.loads(BPE.to_json())
    assert raw["kind"] == "bpe" and isinstance(raw["tokenizer"], dict)
    # the HF JSON may also be stored as a string
    as_string = json.dumps({"kind": "bpe", "tokenizer": json.dumps(raw["tokenizer"])})
    assert tokenizer_from_json(as_string).token_bytes == BPE.token_bytes
    for bad in ({"kind": "bpe"}, {"kind": "bpe", "tokenizer": {"model": 3}}, {"kind": "bpe", "tokenizer": "{"}):
        with pytest.raises(TokenizerError) as err:
            tokenizer_from_json(json.dumps(bad), source="Tokenizer file x.json")
        message = str(err.value)
        assert message.startswith("Tokenizer file x.json is not a valid") and "\n" not in message
    # A BPE learnt without the full byte alphabet could not spell every text: refused.
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers, trainers

    partial = HFTokenizer(models.BPE())
    partial.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    partial.train_from_iterator([TINY_TEXT], trainers.BpeTrainer(vocab_size=300, show_progress=False))
    with pytest.raises(TokenizerError, match="all 256 bytes"):
        tokenizer_from_json(json.dumps({"kind": "bpe", "tokenizer": json.loads(partial.to_str())}))


@pytest.fixture(scope="module")
def bpe_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bpe")
    config = tiny_config(write_corpus(root), max_steps=6, eval_interval=3, sample_tokens=12)
    config.data.tokenizer, config.data.vocab_size = "bpe", 300
    config.validate()
    # As `--train kjv-char-transformer --set data.tokenizer=bpe` does: a bpe run of a char recipe.
    return train_tiny_run(config, root / "runs", recipe_name="kjv-char-transformer")


def test_a_bpe_run_trains_saves_and_generates(bpe_run):
    assert bpe_run.name.startswith("tiny-bpe-transformer-")  # named after its tokenizer (and corpus), not the recipe's
    run = RunDir(bpe_run).load()
    assert isinstance(run.tokenizer, BPETokenizer) and run.tokenizer.token_bytes == BPE.token_bytes
    assert run.tokenizer.encode("the cat sat") == BPE.encode("the cat sat")
    samples = [json.loads(line)["text"] for line in (bpe_run / "events.jsonl").read_text().splitlines()
               if '"sample"' in line]
    assert samples  # the trainer's samples stream through the sampler too
    sampler = Sampler(run.model, run.tokenizer, SamplingSettings(max_new_tokens=25, seed=2, temperature=1.5))
    events = list(sampler.generate("the cat"))
    assert len(events) == 25
    full = "".join(e.text for e in events)
    assert full == run.tokenizer.decode([e.token_id for e in events])
    # Ending at a stop string (the same seed: a character the text above has) gives decode() too.
    sampler.settings.stop = [next(c for c in full[3:] if c != "\ufffd")]
    events = list(sampler.generate("the cat"))
    assert sampler.stats.finish_reason == "stop" and len(events) < 25
    assert "".join(e.text for e in events) == run.tokenizer.decode([e.token_id for e in events])


def test_generate_cli_on_a_bpe_run(bpe_run, capsys):
    code = main(["--generate", str(bpe_run), "--prompt", "the dog", "--max-new-tokens", "20", "--json", "--seed", "4"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    events, done = [json.loads(line) for line in out[:-1]], json.loads(out[-1])
    assert done["new_tokens"] == 20 and done["finish_reason"] == "length"
    tok = RunDir(bpe_run).load().tokenizer
    assert "".join(e["text"] for e in events) == tok.decode([e["token_id"] for e in events])
    code = main(["--generate", str(bpe_run), "--prompt", "the dog", "--max-new-tokens", "20", "--seed", "4"])
    plain = capsys.readouterr().out
    assert code == 0 and plain == "the dog" + "".join(e["text"] for e in events) + "\n"
