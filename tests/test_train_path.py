"""The Transformer's faster training path computes what the plain formulas compute: rotary
positions bit for bit, the batched-matmul attention as scaled_dot_product_attention does (values
and gradients, to float rounding), and bf16 autocast: training attends in bf16, evaluation in
float32, gradients stay float32."""

import pytest
import torch
import torch.nn.functional as F

from minigpt_tui.core.config import ModelConfig
from minigpt_tui.core.models import build_model
from minigpt_tui.core.models.transformer import Rotary, apply_rotary, small_causal_attention


def test_rotary_in_one_go_is_bit_identical_to_split_rotate_concatenate():
    rotary = Rotary(8)
    x = torch.randn(2, 3, 2, 16, 8)  # (queries and keys, B, H, T, D)
    cos, sin = rotary.cos_sin(0, 16, torch.float32)
    x1, x2 = x.chunk(2, dim=-1)
    plain = torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    assert torch.equal(apply_rotary(x, *rotary.full_tables(16, torch.float32)), plain)
    assert rotary.full_tables(16, torch.float32)[0] is rotary.full_tables(16, torch.float32)[0]  # kept


@pytest.mark.parametrize("T", [1, 5, 16])
def test_small_causal_attention_matches_scaled_dot_product_attention(T):
    q, k, v = (torch.randn(2, 3, T, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    ours = small_causal_attention(q, k, v, 0.0)
    theirs = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(ours, theirs, atol=1e-12)
    g = torch.randn_like(ours)
    grads = torch.autograd.grad(ours, (q, k, v), g)
    for a, b in zip(grads, torch.autograd.grad(theirs, (q, k, v), g)):
        assert torch.allclose(a, b, atol=1e-12)


def tiny(dropout=0.0):
    torch.manual_seed(0)
    return build_model(ModelConfig(n_layer=2, n_head=2, n_embd=16, context_length=16, dropout=dropout), 30)


def test_training_and_evaluation_forwards_agree():
    """Training attends with small_causal_attention, evaluation with scaled_dot_product_attention."""
    model, idx = tiny(), torch.randint(0, 30, (3, 16))
    trained = model.train()(idx)[0]
    evaluated = model.eval()(idx)[0]
    assert torch.allclose(trained, evaluated, atol=1e-5)


def test_bf16_autocast_trains_close_to_float32_and_keeps_float32_gradients():
    """Under CPU bf16 autocast, training attends (rotary included) in bf16; evaluation in float32."""
    model, idx = tiny(), torch.randint(0, 30, (3, 16))
    reference = model.train()(idx)[0]
    model.rotary._full.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(idx)[0]
    assert set(model.rotary._full) == {(16, torch.bfloat16, torch.device("cpu"))}  # bf16 tables: bf16 q, k
    model.rotary._full.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        evaluated = model.eval()(idx)[0]
    assert set(model.rotary._full) == {(16, torch.float32, torch.device("cpu"))}
    assert logits.dtype == torch.bfloat16
    assert (logits.float() - reference).abs().max() < 0.05  # bf16 rounding, no more
    assert (evaluated.float() - reference).abs().max() < 0.05
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(idx)[0]
    logits.float().sum().backward()
    assert all(p.grad.dtype == torch.float32 for p in model.parameters())


def test_training_after_sampling_under_inference_mode_at_the_same_length():
    """The rotary tables first made under inference_mode (the sampler) are saved for backward later."""
    model, idx = tiny(), torch.randint(0, 30, (3, 16))
    model.rotary._full.clear()
    with torch.inference_mode():
        model.eval()(idx)
    model.train()(idx)[0].sum().backward()
    assert model.embed.weight.grad is not None


def test_a_bf16_softmax_is_the_float32_softmax_rounded_once():
    """small_causal_attention leans on this (no casts around its softmax); a PyTorch that rounded
    in between would make bf16 training's attention weights less precise, and this fails."""
    scores = (torch.randn(48, 64, 64) * 4).bfloat16()
    assert torch.equal(scores.softmax(-1), scores.float().softmax(-1).bfloat16())
