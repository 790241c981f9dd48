"""The Transformer's faster training path computes what the plain formulas compute: rotary
positions bit for bit, TrainingAttention (rotary and attention, forward and backward written out)
as apply_rotary and scaled_dot_product_attention do (values and gradients, to float rounding, with
dropout too), and bf16 autocast: training attends in bf16, evaluation in float32, gradients stay
float32."""

import pytest
import torch
import torch.nn.functional as F

from minigpt_tui.core.config import ModelConfig
from minigpt_tui.core.models import build_model
from minigpt_tui.core.models.training_attention import TrainingAttention
from minigpt_tui.core.models.transformer import Rotary, _future_mask, apply_rotary, plain_causal_attention


def test_rotary_in_one_go_is_bit_identical_to_split_rotate_concatenate():
    rotary = Rotary(8)
    x = torch.randn(2, 3, 2, 16, 8)  # (queries and keys, B, H, T, D)
    cos, sin = rotary.cos_sin(0, 16, torch.float32)
    x1, x2 = x.chunk(2, dim=-1)
    plain = torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    assert torch.equal(apply_rotary(x, *rotary.full_tables(16, torch.float32)), plain)
    assert rotary.full_tables(16, torch.float32)[0] is rotary.full_tables(16, torch.float32)[0]  # kept


def plain_attention(qkv, n_head, rotary, dropout=0.0):
    """What TrainingAttention replaces: split, rotate with apply_rotary, PyTorch's attention."""
    B, T, C = qkv.size(0), qkv.size(1), qkv.size(2) // 3
    q, k, v = qkv.view(B, T, 3, n_head, C // n_head).permute(2, 0, 3, 1, 4)
    cos, sin = rotary.full_tables(T, qkv.dtype)
    q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    if not dropout:
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:  # scaled_dot_product_attention's own dropout draws its mask differently
        scores = (q @ k.transpose(-1, -2)) * (C // n_head) ** -0.5 + _future_mask(T, qkv.dtype, qkv.device)
        y = torch.native_dropout(scores.softmax(-1), dropout, True)[0] @ v
    return y.transpose(1, 2).reshape(B, T, C)


def written_out(qkv, n_head, rotary, dropout=0.0):
    T, D = qkv.size(1), qkv.size(2) // 3 // n_head
    return TrainingAttention.apply(qkv, n_head, *rotary.qk_tables(T, qkv.dtype, D ** -0.5),
                                   _future_mask(T, qkv.dtype, qkv.device), dropout)


def compiled_formulation(qkv, n_head, rotary, dropout=0.0):
    """What training attends with under torch.compile."""
    return plain_causal_attention(qkv, n_head, rotary, dropout)


@pytest.mark.parametrize("T", [1, 5, 16])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_training_attention_matches_rotary_and_scaled_dot_product_attention(T, dropout):
    """Values and gradients, in float64, of TrainingAttention and of what torch.compile gets
    instead; with dropout, the same keep-mask (the same random draws)."""
    rotary, qkv = Rotary(8).double(), torch.randn(2, T, 3 * 3 * 8, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, T, 3 * 8, dtype=torch.float64)
    results = []
    for attention in (written_out, compiled_formulation, plain_attention):
        torch.manual_seed(1)
        y = attention(qkv, 3, rotary, dropout)
        results.append((y, *torch.autograd.grad(y, qkv, g)))
    theirs, their_grad = results[-1]
    for ours, our_grad in results[:-1]:
        assert torch.allclose(ours, theirs, atol=1e-12)
        assert torch.allclose(our_grad, their_grad, atol=1e-12)
    if dropout:
        assert not torch.allclose(ours, plain_attention(qkv, 3, rotary))  # dropout did drop


def test_training_attention_keeps_the_projection_dtype_under_bf16():
    rotary, qkv = Rotary(8), torch.randn(2, 16, 3 * 16, dtype=torch.bfloat16, requires_grad=True)
    y = written_out(qkv, 2, rotary)
    (grad,) = torch.autograd.grad(y.float().sum(), qkv)
    assert y.dtype == grad.dtype == torch.bfloat16
    reference = plain_attention(qkv.detach().double(), 2, Rotary(8).double())
    assert (y.double() - reference).abs().max() < 0.05  # bf16 rounding, no more


def tiny(dropout=0.0):
    torch.manual_seed(0)
    return build_model(ModelConfig(n_layer=2, n_head=2, n_embd=16, context_length=16, dropout=dropout), 30)


def test_training_and_evaluation_forwards_agree():
    """Training attends with TrainingAttention, evaluation with scaled_dot_product_attention."""
    model, idx = tiny(), torch.randint(0, 30, (3, 16))
    trained = model.train()(idx)[0]
    evaluated = model.eval()(idx)[0]
    assert torch.allclose(trained, evaluated, atol=1e-5)


def test_bf16_autocast_trains_close_to_float32_and_keeps_float32_gradients():
    """Under CPU bf16 autocast, training attends (rotary included) in bf16; evaluation in float32."""
    model, idx = tiny(), torch.randint(0, 30, (3, 16))
    reference = model.train()(idx)[0]
    model.rotary._qk.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(idx)[0]
    assert set(model.rotary._qk) == {(16, torch.bfloat16, torch.device("cpu"), 8 ** -0.5)}  # bf16 q, k
    assert all(t.dtype == torch.bfloat16 for t in model.rotary._qk[16, torch.bfloat16, torch.device("cpu"), 8 ** -0.5])
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
    """TrainingAttention leans on this (no casts around its softmax); a PyTorch that rounded
    in between would make bf16 training's attention weights less precise, and this fails."""
    scores = (torch.randn(48, 64, 64) * 4).bfloat16()
    assert torch.equal(scores.softmax(-1), scores.float().softmax(-1).bfloat16())


def test_the_cnn_trains_under_bf16_autocast_and_samples_in_it():
    """bf16 autocast (the trainer's "auto" on a CPU with native bf16, always on CUDA): the CNN's
    logits stay within bf16 rounding of float32, its gradients float32, and its streaming state
    (the trainer samples under autocast too) reads on from what autocast computed."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(family="cnn", n_layer=3, n_embd=16, kernel_size=2, context_length=16), 30)
    idx = torch.randint(0, 30, (3, 16))
    reference = model(idx)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(idx)[0]
    assert (logits.float() - reference).abs().max() < 0.05
    logits.float().sum().backward()
    assert all(p.grad.dtype == torch.float32 for p in model.parameters())
    model.eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        _, state = model(idx[:1, :4], model.new_state())
        for t in range(4, 16):
            step, state = model.decode_step(int(idx[0, t]), state)
            assert (step[0].float() - reference[0, t]).abs().max() < 0.05, t
