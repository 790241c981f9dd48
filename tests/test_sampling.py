"""Samplers: exactness of the cached paths, the filters, and the streaming protocol.

Tiny random models (a few thousand parameters) with large weights, so their
distributions are peaked and a wrong position or a stale cache shows at once.
Protocol tests use a scripted model whose logits are known in advance.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from minigpt_tui.core.config import ModelConfig
from minigpt_tui.core.data.tokenizer import CharTokenizer, WordTokenizer
from minigpt_tui.core.generation.sampling import (
    GumbelNoise,
    Sampler,
    SamplingSettings,
    TokenEvent,
    apply_filters,
    choose,
    draw,
    prompt_warning,
)
from minigpt_tui.core.models import build_model
from minigpt_tui.core.models.transformer import Rotary

from kit import TINY_TEXT

CHAR = CharTokenizer.train(TINY_TEXT)
WORD = WordTokenizer.train(TINY_TEXT)


def tiny_model(family: str = "transformer", vocab: int = CHAR.vocab_size, seed: int = 0, std: float = 0.4, **model):
    torch.manual_seed(seed)
    fields = {"family": family, "n_layer": 2, "n_head": 2, "n_embd": 16, "context_length": 8, **model}
    m = build_model(ModelConfig(**fields), vocab)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1:
                p.normal_(0.0, std)
    return m.eval()


def collect(sampler: Sampler, prompt: str = "", cancel=None) -> list[TokenEvent]:
    return list(sampler.generate(prompt, cancel=cancel))


def settings(**kw) -> SamplingSettings:
    return SamplingSettings(**{"max_new_tokens": 30, **kw})


# ---- exactness: the cache against full recomputation ---------------------------------------------


def full_logits(model, ids: torch.Tensor, t: int) -> torch.Tensor:
    """Logits for the token after ids[:, :t+1] by recomputing everything that can matter."""
    window = model.receptive_field
    return model(ids[:, max(0, t + 1 - window) : t + 1])[0][:, -1]


@pytest.mark.parametrize("prompt_len, bias, activation", [  # W = 8, receptive field = 2 * 7 + 1 = 15
    (1, False, "gelu"), (5, False, "gelu"), (8, False, "gelu"), (14, False, "gelu"), (15, False, "gelu"),
    (16, False, "gelu"), (40, False, "gelu"), (5, True, "gelu"), (16, True, "gelu"),
    (5, False, "gelu_tanh"), (16, True, "gelu_tanh"),  # runs from before model.activation existed
])
def test_cached_transformer_logits_equal_full_recompute_far_past_the_window(prompt_len, bias, activation):
    model = tiny_model(bias=bias, activation=activation)
    assert model.receptive_field == 15
    total = prompt_len + 45  # decode far past the window (8) and the receptive field (15)
    ids = torch.randint(CHAR.vocab_size, (2, total), generator=torch.Generator().manual_seed(prompt_len))
    with torch.inference_mode():
        state = model.new_state()
        logits, state = model(ids[:, :prompt_len], state)
        cached = {prompt_len - 1: logits[:, -1]}
        for t in range(prompt_len, total):
            logits, state = model(ids[:, t : t + 1], state)  # batch of 2 through the ring buffer
            cached[t] = logits[:, -1]
        for t, got in cached.items():
            assert torch.allclose(got, full_logits(model, ids, t), atol=1e-4, rtol=0), t
        # the prompt's own positions come out of the prefill exactly as well
        prefill, _ = model(ids[:, :prompt_len], model.new_state())
        for t in range(prompt_len):
            assert torch.allclose(prefill[:, t], full_logits(model, ids[:, :prompt_len], t), atol=1e-4, rtol=0)


@pytest.mark.parametrize("copies", [True, False], ids=["small: (in, out) copies", "large: transposed views"])
@pytest.mark.parametrize("layout", [{}, {"bias": True, "positions": "learned", "activation": "gelu_tanh"},
                                    {"norm": "rmsnorm", "activation": "swiglu", "n_kv_head": 1}],
                         ids=["ours", "gpt2", "llama"])
def test_the_decode_plan_gives_the_full_forward_whether_it_copies_the_weights_or_not(monkeypatch, copies, layout):
    """Small models decode with (in, out) copies of their weights, large ones with views of them
    (decode_plan.SMALL_MODEL): the logits are the network's either way, and decoding leaves
    torch's oneDNN setting as it found it (it turns it off while a token is decoded)."""
    from minigpt_tui.core.models import decode_plan

    monkeypatch.setattr(decode_plan, "SMALL_MODEL", 10**12 if copies else 0)
    model = tiny_model(**layout)
    ids = torch.randint(CHAR.vocab_size, (1, 8), generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        state = model.new_state()
        model(ids[:, :3], state)
        for t in range(3, 8):
            assert torch.backends.mkldnn.enabled
            logits, state = model.decode_step(int(ids[0, t]), state)
            assert torch.allclose(logits[0], full_logits(model, ids, t)[0], atol=1e-4, rtol=0), t
        plan = state.plan.blocks[0]
        shares = plan.up_weight_t.data_ptr() == model.blocks[0].mlp.up.weight.data_ptr()
        assert shares != copies and plan.up_weight_t.is_contiguous() == copies
    assert torch.backends.mkldnn.enabled


def steady_and_general_caches(model, prompt: list[int]):
    """Two caches filled with the same prompt under no_grad (a ring made outside inference mode can
    be written in either mode); the second's plan keeps it on the general path (never a steady step)."""
    from minigpt_tui.core.models import decode_plan

    with torch.no_grad():
        steady, general = model.new_state(), model.new_state()
        model(torch.tensor([prompt]), steady)
        model(torch.tensor([prompt]), general)
    general.plan = decode_plan.decode_plan(model)._replace(small=False)
    return steady, general


@pytest.mark.parametrize("layout", [{}, {"bias": True, "activation": "gelu_tanh"},
                                    {"norm": "rmsnorm", "activation": "swiglu", "n_kv_head": 1}],
                         ids=["ours", "biases", "llama"])
def test_the_steady_path_decodes_bit_for_bit_what_the_general_path_does(layout, monkeypatch):
    """One token of one sequence into buffers of all W slots is decoded through tensors and views
    made once per cache (steady_decode.SteadyStep). The logits are exactly those of the general
    path while the ring fills (from a 3-token prompt) and once it wraps, across rotary tables (a
    new one every 5 positions), across a copy of the cache (a conversation's undo point, whose
    views are its own) and when the caller moves between inference mode and no_grad (scratch made
    under inference mode cannot be written outside it, so it is made again)."""
    from minigpt_tui.core.models import transformer_decode

    monkeypatch.setenv("MINIGPT_TUI_NATIVE", "0")  # the torch step (tests/test_native.py: the C one)
    monkeypatch.setattr(Rotary, "CHUNK", 5)
    model = tiny_model(**layout)  # W = 8
    ids = torch.randint(CHAR.vocab_size, (40,), generator=torch.Generator().manual_seed(9)).tolist()
    steady, general = steady_and_general_caches(model, ids[:3])
    for i, t in enumerate(ids[3:]):
        if i == 12:
            assert steady.steady is not None and general.steady is None
            steady = steady.copy()
            assert steady.steady is None
        with torch.no_grad() if i % 3 == 1 else torch.inference_mode():
            assert torch.equal(transformer_decode.decode(model, t, steady), transformer_decode.decode(model, t, general))
    assert steady.steady is not None


def test_decoding_with_autograd_on_gives_the_same_logits(monkeypatch):
    """A cache filled under no_grad may be decoded with autograd on (an API user's choice): the
    general path writes into the ring (tensors of their own on one storage, which autograd lets it
    write), and the steady step, whose out= products take no gradients, steps aside. The logits
    are those of decoding under no_grad."""
    monkeypatch.setenv("MINIGPT_TUI_NATIVE", "0")  # bit for bit: the torch step (the C one: test_native.py)
    model = tiny_model()
    ids = torch.randint(CHAR.vocab_size, (14,), generator=torch.Generator().manual_seed(4)).tolist()
    with torch.no_grad():
        plain, tracked = model.new_state(), model.new_state()
        model(torch.tensor([ids[:3]]), plain)
        model(torch.tensor([ids[:3]]), tracked)
    for t in ids[3:]:
        with torch.no_grad():
            expected, plain = model.decode_step(t, plain)
        logits, tracked = model.decode_step(t, tracked)
        assert logits.requires_grad and torch.equal(logits.detach(), expected)
    assert plain.steady is not None and tracked.steady is None


def test_a_rotation_is_the_same_whichever_table_holds_it():
    """Rotary computes a position's rotation from the position alone, so the rows a SteadyStep keeps
    from one table equal rotation() from a table that starts elsewhere."""
    early, late = Rotary(16), Rotary(16)
    first, rows = early.rotations(0)
    assert first == 0 and torch.equal(rows[700], late.rotation(700))
    assert late.rotations(700)[0] == 700 and torch.equal(late.rotations(700)[1][0], rows[700])


def test_the_two_gelus_are_different_functions_of_the_same_weights():
    ids = torch.randint(CHAR.vocab_size, (1, 8), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        exact = tiny_model(activation="gelu")(ids)[0]
        tanh = tiny_model(activation="gelu_tanh")(ids)[0]
    assert not torch.allclose(exact, tanh, atol=1e-4) and torch.allclose(exact, tanh, atol=0.5)


def test_decode_step_matches_forward_and_crosses_rotary_table_chunks(monkeypatch):
    monkeypatch.setattr(Rotary, "CHUNK", 4)  # the cos/sin table is refilled every 4 positions
    model = tiny_model()
    ids = torch.randint(CHAR.vocab_size, (1, 50), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        logits, state = model(ids[:, :3], model.new_state())
        for t in range(3, 50):
            logits, state = model.decode_step(int(ids[0, t]), state)
            assert torch.allclose(logits[0], full_logits(model, ids, t)[0], atol=1e-4, rtol=0), t


def test_rotary_table_is_float64_accurate_at_large_positions():
    rotary = Rotary(8)
    cos, sin = rotary.cos_sin(1_000_000, 3, torch.float32)
    angles = torch.outer(torch.arange(1_000_000, 1_000_003, dtype=torch.float64), rotary.inv_freq)
    assert torch.allclose(cos.double(), angles.cos(), atol=1e-6) and torch.allclose(sin.double(), angles.sin(), atol=1e-6)
    assert torch.equal(rotary.rotation(1_000_001), torch.complex(cos[1], sin[1]))


@pytest.mark.parametrize("family", ["gru", "lstm"])
def test_rnn_step_by_step_logits_equal_the_full_sequence_forward(family):
    model = tiny_model(family)
    ids = torch.randint(CHAR.vocab_size, (1, 40), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        full, _ = model(ids)
        logits, state = model(ids[:, :4], model.new_state())
        assert torch.allclose(logits, full[:, :4], atol=1e-5)
        by_forward = state
        for t in range(4, 40):
            logits, state = model.decode_step(int(ids[0, t]), state)
            assert torch.allclose(logits[0], full[0, t], atol=1e-4, rtol=0), t
            step, by_forward = model(ids[:, t : t + 1], by_forward)
            assert torch.allclose(step[0, -1], full[0, t], atol=1e-4, rtol=0), t


@pytest.mark.parametrize("cnn", [
    {}, {"kernel_size": 2, "dilation_cycle": 3, "n_layer": 4, "norm": "rmsnorm"},
    {"kernel_size": 4, "dilation_cycle": 1, "bias": True, "mlp_hidden": 8},
], ids=["k3", "k2-cycle3-rmsnorm", "k4-bias"])
def test_cnn_streaming_logits_equal_full_recompute_over_three_receptive_fields(cnn):
    """The queues ("fast WaveNet"): a prompt, then token by token (forward with a batch of 2 and
    decode_step), then a chunk, give at every position the logits of recomputing the last R
    tokens, and of one pass over everything."""
    model = tiny_model("cnn", **cnn)
    R = model.receptive_field
    total = 3 * R + 7
    ids = torch.randint(CHAR.vocab_size, (2, total), generator=torch.Generator().manual_seed(R))
    with torch.inference_mode():
        full = model(ids)[0]
        for t in range(total):  # the receptive field is exact: the last R tokens suffice
            assert torch.allclose(full[:, t], full_logits(model, ids, t), atol=1e-4, rtol=0), t
        logits, state = model(ids[:, :5], model.new_state())
        got = {t: logits[:, t] for t in range(5)}
        for t in range(5, 2 * R):
            logits, state = model(ids[:, t : t + 1], state)
            got[t] = logits[:, -1]
        logits, state = model(ids[:, 2 * R :], state)  # the rest in one chunk (a chat turn)
        got.update({2 * R + j: logits[:, j] for j in range(total - 2 * R)})
        assert sorted(got) == list(range(total))
        for t, logits in got.items():
            assert torch.allclose(logits, full[:, t], atol=1e-4, rtol=0), t
        # decode_step (one sequence), from a copy taken mid-way: the copy is independent
        _, state = model(ids[:1, :3], model.new_state())
        for t in range(3, total):
            if t == R:
                mark = state.copy()
            logits, state = model.decode_step(int(ids[0, t]), state)
            assert torch.allclose(logits[0], full[0, t], atol=1e-4, rtol=0), t
        logits, _ = model(ids[:1, R:], mark)
        assert torch.allclose(logits[0], full[0, R:], atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", ["transformer", "gru", "cnn"])
@pytest.mark.parametrize("prompt", ["t", "the cat sat on the mat. the dog"])  # shorter / longer than W and R
def test_cached_and_uncached_samplers_give_the_same_tokens(family, prompt):
    model = tiny_model(family)
    s = settings(temperature=0.9, max_new_tokens=50, seed=5)
    cached = collect(Sampler(model, CHAR, s, use_cache=True), prompt)
    naive = collect(Sampler(model, CHAR, replace(s), use_cache=False), prompt)
    assert [e.token_id for e in cached] == [e.token_id for e in naive]
    assert max(abs(a.prob - b.prob) for a, b in zip(cached, naive)) < 1e-5


# Token counts read at a time after the prompt: single tokens (decode) and turns (extend).
CHUNKS = [1, 1, 3, 1, 5, 1, 1, 2, 9, 1, 1, 4, 1, 16, 1, 1, 7]


def _feed(model, ids: torch.Tensor, start: int, state) -> dict[int, torch.Tensor]:
    """Read ids[:, start:] into `state` CHUNKS at a time; the logits at each position read."""
    out, t, k = {}, start, 0
    while t < ids.size(1):
        n = min(CHUNKS[k % len(CHUNKS)], ids.size(1) - t)
        logits, state = model(ids[:, t : t + n], state)
        for j in range(n):
            out[t + j] = logits[:, j]
        t, k = t + n, k + 1
    return out


@pytest.mark.parametrize("prompt_len, kv_heads", [(1, 0), (3, 0), (5, 1), (2, 1)])
def test_a_growing_cache_equals_full_recompute_across_growth_boundaries(monkeypatch, prompt_len, kv_heads):
    """The ring starts small and doubles (here from 2 slots: 2, 4, 8, 16 = W) as decoded tokens
    and extended turns fill it, then wraps; the logits equal a full recompute throughout, and a
    copy taken before the last growth goes on alike."""
    from minigpt_tui.core.models.kv_cache import KVCache

    monkeypatch.setattr(KVCache, "MIN_SLOTS", 2)
    model = tiny_model(context_length=16, n_kv_head=kv_heads)
    total = prompt_len + 80  # far past W (16); receptive field 31
    ids = torch.randint(CHAR.vocab_size, (2, total), generator=torch.Generator().manual_seed(prompt_len))
    with torch.inference_mode():
        state = model.new_state()
        logits, state = model(ids[:, :prompt_len], state)
        assert state.slots == min(16, max(2, 1 << (prompt_len - 1).bit_length()))
        assert all(k.size(2) == state.slots for kv in state.layers for k in kv)
        cut = prompt_len + 3
        _feed(model, ids[:, :cut], prompt_len, state)
        twin = state.copy()
        assert twin.slots == state.slots < 16
        cached = _feed(model, ids, cut, state)
        for t, got in cached.items():
            assert torch.allclose(got, full_logits(model, ids, t), atol=1e-4, rtol=0), t
        again = _feed(model, ids, cut, twin)
        for t, got in again.items():
            assert torch.allclose(got, cached[t], atol=1e-5, rtol=0), t
    assert state.slots == 16 and all(k.size(2) == 16 for kv in state.layers for k in kv)


def test_a_growing_learned_position_cache_equals_one_allocated_whole(monkeypatch):
    """GPT-2's layout (learned positions: the cache crops when the table runs out) reads the
    same logits whether its cache starts small and grows or is allocated for W at once."""
    from minigpt_tui.core.models.kv_cache import KVCache

    model = tiny_model(context_length=16, positions="learned", bias=True)
    ids = torch.randint(CHAR.vocab_size, (1, 70), generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        monkeypatch.setattr(KVCache, "MIN_SLOTS", 16)
        _, whole = model(ids[:, :2], model.new_state())
        assert whole.slots == 16
        expected = _feed(model, ids, 2, whole)
        monkeypatch.setattr(KVCache, "MIN_SLOTS", 2)
        logits, grown = model(ids[:, :2], model.new_state())
        assert grown.slots == 2
        got = _feed(model, ids, 2, grown)
        # before the first crop, each position's logits are the forward's over the text so far
        for t in range(2, 16):
            assert torch.allclose(got[t], model(ids[:, : t + 1])[0][:, -1], atol=1e-4, rtol=0), t
    for t in expected:
        assert torch.allclose(got[t], expected[t], atol=1e-5, rtol=0), t


def test_a_short_prompt_allocates_a_small_cache():
    """A window of 8192 (SmolLM2's) and a 5-token prompt: MIN_SLOTS slots per layer, not 8192;
    a longer reply doubles them, a long prompt rounds up to a power of two."""
    from minigpt_tui.core.models.kv_cache import KVCache

    model = tiny_model(context_length=8192, n_kv_head=1)
    ids = torch.randint(CHAR.vocab_size, (1, 700), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        _, state = model(ids[:, :5], model.new_state())
        keys, values = state.layers[0]
        assert state.slots == KVCache.MIN_SLOTS == 256
        assert keys.shape == values.shape == (1, 1, 256, 8)
        for t in range(5, 300):
            logits, state = model.decode_step(int(ids[0, t]), state)
        assert state.slots == 512 and state.layers[1][0].size(2) == 512
        assert torch.allclose(logits[0], full_logits(model, ids, 299)[0], atol=1e-4, rtol=0)
        _, long = model(ids[:, :600], model.new_state())
        assert long.slots == 1024


@pytest.mark.parametrize("family, model", [("transformer", {}), ("transformer", {"positions": "learned", "bias": True}),
                                           ("transformer", {"n_kv_head": 1}), ("gru", {}), ("lstm", {})])
def test_last_gives_the_last_positions_logits_and_the_same_state(family, model):
    """forward(..., last=True), what samplers read prompts and turns with, skips the head at every
    position but the last: the same logits there, the same state after (prefill; several tokens
    against a cache, more than a window of them; a learned-position model's crop)."""
    net = tiny_model(family, **model)
    ids = torch.randint(CHAR.vocab_size, (2, 40), generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        for cut in (5, 30):
            full, a = net(ids[:, :cut], net.new_state())
            one, b = net(ids[:, :cut], net.new_state(), last=True)
            assert one.shape == (2, 1, CHAR.vocab_size)
            assert torch.allclose(one[:, 0], full[:, -1], atol=1e-5, rtol=0)  # (a one-row matmul may round differently)
            more, a = net(ids[:, cut:], a)  # 10 or 35 tokens: past the window (8) of a transformer
            less, b = net(ids[:, cut:], b, last=True)
            assert less.shape == (2, 1, CHAR.vocab_size)
            assert torch.allclose(less[:, 0], more[:, -1], atol=1e-6, rtol=0)
            step_a, _ = net(ids[:, :1], a)
            step_b, _ = net(ids[:, :1], b)
            assert torch.allclose(step_a, step_b, atol=1e-6, rtol=0)
        uncached, _ = net(ids[:, :8], None, last=True)
        assert torch.allclose(uncached[:, 0], net(ids[:, :8])[0][:, -1], atol=1e-5, rtol=0)


def test_new_weights_are_used_by_the_next_generation():
    """The cache's decode plan is taken per generation, never reused across weight updates."""
    model = tiny_model()
    sampler = Sampler(model, CHAR, settings(temperature=0, max_new_tokens=20))
    first = collect(sampler, "the")
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(-1.3)
    again = collect(sampler, "the")
    naive = collect(Sampler(model, CHAR, settings(temperature=0, max_new_tokens=20), use_cache=False), "the")
    assert [e.token_id for e in again] == [e.token_id for e in naive] != [e.token_id for e in first]


# ---- the filters, on a hand-made distribution -----------------------------------------------------

PROBS = torch.tensor([0.05, 0.5, 0.1, 0.2, 0.15])  # sorted: 1 (0.5), 3 (0.2), 4 (0.15), 2 (0.1), 0 (0.05)
LOGITS = PROBS.log()


def kept(**kw) -> set[int]:
    s = replace(SamplingSettings(temperature=1.0), **kw)
    out = apply_filters(LOGITS, s, kw.pop("recent", None))
    return {i for i, v in enumerate(out.tolist()) if v > float("-inf")}


@pytest.mark.parametrize("top_p, expected", [
    (0.45, {1}), (0.6, {1, 3}), (0.8, {1, 3, 4}), (0.9, {1, 3, 4, 2}), (0.99, {0, 1, 2, 3, 4}), (1.0, {0, 1, 2, 3, 4}),
])
def test_top_p_keeps_the_smallest_set_reaching_p(top_p, expected):
    assert kept(top_p=top_p) == expected


@pytest.mark.parametrize("min_p, expected", [(0.05, {0, 1, 2, 3, 4}), (0.25, {1, 3, 4}), (0.35, {1, 3}), (0.5, {1})])
def test_min_p_drops_tokens_below_min_p_times_the_top(min_p, expected):
    assert kept(min_p=min_p) == expected


def test_filters_apply_in_the_documented_order():
    assert kept(top_k=2) == {1, 3}
    # top-k first: among 0.5, 0.2, 0.15 renormalised (0.59, 0.24, 0.18), p = 0.8 is reached by two
    assert kept(top_p=0.8) == {1, 3, 4} and kept(top_k=3, top_p=0.8) == {1, 3}
    # temperature before min-p: T = 2 flattens to sqrt(p), so more tokens clear 0.35 x the top
    assert kept(min_p=0.35) == {1, 3} and kept(min_p=0.35, temperature=2.0) == {1, 3, 4, 2}
    out = apply_filters(LOGITS, replace(SamplingSettings(), temperature=2.0))
    assert torch.allclose(out, LOGITS / 2)


def test_repetition_penalty_lowers_recent_tokens_only():
    logits = torch.tensor([2.0, -1.0, 0.5, 3.0, -0.5])
    s = replace(SamplingSettings(temperature=1.0), repetition_penalty=2.0, repetition_window=3)
    out = apply_filters(logits, s, recent=[3, 0, 1, 2])  # the window sees the last 3: 0, 1, 2
    assert out.tolist() == [1.0, -2.0, 0.25, 3.0, -0.5]
    assert logits.tolist() == [2.0, -1.0, 0.5, 3.0, -0.5]  # the input is untouched


def test_greedy_never_divides_and_tiny_temperatures_are_greedy():
    logits = torch.tensor([0.1, 3.0, 2.9])
    noise = GumbelNoise()
    for t in (0.0, 1e-9):
        assert choose(logits, SamplingSettings(temperature=t), [], noise) == 1
    # greedy with a repetition penalty takes the argmax of the penalised logits
    assert choose(logits, SamplingSettings(temperature=0, repetition_penalty=2.0), [1], noise) == 2


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_draws_follow_the_tempered_distribution(temperature):
    """The Gumbel-max draw picks token i with probability softmax(logits / T)_i: 20,000 draws land
    within 4 standard errors of it for every token, and a token at -inf (filtered) is never drawn."""
    logits = torch.tensor([1.0, float("-inf"), 2.5, 0.0, 1.8])
    expected = (logits / temperature).softmax(-1)
    noise = GumbelNoise()
    noise.seed(11)
    n = 20_000
    counts = torch.bincount(torch.tensor([draw(logits, temperature, noise.row(5)) for _ in range(n)]), minlength=5)
    assert counts[1] == 0
    error = (expected * (1 - expected) / n).sqrt()
    assert ((counts / n - expected).abs() <= 4 * error + 1e-9).all(), (counts / n, expected)


def test_the_noise_is_the_same_from_the_same_seed_across_blocks():
    """Rows come in blocks; a seed gives the same rows however they are asked for, a new seed other
    ones, and no row holds an infinite value (which would draw a filtered token)."""
    def rows(seed: int, count: int) -> torch.Tensor:
        noise = GumbelNoise()
        noise.seed(seed)
        return torch.stack([noise.row(1000) for _ in range(count)])

    first = rows(3, 200)  # 65 rows a block at this size: four blocks
    assert torch.equal(first, rows(3, 200)) and not torch.equal(first, rows(4, 200))
    assert torch.isfinite(first).all() and len({tuple(r[:4].tolist()) for r in first}) == 200
    # Gumbel(0, 1): mean 0.5772 (Euler's constant), variance pi^2 / 6
    assert abs(first.mean() - 0.5772) < 0.02 and abs(first.var() - math.pi ** 2 / 6) < 0.05


# ---- the protocol, with a scripted model -----------------------------------------------------------


class Scripted(torch.nn.Module):
    """logits[t] = table[last token]; by default greedy walks the vocabulary in order,
    from the last token around to the first after <unk> ("\n", " ", "a", "b", ...).
    A LanguageModel whose state, like an RNN's, carries everything (it counts tokens)."""

    family = "scripted"
    receptive_field = None
    config = ModelConfig(family="gru", context_length=64)  # an RNN's prompt crop: 8 x 64 tokens

    def __init__(self, vocab: int, table: torch.Tensor | None = None):
        super().__init__()
        self.vocab_size = vocab
        if table is None:
            table = torch.full((vocab, vocab), -5.0)
            for i in range(vocab):
                table[i, i + 1 if i + 1 < vocab else 1] = 5.0
        self.table = torch.nn.Parameter(table, requires_grad=False)
        self.calls: list[int] = []  # tokens fed per call

    def new_state(self):
        return None

    def forward(self, idx, state=None, last=False):
        self.calls.append(idx.size(1))
        logits = self.table[idx]
        return logits[:, -1:] if last else logits, (state or 0) + idx.size(1)

    def decode_step(self, token, state):
        logits, state = self(torch.tensor([[token]]), state)
        return logits[:, -1], state


ALPHA = CharTokenizer(["<unk>", "\n", " ", *"abcdefghijklmnopqrstuvwxyz"])


def alpha_ids(text: str) -> list[int]:
    return ALPHA.encode(text)


def test_greedy_is_deterministic_and_equals_top_k_1():
    for family in ("transformer", "gru", "cnn"):
        model = tiny_model(family)
        greedy = [e.token_id for e in collect(Sampler(model, CHAR, settings(temperature=0)), "the ")]
        again = [e.token_id for e in collect(Sampler(model, CHAR, settings(temperature=0)), "the ")]
        top1 = [e.token_id for e in collect(Sampler(model, CHAR, settings(temperature=1.3, top_k=1, seed=9)), "the ")]
        assert greedy == again == top1
        assert len(set(greedy)) > 1


def test_a_fixed_seed_gives_identical_text_and_another_seed_differs():
    model = tiny_model()
    text = lambda seed: "".join(e.text for e in collect(Sampler(model, CHAR, settings(temperature=1.5, seed=seed)), "a"))
    assert text(1) == text(1)
    assert text(1) != text(2)
    sampler = Sampler(model, CHAR, settings(temperature=1.5, seed=1))
    assert "".join(e.text for e in collect(sampler, "a")) == "".join(e.text for e in collect(sampler, "a"))


def test_the_prompt_is_read_once_and_each_token_is_fed_alone():
    model = Scripted(ALPHA.vocab_size)
    events = collect(Sampler(model, ALPHA, settings(temperature=0, max_new_tokens=5)), "abc")
    assert "".join(e.text for e in events) == "defgh"
    assert model.calls == [3, 1, 1, 1, 1]  # the last token's logits are never computed needlessly


@pytest.mark.parametrize("stops, prompt, expected", [
    (["fg"], "a", "bcdefg"),
    (["xyz", "de"], "a", "bcde"),  # the first stop string completed wins
    (["b"], "ab", "cdefghijklmnopqrstuvwxyz\n ab"),  # the prompt is not searched; 'b' completes later
    (["z\n a"], "w", "xyz\n a"),  # a stop string spanning tokens, with a newline
])
def test_stop_strings_stop_right_after_the_token_completing_them(stops, prompt, expected):
    sampler = Sampler(Scripted(ALPHA.vocab_size), ALPHA, settings(temperature=0, max_new_tokens=100, stop=stops))
    assert "".join(e.text for e in collect(sampler, prompt)) == expected
    assert sampler.stats.finish_reason == "stop"


def test_a_stop_string_inside_a_word_token_stops_after_that_token():
    words = WordTokenizer(["<unk>", "\n", "one", "two", "three", "four", "five"])
    table = torch.full((7, 7), -5.0)
    for i in range(2, 7):
        table[i, i + 1 if i < 6 else 2] = 5.0
    sampler = Sampler(Scripted(7, table), words, settings(temperature=0, max_new_tokens=50, stop=["o th"]))
    assert "".join(e.text for e in collect(sampler, "one")) == " two three"


@pytest.mark.parametrize("tok", [CHAR, WORD], ids=["char", "word"])
@pytest.mark.parametrize("prompt", ["the cat", "", "the zebra ate the mat", "a\ndog sat"])
def test_streamed_text_equals_decoding_the_whole_sequence(tok, prompt):
    model = tiny_model(vocab=tok.vocab_size, std=0.2)
    events = collect(Sampler(model, tok, settings(temperature=1.2, max_new_tokens=40, seed=3)), prompt)
    streamed = "".join(e.text for e in events)
    prompt_ids = tok.encode(prompt)
    generated = [e.token_id for e in events]
    whole = tok.decode(prompt_ids + generated)
    assert whole.startswith(tok.decode(prompt_ids))
    assert streamed == whole[len(tok.decode(prompt_ids)) :]
    assert len(events) == 40 and [e.index for e in events] == list(range(40))


def test_events_carry_the_probability_and_the_top_five():
    model = tiny_model()
    sampler = Sampler(model, CHAR, settings(temperature=0.8, max_new_tokens=6))
    events = collect(sampler, "the")
    ids = CHAR.encode("the") + [e.token_id for e in events]
    with torch.no_grad():
        probs = model(torch.tensor([ids]))[0][0].softmax(-1)
    for e in events:
        p = probs[len(CHAR.encode("the")) - 1 + e.index]
        assert e.prob == pytest.approx(float(p[e.token_id]), abs=1e-5)
        assert len(e.top) == 5 and [t for t, _ in e.top] == [CHAR.itos[i] for i in p.topk(5).indices.tolist()]
        assert all(a[1] >= b[1] for a, b in zip(e.top, e.top[1:]))
        assert set(e.to_dict()) == {"index", "token_id", "text", "prob", "top"}


def test_unknown_prompt_characters_give_a_one_line_warning_not_a_crash():
    warning = prompt_warning(CHAR, "the zebra? Ω")
    assert warning is not None and "\n" not in warning
    assert "'z'" in warning and "'Ω'" in warning and "<unk>" in warning
    assert prompt_warning(CHAR, "the cat") is None
    assert "words" in prompt_warning(WORD, "the xylophone")
    events = collect(Sampler(tiny_model(), CHAR, settings(max_new_tokens=5)), "zzz Ω")
    assert len(events) == 5


def test_an_empty_prompt_starts_from_a_new_line():
    model = Scripted(ALPHA.vocab_size)
    events = collect(Sampler(model, ALPHA, settings(temperature=0, max_new_tokens=3)), "")
    assert [e.text for e in events] == [" ", "a", "b"]  # after "\n" the script gives " ", then letters
    assert len(collect(Sampler(tiny_model(vocab=WORD.vocab_size), WORD, settings(max_new_tokens=4)), "")) == 4


def test_settings_changed_mid_generation_apply_from_the_next_token():
    a, b = 3, 4
    table = torch.zeros(ALPHA.vocab_size, ALPHA.vocab_size)
    table[:, a], table[:, b] = 5.0, 4.0  # always prefers a, then b
    sampler = Sampler(Scripted(ALPHA.vocab_size, table), ALPHA, settings(temperature=0, max_new_tokens=8))
    got = []
    for event in sampler.generate("c"):
        got.append(event.token_id)
        if event.index == 2:
            sampler.settings.repetition_penalty = 2.0  # a: 5 -> 2.5 < 4, once a has been seen
        if event.index == 4:
            sampler.settings = replace(sampler.settings, max_new_tokens=6)
    assert got == [a, a, a, b, a, a]


def test_cancel_between_tokens_and_closing_the_stream():
    sampler = Sampler(tiny_model(), CHAR, settings(max_new_tokens=100))
    seen = []
    events = collect(sampler, "the", cancel=lambda: len(seen) >= 5 or seen.append(1))
    assert len(events) == 5 and sampler.stats.finish_reason == "cancelled"
    stream = sampler.generate("the")
    assert next(stream).index == 0
    stream.close()
    assert sampler.stats.finish_reason == "closed" and sampler.stats.new_tokens == 1


def test_max_new_tokens_zero_and_stats():
    sampler = Sampler(tiny_model(), CHAR, settings(max_new_tokens=0))
    assert collect(sampler, "the") == [] and sampler.stats.finish_reason == "length"
    sampler.settings.max_new_tokens = 12
    collect(sampler, "the")
    s = sampler.stats
    assert s.new_tokens == 12 and s.prompt_tokens == 3 and s.tokens_per_s > 0 and sampler.tokens_per_s == s.tokens_per_s


def test_the_callers_torch_state_is_untouched_between_tokens():
    threads = torch.get_num_threads()
    for event in Sampler(tiny_model(), CHAR, settings(max_new_tokens=3)).generate("the"):
        assert torch.get_num_threads() == threads
        assert not torch.is_inference_mode_enabled() and torch.is_grad_enabled()


def test_sampling_under_bfloat16_autocast_works():
    """The trainer samples under autocast on GPUs; the CPU flavour exercises the same code."""
    model = tiny_model()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        events = collect(Sampler(model, CHAR, settings(max_new_tokens=20)), "the cat sat")
    assert len(events) == 20 and all(0 <= e.prob <= 1 for e in events)


@pytest.mark.parametrize("field, value, words", [
    ("temperature", -1.0, "--temperature"), ("top_k", -1, "--top-k"), ("top_p", 0.0, "--top-p"),
    ("top_p", 1.5, "--top-p"), ("min_p", 1.0, "--min-p"), ("repetition_penalty", 0.0, "--repetition-penalty"),
    ("max_new_tokens", -3, "--max-new-tokens"), ("stop", [""], "--stop"), ("temperature", math.nan, "--temperature"),
])
def test_bad_settings_are_one_sentence(field, value, words):
    with pytest.raises(ValueError) as err:
        replace(SamplingSettings(), **{field: value}).validate()
    assert str(err.value).startswith(words) and str(err.value).endswith(".") and "\n" not in str(err.value)


def test_a_token_the_training_text_never_held_is_never_sampled(tmp_path):
    """Tiny Shakespeare has no <unk>: a char model must never write one (nor show it as an option)."""
    from minigpt_tui.core.generation.sampling import Sampler
    from minigpt_tui.core.runs.run_dir import RunDir

    from kit import tiny_config, train_tiny_run, write_corpus

    run = RunDir(train_tiny_run(tiny_config(write_corpus(tmp_path), max_steps=2, sample_tokens=0), tmp_path / "runs"))
    loaded = run.load()
    assert run.read_meta().unseen_tokens == [0] and loaded.unseen == (0,)  # only <unk>
    sampler = Sampler(loaded.model, loaded.tokenizer, SamplingSettings(temperature=1.0), banned=loaded.unseen)
    logits = torch.zeros(loaded.tokenizer.vocab_size)
    logits[0] = 50.0  # the model all but certain of <unk>
    with sampler.compute():
        for _ in range(20):
            token, prob, top = sampler.pick(logits, [])
            assert token != 0 and "<unk>" not in [t for t, p in top if p > 0]
    unbanned = Sampler(loaded.model, loaded.tokenizer, SamplingSettings(temperature=0.0))
    with unbanned.compute():
        assert unbanned.pick(logits, [])[0] == 0  # (the ban is what keeps it out)
    sampler.settings.allow_unk = True  # the setting (--allow-unk, the Generate tab's a) lifts the ban, live
    with sampler.compute():
        sampler.settings.temperature = 0.0
        assert sampler.pick(logits, [])[0] == 0
        sampler.settings.allow_unk = False  # and back, from the next token
        assert sampler.pick(logits, [])[0] != 0


def test_a_char_model_never_writes_unk_in_3000_tokens_at_temperature_1_5(tmp_path):
    """The issue's case, end to end on a real (tiny, barely trained) model: its corpus holds no <unk>,
    and at a high temperature 3,000 tokens hold none; allowed, the same model writes it."""
    from minigpt_tui.core.generation.sampling import Sampler
    from minigpt_tui.core.runs.run_dir import RunDir

    from kit import tiny_config, train_tiny_run, write_corpus

    run = RunDir(train_tiny_run(tiny_config(write_corpus(tmp_path), max_steps=4, sample_tokens=0), tmp_path / "runs"))
    loaded = run.load()
    assert "<unk>" not in (tmp_path / "tiny.txt").read_text() and loaded.tokenizer.itos[0] == "<unk>"
    settings = SamplingSettings(temperature=1.5, max_new_tokens=3000, seed=3)
    sampler = Sampler(loaded.model, loaded.tokenizer, settings, banned=loaded.unseen)
    written = [e.token_id for e in sampler.generate("the ")]
    assert len(written) == 3000 and 0 not in written
    settings.allow_unk = True
    assert 0 in [e.token_id for e in sampler.generate("the ")]
