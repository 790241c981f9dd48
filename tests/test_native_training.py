"""core/training_kernels.c: a float32 training step's attention (NativeAttention) and GELU (GeluSlope)
in C where a compiler is at hand. They compute what the torch path computes, to float rounding:
values and gradients within 1e-5 of TrainingAttention's and F.gelu's, whatever the thread count
(bit for bit), and a model trains to the same loss with them as without."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from minigpt_tui.core import native
from minigpt_tui.core.config import ModelConfig
from minigpt_tui.core.models import build_model, gelu_slope
from minigpt_tui.core.models.training_attention import NativeAttention, TrainingAttention, native_fits
from minigpt_tui.core.models.transformer import Rotary, _future_mask

from test_native import compiler_refusing, needs_compiler


def attend(attention, qkv, n_head):
    T, D = qkv.size(1), qkv.size(2) // 3 // n_head
    return attention.apply(qkv, n_head, *Rotary(D).qk_tables(T, qkv.dtype, D ** -0.5),
                           _future_mask(T, qkv.dtype, qkv.device), 0.0)


def values_and_gradient(attention, qkv, n_head, g):
    qkv = qkv.detach().requires_grad_()
    y = attend(attention, qkv, n_head)
    return y, *torch.autograd.grad(y, qkv, g)


@needs_compiler
@pytest.mark.parametrize("B, T, H, D", [(3, 64, 4, 32), (2, 13, 2, 16), (1, 1, 1, 8), (2, 37, 3, 64),
                                        (1, 128, 1, 128), (2, 24, 2, 40)])
def test_native_attention_computes_what_training_attention_does(B, T, H, D):
    """Odd lengths, lengths that are not a multiple of 8 and head sizes from 8 to 128: values and
    gradients within 1e-5 of the torch path's, scaled to their size."""
    torch.manual_seed(0)
    qkv, g = torch.randn(B, T, 3 * H * D) * 2, torch.randn(B, T, H * D)
    assert native_fits(qkv, H, 0.0)
    ours, ours_grad = values_and_gradient(NativeAttention, qkv, H, g)
    theirs, their_grad = values_and_gradient(TrainingAttention, qkv, H, g)
    assert (ours - theirs).abs().max() <= 1e-5 * theirs.abs().max()
    assert (ours_grad - their_grad).abs().max() <= 1e-5 * their_grad.abs().max()


@needs_compiler
def test_native_results_do_not_depend_on_the_thread_count():
    """Each (sequence, head) is one thread's, computed in one order: 1 thread or 2, the same bits."""
    torch.manual_seed(1)
    qkv, g, h = torch.randn(4, 64, 3 * 64), torch.randn(4, 64, 64), torch.randn(300, 70)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            x = h.clone().requires_grad_()
            gelu = gelu_slope.gelu(x)
            results.append((*values_and_gradient(NativeAttention, qkv, 2, g), gelu, *torch.autograd.grad(gelu.sum(), x)))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(*results))


@needs_compiler
def test_gelu_with_its_slope_is_f_gelu_and_its_gradient():
    x = (torch.randn(50, 77) * 4).requires_grad_()
    g = torch.randn(50, 77)
    ours = gelu_slope.gelu(x)
    assert type(ours.grad_fn).__name__ == "GeluSlopeBackward"
    (ours_grad,) = torch.autograd.grad(ours, x, g)
    theirs = F.gelu(x)
    (their_grad,) = torch.autograd.grad(theirs, x, g)
    assert torch.allclose(ours, theirs, atol=1e-6, rtol=1e-6)
    assert torch.allclose(ours_grad, their_grad, atol=1e-6, rtol=1e-6)


def test_the_torch_path_where_the_kernels_do_not_fit(monkeypatch):
    """bf16, dropout, a head size that is not a multiple of 8, more positions than the kernels'
    buffers, or the kernels turned off: TrainingAttention and F.gelu."""
    qkv = torch.randn(2, 16, 3 * 32)
    assert not native_fits(qkv.bfloat16(), 2, 0.0)
    assert not native_fits(qkv, 2, 0.1)
    assert not native_fits(torch.randn(2, 16, 3 * 12), 1, 0.0)
    assert not native_fits(torch.randn(1, 129, 3 * 16), 2, 0.0)
    monkeypatch.setenv(native.ENV, "0")
    assert not native_fits(qkv, 2, 0.0)
    x = torch.randn(4, 4, requires_grad=True)
    assert type(gelu_slope.gelu(x).grad_fn).__name__ == "GeluBackward0"
    with torch.no_grad():  # nothing to take back through: no slope to keep
        monkeypatch.setenv(native.ENV, "1")
        assert torch.equal(gelu_slope.gelu(x), F.gelu(x))


@needs_compiler
@pytest.mark.parametrize("bias, kernel_nodes", [
    (False, {"FusedBlockBackward"}),  # our layout: each block one Function (models/fused_block.py)
    (True, {"NativeAttentionBackward", "GeluSlopeBackward"}),  # biases: the modules, with the kernels
])
def test_a_model_trains_the_same_with_and_without_the_kernels(monkeypatch, bias, kernel_nodes):
    """A few AdamW steps of a tiny Transformer: the kernels are used (their backward nodes are in
    the graph) and the losses are the torch path's to float rounding."""
    def losses() -> tuple[list[float], set[str]]:
        torch.manual_seed(0)
        model = build_model(ModelConfig(n_layer=2, n_head=2, n_embd=32, context_length=24, bias=bias), 30).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        data = torch.randint(0, 30, (4, 25), generator=torch.Generator().manual_seed(3))
        out, nodes = [], set()
        for _ in range(5):
            logits = model(data[:, :-1])[0]
            loss = F.cross_entropy(logits.reshape(-1, 30), data[:, 1:].reshape(-1))
            stack, seen = [loss.grad_fn], set()
            while stack:  # every node of the graph
                node = stack.pop()
                if node is not None and node not in seen:
                    seen.add(node)
                    nodes.add(type(node).__name__)
                    stack.extend(n for n, _ in node.next_functions)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            out.append(loss.item())
        return out, nodes

    fast, fast_nodes = losses()
    monkeypatch.setenv(native.ENV, "0")
    slow, slow_nodes = losses()
    assert kernel_nodes <= fast_nodes
    assert not {"FusedBlockBackward", "NativeAttentionBackward", "GeluSlopeBackward"} & (slow_nodes | fast_nodes - kernel_nodes)
    assert fast == pytest.approx(slow, abs=1e-5)
    assert fast[-1] < fast[0]


@needs_compiler
def test_a_compiler_without_openmp_gets_kernels_that_run_in_one_thread(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(compiler_refusing("-fopenmp", tmp_path)))
    native.library.cache_clear()
    try:
        lib = native.library()
        assert lib is not None and not lib.kernels_threaded() and native.threads() == 1
        test_native_attention_computes_what_training_attention_does(2, 13, 2, 16)
    finally:
        native.library.cache_clear()


@needs_compiler
def test_the_kernels_share_torchs_openmp_threads():
    """Built with OpenMP and linked to the runtime torch already loaded: torch's thread count."""
    if not native.library().kernels_threaded():
        pytest.skip("this compiler builds without OpenMP")
    if not native._one_openmp_runtime():
        pytest.skip("this torch runs another OpenMP runtime beside the kernels': they keep to one thread")
    assert native.threads() == torch.get_num_threads()
