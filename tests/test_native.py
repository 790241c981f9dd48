"""core/native.py: the sampler's hot path compiled from C where a compiler is at hand (the decode step
of a small Transformer, the pick), and the torch code where it is not. The C results equal the
torch ones to float rounding: the same logits within 1e-5, the same draws, the same top tokens."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minigpt_tui.core import native
from minigpt_tui.core.generation.sampling import GumbelNoise, Sampler, SamplingSettings, draw
from minigpt_tui.core.models import transformer_decode
from minigpt_tui.core.models.native_decode import NativeStep
from minigpt_tui.core.models.steady_decode import SteadyStep
from minigpt_tui.core.models.transformer import Rotary

from test_sampling import CHAR, steady_and_general_caches, tiny_model

needs_compiler = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                    reason="no C compiler here: the torch code runs (tested elsewhere)")


@needs_compiler
def test_the_kernels_compile_into_the_cache_folder_and_load(data_home):
    native.library.cache_clear()
    try:
        lib = native.library()
        assert lib is not None and native.enabled()
        built = list((data_home / "cache" / "native").glob("native_kernels-*.so"))
        assert len(built) == 1 and lib._name == str(built[0])
        native.library.cache_clear()
        assert native.library()._name == str(built[0])  # the next process loads it, no compile
    finally:
        native.library.cache_clear()


@needs_compiler
@pytest.mark.parametrize("layout", [{}, {"bias": True, "activation": "gelu_tanh"},
                                    {"norm": "rmsnorm", "activation": "swiglu", "n_kv_head": 1}],
                         ids=["ours", "biases", "llama"])
def test_the_native_step_decodes_what_the_general_path_does(layout, monkeypatch):
    """From a 3-token prompt, while the ring fills and long after it wraps (W = 8), across rotary
    tables, a copy of the cache and moves between inference mode and no_grad: the C step's logits
    are the general (torch) path's within 1e-5, and the ring it writes is theirs too."""
    monkeypatch.setattr(Rotary, "CHUNK", 5)
    model = tiny_model(**layout)
    ids = torch.randint(CHAR.vocab_size, (40,), generator=torch.Generator().manual_seed(9)).tolist()
    fast, general = steady_and_general_caches(model, ids[:3])
    for i, t in enumerate(ids[3:]):
        if i == 12:
            assert isinstance(fast.steady, NativeStep)
            fast = fast.copy()
        with torch.no_grad() if i % 3 == 1 else torch.inference_mode():
            got, expected = transformer_decode.decode(model, t, fast), transformer_decode.decode(model, t, general)
        assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-5, rtol=0), i
    for (k1, v1), (k2, v2) in zip(fast.layers, general.layers):
        assert torch.allclose(k1, k2, atol=1e-5) and torch.allclose(v1, v2, atol=1e-5)


@needs_compiler
@pytest.mark.parametrize("V", [65, 3])
def test_the_native_pick_draws_and_ranks_what_torch_does(V):
    lib = native.library()
    pick = native.NativePick(lib, 5)
    noise = GumbelNoise()
    noise.seed(3)
    gen = torch.Generator().manual_seed(5)
    for trial in range(300):
        logits = torch.randn(V, generator=gen) * 3
        if trial % 7 == 0:
            logits[trial % V] = float("-inf")  # a banned token is never drawn
        g = noise.row(V)
        drawn, prob, top_ids, top_probs = pick(logits, g, 0.8, 5)
        assert drawn == draw(logits, 0.8, g)
        probs = logits.softmax(-1)
        assert prob == pytest.approx(probs[drawn].item(), abs=1e-6)
        want = torch.topk(probs, min(5, V))
        assert top_ids == want.indices.tolist() and top_probs == pytest.approx(want.values.tolist(), abs=1e-6)
        assert pick(logits, None, 0.0, 5)[0] == int(logits.argmax())  # greedy: no noise


def sample(model, **kw) -> list[tuple[int, float]]:
    s = SamplingSettings(**{"temperature": 0.8, "seed": 11, "max_new_tokens": 60, **kw})
    return [(e.token_id, e.prob) for e in Sampler(model, CHAR, s).generate("the ")]


@needs_compiler
def test_a_sampler_gives_the_same_text_with_and_without_the_kernels(monkeypatch):
    model = tiny_model()
    for kw in ({}, {"temperature": 0.0}, {"top_k": 3}):
        fast = sample(model, **kw)
        monkeypatch.setenv("MINIGPT_TUI_NATIVE", "0")
        slow = sample(model, **kw)
        monkeypatch.delenv("MINIGPT_TUI_NATIVE")
        assert [t for t, _ in fast] == [t for t, _ in slow]
        assert [p for _, p in fast] == pytest.approx([p for _, p in slow], abs=1e-5)


def test_without_a_compiler_the_sampler_runs_on_torch(monkeypatch, tmp_path):
    """No compiler (or one that fails): no kernels, nothing said, the torch step and pick."""
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    native.library.cache_clear()
    try:
        assert native.library() is None and not native.enabled()
        model = tiny_model()
        sampler = Sampler(model, CHAR, SamplingSettings(temperature=0.8, seed=1, max_new_tokens=30))
        assert sampler.native is None and len(list(sampler.generate("the "))) == 30
        with torch.inference_mode():
            state = model.new_state()
            model(torch.tensor([[1, 2, 3]]), state)
            for t in range(10):
                model.decode_step(t, state)
        assert type(state.steady) is SteadyStep
    finally:
        native.library.cache_clear()


def compiler_refusing(flag: str, folder: Path) -> Path:
    """A `cc` that fails when given `flag` and is the system's compiler otherwise."""
    real = shutil.which("cc") or shutil.which("gcc")
    picky = folder / "picky-cc"
    picky.write_text(f'#!/bin/sh\nfor a in "$@"; do [ "$a" = {flag} ] && exit 1; done\nexec {real} "$@"\n')
    picky.chmod(0o755)
    return picky


@needs_compiler
def test_a_compiler_that_refuses_march_native_gets_the_portable_build(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(compiler_refusing("-march=native", tmp_path)))
    native.library.cache_clear()
    try:
        assert native.library() is not None
        model = tiny_model()
        assert len(list(Sampler(model, CHAR, SamplingSettings(max_new_tokens=20)).generate("the "))) == 20
    finally:
        native.library.cache_clear()


@needs_compiler
def test_a_damaged_build_in_the_cache_is_built_again(data_home):
    """A file in the cache that does not load (damaged, truncated by a full disk) is built again by
    the next process (a process that has the library mapped keeps its copy: dlopen reuses it)."""
    probe = [sys.executable, "-c", "from minigpt_tui.core import native; print(native.library()._name)"]
    built = Path(subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip())
    built.write_bytes(b"not a library")
    again = subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip()
    assert again == str(built) and built.read_bytes() != b"not a library"
