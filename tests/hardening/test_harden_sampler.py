"""The sampler under stress (what the app's Generate tab drives): a 100 KB pasted prompt,
a prompt of only unknown characters or words, temperature 0 and 5.0. Nothing may hang or
crash, and the work done for a long prompt must be bounded by what the model can see.
"""

from __future__ import annotations

import math
import time

import pytest
import torch

from minigpt_tui.core.config import ModelConfig
from minigpt_tui.core.data.tokenizer import CharTokenizer, WordTokenizer
from minigpt_tui.core.generation.sampling import Sampler, SamplingSettings, prompt_warning
from minigpt_tui.core.models import build_model

from kit import TINY_TEXT as TEXT

CHAR = CharTokenizer.train(TEXT)
WORD = WordTokenizer.train(TEXT)
BIG_PROMPT = (TEXT * 100)[:100_000]  # 100 KB, as if pasted
UNKNOWN = "漢字ñ🙂€" * 2000  # no character of it is in the vocabulary


def model(family: str, tok, context: int = 16):
    torch.manual_seed(0)
    return build_model(ModelConfig(family=family, n_layer=1, n_head=2, n_embd=16, context_length=context),
                       tok.vocab_size).eval()


class Counting:
    """Records how many tokens each forward call is fed."""

    def __init__(self, m):
        self.fed: list[int] = []
        self.handle = m.register_forward_pre_hook(lambda mod, args: self.fed.append(args[0].shape[1]))


def generate(m, tok, prompt, use_cache=True, **settings) -> list:
    sampler = Sampler(m, tok, SamplingSettings(**{"max_new_tokens": 20, **settings}), use_cache=use_cache)
    started = time.perf_counter()
    events = list(sampler.generate(prompt))
    assert time.perf_counter() - started < 60
    return events


def _valid(events, tok, n=20) -> None:
    assert len(events) == n
    for e in events:
        assert 0 <= e.token_id < tok.vocab_size and tok.itos[e.token_id] in e.text
        assert math.isfinite(e.prob) and 0.0 <= e.prob <= 1.0
        assert all(math.isfinite(p) for _, p in e.top)


@pytest.mark.parametrize("family", ["transformer", "cnn"])
@pytest.mark.parametrize("use_cache", [True, False], ids=["kv-cache", "no-cache"])
def test_a_100_kb_prompt_feeds_a_transformer_or_cnn_only_its_receptive_field(use_cache, family):
    m = model(family, CHAR)
    counter = Counting(m)
    events = generate(m, CHAR, BIG_PROMPT, use_cache)
    _valid(events, CHAR)
    assert max(counter.fed) <= m.receptive_field  # never the 100,000 tokens
    # and the crop loses nothing: the same text as from the last receptive_field characters alone
    tail = generate(m, CHAR, BIG_PROMPT[-m.receptive_field:], use_cache)
    assert [e.token_id for e in events] == [e.token_id for e in tail]


@pytest.mark.parametrize("family", ["gru", "lstm"])
def test_a_100_kb_prompt_through_an_rnn_finishes(family):
    m = model(family, CHAR)
    _valid(generate(m, CHAR, BIG_PROMPT), CHAR)


@pytest.mark.parametrize("use_cache", [True, False], ids=["state", "no-cache"])
def test_a_100_kb_prompt_feeds_an_rnn_a_bounded_window(use_cache):
    m = model("gru", CHAR)
    counter = Counting(m)
    generate(m, CHAR, BIG_PROMPT[:8000], use_cache, max_new_tokens=2)  # 8,000 tokens show it as well
    assert max(counter.fed) <= 64 * m.config.context_length  # 1,024


def test_a_100_kb_prompt_at_word_level():
    m = model("transformer", WORD)
    _valid(generate(m, WORD, BIG_PROMPT), WORD)


@pytest.mark.parametrize("family", ["transformer", "gru", "lstm", "cnn"])
@pytest.mark.parametrize("tok", [CHAR, WORD], ids=["char", "word"])
def test_a_prompt_of_only_unknown_symbols_generates_and_warns_briefly(family, tok):
    m = model(family, tok)
    prompt = UNKNOWN if tok is CHAR else " ".join(["Zyzzyva", "qwxj", "Ünïcødé"] * 500)
    _valid(generate(m, tok, prompt), tok)
    warning = prompt_warning(tok, prompt)
    assert warning and "<unk>" in warning and "\n" not in warning and len(warning) < 300


@pytest.mark.parametrize("family", ["transformer", "gru"])
def test_temperature_zero_is_greedy_and_repeatable(family):
    m = model(family, CHAR)
    first = generate(m, CHAR, "the cat", temperature=0.0, max_new_tokens=40)
    again = generate(m, CHAR, "the cat", temperature=0.0, max_new_tokens=40, seed=99)
    assert [e.token_id for e in first] == [e.token_id for e in again]  # no randomness at all
    for e in first:  # each token is the model's most likely one
        assert e.prob == pytest.approx(e.top[0][1])


@pytest.mark.parametrize("family", ["transformer", "gru", "lstm", "cnn"])
def test_temperature_five_is_wild_but_valid(family):
    m = model(family, CHAR)
    hot = generate(m, CHAR, "the cat", temperature=5.0, max_new_tokens=200)
    _valid(hot, CHAR, 200)
    cold = generate(m, CHAR, "the cat", temperature=0.0, max_new_tokens=200)
    assert len({e.token_id for e in hot}) > len({e.token_id for e in cold})
    # with every filter on at once too
    _valid(generate(m, CHAR, "the cat", temperature=5.0, top_k=3, top_p=0.5, min_p=0.2,
                    repetition_penalty=1.5), CHAR)


def test_an_empty_prompt_and_a_prompt_longer_than_everything_at_once():
    m = model("transformer", CHAR)
    _valid(generate(m, CHAR, ""), CHAR)
    _valid(generate(m, CHAR, BIG_PROMPT + UNKNOWN, temperature=5.0), CHAR)


def test_cancelling_mid_stream_stops_at_once():
    m = model("transformer", CHAR)
    sampler = Sampler(m, CHAR, SamplingSettings(max_new_tokens=10_000))
    seen = []
    for e in sampler.generate(BIG_PROMPT, cancel=lambda: len(seen) >= 5):
        seen.append(e)
    assert len(seen) == 5
