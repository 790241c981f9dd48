"""On a CUDA GPU: the promises the rest of the suite checks on the CPU. Skipped where torch sees no
GPU (CI has none); benchmarks/gpu_session.sh runs them first on a machine that has one:

    python -m pytest -m cuda -n 0 tests/test_cuda.py

* the cached sampler's logits equal full recomputation, for every family (float32, TF32 off);
* a bf16 autocast run learns, and a resumed one computes the losses of one never stopped;
* a checkpoint trained on the GPU loads and generates on the CPU, and one trained on the CPU on the GPU.
"""

from __future__ import annotations

import os

import pytest
import torch

from minigpt_tui.core.config import ModelConfig
from minigpt_tui.core.data.tokenizer import CharTokenizer
from minigpt_tui.core.generation.sampling import Sampler, SamplingSettings
from minigpt_tui.core.models import build_model
from minigpt_tui.core.runs import events as ev
from minigpt_tui.core.runs.run_dir import RunDir
from minigpt_tui.core.training.trainer import Trainer

from kit import TINY_TEXT, stop_and_resume, tiny_config

# Bit-exact resumption on a GPU needs cuBLAS's deterministic workspace, which it reads when it
# starts (the first matmul): set here, at collection, before any test has run one.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CHAR = CharTokenizer.train(TINY_TEXT)


@pytest.fixture
def exact_float32():
    """float32 matmuls in float32 (the trainer turns TF32 on for the whole process when it trains
    on a GPU): the comparisons below are of arithmetic, not of TF32's 10-bit mantissa."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture
def deterministic():
    """Deterministic kernels (scaled_dot_product_attention's backward, the embedding's and the
    matmuls' otherwise sum in whatever order the GPU's threads finish)."""
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


def random_model(family: str, **fields) -> torch.nn.Module:
    """A tiny model on the GPU with large weights, so that a wrong position or a stale state shows."""
    torch.manual_seed(0)
    config = ModelConfig(**{"family": family, "n_layer": 2, "n_head": 2, "n_embd": 16, "context_length": 8, **fields})
    model = build_model(config, CHAR.vocab_size)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.4)
    return model.cuda().eval()


@pytest.mark.parametrize("family, fields", [
    ("transformer", {}), ("transformer", {"n_kv_head": 1, "norm": "rmsnorm", "activation": "swiglu"}),
    ("transformer", {"positions": "learned", "bias": True, "activation": "gelu_tanh"}),
    ("gru", {}), ("lstm", {}), ("cnn", {}),
], ids=["ours", "llama-layout", "gpt2-layout", "gru", "lstm", "cnn"])
def test_cached_logits_equal_full_recompute_on_the_gpu(exact_float32, family, fields):
    """A prompt, then token by token far past the window, then a chunk: at every position the
    logits of recomputing what can matter (the receptive field, or for an RNN the whole prefix)."""
    model = random_model(family, **fields)
    R = model.receptive_field or 0
    total = 3 * max(R, 8) + 5
    ids = torch.randint(CHAR.vocab_size, (2, total), generator=torch.Generator().manual_seed(1)).cuda()
    with torch.inference_mode():
        logits, state = model(ids[:, :5], model.new_state())
        got = {t: logits[:, t] for t in range(5)}
        for t in range(5, total - 6):
            logits, state = model(ids[:, t : t + 1], state)
            got[t] = logits[:, -1]
        logits, state = model(ids[:, total - 6 :], state)  # a chat turn: several tokens at once
        got.update({total - 6 + j: logits[:, j] for j in range(6)})
        for t, logits in got.items():
            if getattr(model, "learned_positions", False) and t >= model.config.context_length:
                continue  # past its position table the cache crops: tests/test_sampling.py holds that on the CPU
            expected = model(ids[:, max(0, t + 1 - R) if R else 0 : t + 1])[0][:, -1]
            assert logits.device.type == "cuda"
            assert torch.allclose(logits, expected, atol=1e-3, rtol=0), (family, t)


def test_the_sampler_streams_from_a_model_on_the_gpu(exact_float32):
    model = random_model("transformer")
    text, again = ("".join(e.text for e in Sampler(model, CHAR, SamplingSettings(max_new_tokens=40, seed=3))
                           .generate("the cat")) for _ in range(2))
    assert len(text) > 0 and text == again  # the seed decides, on the GPU too


def test_a_bf16_run_on_the_gpu_learns_and_resumes_exactly(tiny_corpus, tmp_path, deterministic):
    config = tiny_config(tiny_corpus, max_steps=30, eval_interval=10, precision="bf16", device="cuda",
                         learning_rate=1e-2, model={"dropout": 0.1})  # dropout: the GPU's RNG is restored too
    full = []
    Trainer(config, full.append, runs_root=tmp_path / "full").run()
    assert full[0].dtype == "bfloat16"
    steps = {e.step: e.loss for e in full if isinstance(e, ev.Step)}
    assert abs(steps[0] - full[0].ln_vocab) < 0.3 and steps[29] < steps[0] - 0.5

    stopped, again = stop_and_resume(config, tmp_path / "resumed", 14)
    assert stopped == 14
    assert min(again) == 14 and max(again) == 29
    assert all(loss == steps[step] for step, loss in again.items()), {s: (steps[s], again[s]) for s in again}


@pytest.mark.parametrize("trained_on, loaded_on", [("cuda", "cpu"), ("cpu", "cuda")])
def test_a_checkpoint_moves_between_the_gpu_and_the_cpu(tiny_corpus, tmp_path, exact_float32, trained_on, loaded_on):
    config = tiny_config(tiny_corpus, max_steps=10, device=trained_on, precision="fp32")
    trainer = Trainer(config, lambda e: None, runs_root=tmp_path / "runs")
    trainer.run()
    torch.backends.cuda.matmul.allow_tf32 = False  # (training on the GPU turned it back on)
    loaded = RunDir(trainer.run_dir).load("last", device=loaded_on)
    assert next(loaded.model.parameters()).device.type == loaded_on
    x = torch.randint(loaded.tokenizer.vocab_size, (2, 16))
    trainer.model.eval()
    with torch.no_grad():
        original = trainer.model(x.to(trainer.device))[0].cpu()
        moved = loaded.model(x.to(loaded_on))[0].cpu()
    assert torch.allclose(original, moved, atol=1e-4, rtol=0)  # the same weights, another device's arithmetic
    sampler = Sampler(loaded.model, loaded.tokenizer, SamplingSettings(max_new_tokens=20))
    assert "".join(e.text for e in sampler.generate("the "))
