"""models/fused_block.py: a Transformer block's float32 CPU training step as one autograd Function,
and its forward alone for evaluations. They compute what the modules compute (values and every
gradient, to float rounding), take only the blocks they can, and leave the rest to the modules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from minigpt_tui.core import native
from minigpt_tui.core.config import ModelConfig
from minigpt_tui.core.models import build_model, fused_block

from test_native import needs_compiler


def loss_and_grads(model, data, fused: bool, monkeypatch):
    """The loss and the gradients of the input embeddings and of every parameter, with the blocks
    through FusedBlock or (fused=False) through the modules."""
    with monkeypatch.context() as patch:
        if not fused:
            patch.setattr(fused_block, "fits", lambda block, x: False)
        model.zero_grad()
        logits = model(data[:, :-1])[0]
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), data[:, 1:].reshape(-1))
        loss.backward()
    return loss.item(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@needs_compiler
@pytest.mark.parametrize("fields", [{}, {"n_head": 2, "n_embd": 48, "context_length": 13}, {"tie_weights": False}])
def test_the_fused_block_computes_what_the_modules_do(monkeypatch, fields):
    torch.manual_seed(0)
    config = ModelConfig(**{"n_layer": 2, "n_head": 4, "n_embd": 64, "context_length": 32, **fields})
    model = build_model(config, 40).train()
    data = torch.randint(0, 40, (3, config.context_length + 1), generator=torch.Generator().manual_seed(1))
    calls = []
    apply = fused_block.FusedBlock.apply
    monkeypatch.setattr(fused_block.FusedBlock, "apply", lambda *a: calls.append(1) or apply(*a))
    fused_loss, fused = loss_and_grads(model, data, True, monkeypatch)
    assert len(calls) == config.n_layer
    loss, grads = loss_and_grads(model, data, False, monkeypatch)
    assert len(calls) == config.n_layer and fused.keys() == grads.keys()
    assert fused_loss == pytest.approx(loss, abs=1e-6)
    for name, g in grads.items():
        assert (fused[name] - g).abs().max() <= 1e-5 * g.abs().max(), name


@needs_compiler
def test_a_frozen_weight_gets_no_gradient_and_the_others_are_unchanged(monkeypatch):
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=2, n_head=2, n_embd=32, context_length=16), 30).train()
    frozen = [model.blocks[0].attn.qkv.weight, model.blocks[1].norm2.weight, model.blocks[1].mlp.down.weight]
    for p in frozen:
        p.requires_grad_(False)
    data = torch.randint(0, 30, (2, 17), generator=torch.Generator().manual_seed(2))
    _, fused = loss_and_grads(model, data, True, monkeypatch)
    _, grads = loss_and_grads(model, data, False, monkeypatch)
    assert all(p.grad is None for p in frozen) and fused.keys() == grads.keys()
    assert all(torch.allclose(fused[name], g, atol=1e-6, rtol=1e-5) for name, g in grads.items())


@pytest.mark.parametrize("fields", [
    {"dropout": 0.1}, {"bias": True}, {"norm": "rmsnorm"}, {"activation": "swiglu"}, {"activation": "gelu_tanh"},
    {"n_kv_head": 1}, {"positions": "learned"}, {"n_embd": 36, "n_head": 3},  # head size 12: no vector fits
], ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
def test_blocks_the_fused_step_cannot_take_go_through_the_modules(fields):
    model = build_model(ModelConfig(**{"n_layer": 1, "n_head": 2, "n_embd": 32, "context_length": 16, **fields}), 30)
    x = torch.randn(2, 16, model.config.n_embd, requires_grad=True)
    assert not fused_block.fits(model.blocks[0].train(), x)


@needs_compiler
def test_the_fused_step_is_for_float32_training_with_gradients_and_the_kernels(monkeypatch):
    block = build_model(ModelConfig(n_layer=1, n_head=2, n_embd=32, context_length=16), 30).blocks[0].train()
    x = torch.randn(2, 16, 32, requires_grad=True)
    assert fused_block.fits(block, x)
    assert not fused_block.fits(block, x.double())
    with torch.no_grad():
        assert not fused_block.fits(block, x)  # evaluation: nothing to keep for a backward
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fused_block.fits(block, x)
    assert not fused_block.fits(block.eval(), x)
    monkeypatch.setenv(native.ENV, "0")
    assert not fused_block.fits(block.train(), x)


@needs_compiler
def test_an_evaluation_through_the_kernels_gives_the_modules_logits(monkeypatch):
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=2, n_head=4, n_embd=64, context_length=32), 40).eval()
    x = torch.randint(0, 40, (3, 32), generator=torch.Generator().manual_seed(1))
    calls = []
    forward = fused_block.block_forward
    monkeypatch.setattr(fused_block, "block_forward", lambda *a: calls.append(1) or forward(*a))
    with torch.no_grad():
        ours = model(x)[0]
    with torch.inference_mode():  # (the sampler's mode)
        again = model(x[:, :20])[0]
    assert len(calls) == 4
    monkeypatch.setattr(fused_block, "reads", lambda block, x: False)
    with torch.no_grad():
        theirs = model(x)[0]
    assert len(calls) == 4
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0) and torch.allclose(again, theirs[:, :20], atol=1e-5, rtol=0)


@needs_compiler
def test_a_forward_the_kernels_cannot_take_goes_through_the_modules():
    model = build_model(ModelConfig(n_layer=1, n_head=2, n_embd=32, context_length=16, dropout=0.1), 30)
    block, x = model.blocks[0], torch.randn(2, 16, 32)
    with torch.no_grad():
        assert fused_block.reads(block.eval(), x)
        assert not fused_block.reads(block.train(), x)  # dropout at work
        assert not fused_block.reads(block.eval(), torch.randn(2, 17, 32))  # past the window: banded mask
    assert not fused_block.reads(block.eval(), x)  # gradients on: FusedBlock's, when training


@needs_compiler
def test_a_second_backward_through_the_same_graph_fails_as_pytorchs_own_do():
    """The attention's gradient is written over the projections it is of (nothing reads them after):
    their version is bumped, so a graph kept with retain_graph cannot silently use them again."""
    model = build_model(ModelConfig(n_layer=1, n_head=2, n_embd=32, context_length=16), 30).train()
    loss = model(torch.randint(0, 30, (2, 16)))[0].sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
