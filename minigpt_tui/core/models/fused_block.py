"""A whole Transformer block on a CPU in float32, forward and backward written out: the training
step as one autograd Function (FusedBlock), and the forward alone for evaluations (block_forward).

Why. At the sizes a laptop trains (shakespeare-char: 4 layers, 128 wide, batch 12 x 64) a step is
~45 ms, of which ~10 ms does not shrink with the batch: per-call costs. Through the modules a block is
~40 torch calls forward (norms, linears with their views and transposes, attention, GELU, residual
sums), each recorded for autograd, and ~15 nodes for its engine to run backward. Here the block is one
autograd Function: the forward calls the same kernels with grad off and keeps what the backward needs;
the backward is the chain rule written down, ~20 calls with no graph around them. At a size where
only those costs count (16 wide, one sequence of 16) the step's forward went from 1.8 to 1.0 ms and
its backward from 1.4 to 1.0 ms; at the shakespeare-char shape a step took 0.94-1.0x the time
(median ~0.97x; alternated blocks of steps in one process, AVX2, 2 threads).

What it computes, as Block.forward with LayerNorm (no bias), no linear biases, exact GELU and
NativeAttention (training_attention.native_fits):
    h1 = norm1(x);  qkv = h1 Wqkv^T;  y = attention(qkv)     x2 = x + y Wproj^T
    h2 = norm2(x2); u = h2 Wup^T;     g = gelu(u)            out = x2 + g Wdown^T
Backward, from d = dL/d out:
    dWdown = d^T g;  du = (d Wdown) * gelu'(u);  dWup = du^T h2;  dx2 = d + norm2'(du Wup)
    dWproj = dx2^T y;  dqkv = attention'(dx2 Wproj);  dWqkv = dqkv^T h1;  dx = dx2 + norm1'(dqkv Wqkv)
The same numbers as the modules' path to float rounding (tests/test_fused_block.py checks the
gradients of every weight and of the input; on an AVX2 machine they were the same bits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from minigpt_tui.core.models.gelu_slope import gelu_and_slope
from minigpt_tui.core.models.training_attention import (
    native_attention_backward,
    native_attention_forward,
    native_takes,
)


def fits(block, x: torch.Tensor) -> bool:
    """Whether FusedBlock can take this block's training step: gradients on, no dropout, and what
    _takes asks."""
    return (block.training and torch.is_grad_enabled() and not block.mlp.drop.p and not block.attn.resid_drop.p
            and _takes(block, x, block.attn.dropout))


def reads(block, x: torch.Tensor) -> bool:
    """Whether block_forward can take this block's forward without gradients (an evaluation, the
    uncached sampler): no dropout at work, and what _takes asks."""
    drops = block.training and (block.mlp.drop.p or block.attn.resid_drop.p or block.attn.dropout)
    return not torch.is_grad_enabled() and not drops and _takes(block, x, 0.0)


def _takes(block, x: torch.Tensor, dropout: float) -> bool:
    """float32 on the CPU outside autocast and torch.compile, our own layout (rotary, LayerNorm
    without bias, no linear biases, exact GELU, one key/value head per query head), at most a window
    of positions, and attention the C kernels can take (native_takes)."""
    attn, mlp, norm1, norm2 = block.attn, block.mlp, block.norm1, block.norm2
    return (x.dtype == torch.float32 and x.device.type == "cpu" and not torch.is_autocast_enabled("cpu")
            and not torch.compiler.is_compiling()
            and attn.rotary and attn.n_kv_head == attn.n_head and mlp.approximate == "none"
            and isinstance(norm1, torch.nn.LayerNorm) and norm1.bias is None and norm2.bias is None
            and attn.qkv.bias is None and attn.proj.bias is None and mlp.up.bias is None and mlp.down.bias is None
            and x.size(1) <= attn.window and native_takes(x.size(1), attn.head_size, x.dtype, x.device, dropout))


def block_step(block, x: torch.Tensor, rotary) -> torch.Tensor:
    """Block.forward(x) through FusedBlock (fits(block, x) must hold)."""
    return FusedBlock.apply(x, *_weights(block), _tables(block, x, rotary), block.attn.n_head, block.norm1.eps)


def block_forward(block, x: torch.Tensor, rotary) -> torch.Tensor:
    """Block.forward(x) with nothing kept for a backward (reads(block, x) must hold): the same
    kernels. An evaluation's forward at the shakespeare-char shape took 0.86x the time of the
    modules' (rotary, then scaled_dot_product_attention; AVX2, 2 threads)."""
    w_norm1, w_qkv, w_proj, w_norm2, w_up, w_down = _weights(block)
    B, T, C = x.shape
    rows = x.reshape(B * T, C)
    qkv = torch.mm(F.layer_norm(rows, (C,), w_norm1, None, block.norm1.eps), w_qkv.t())
    y, _ = native_attention_forward(qkv.view(B, T, -1), block.attn.n_head, _tables(block, x, rotary))
    x2 = torch.addmm(rows, y.view(B * T, C), w_proj.t())
    h = F.gelu(torch.mm(F.layer_norm(x2, (C,), w_norm2, None, block.norm2.eps), w_up.t()))
    return torch.addmm(x2, h, w_down.t()).view(B, T, C)


def _weights(block) -> tuple[torch.Tensor, ...]:
    attn, mlp = block.attn, block.mlp
    return block.norm1.weight, attn.qkv.weight, attn.proj.weight, block.norm2.weight, mlp.up.weight, mlp.down.weight


def _tables(block, x: torch.Tensor, rotary):
    return rotary.qk_tables(x.size(1), x.dtype, block.attn.head_size ** -0.5)


class FusedBlock(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_norm1, w_qkv, w_proj, w_norm2, w_up, w_down, tables, n_head: int, eps: float):
        B, T, C = x.shape
        rows = x.reshape(B * T, C)
        h1, mean1, rstd1 = torch.native_layer_norm(rows, (C,), w_norm1, None, eps)
        qkv = torch.mm(h1, w_qkv.t())
        y, probs = native_attention_forward(qkv.view(B, T, -1), n_head, tables)
        x2 = torch.addmm(rows, y.view(B * T, C), w_proj.t())
        h2, mean2, rstd2 = torch.native_layer_norm(x2, (C,), w_norm2, None, eps)
        g, slope = gelu_and_slope(torch.mm(h2, w_up.t()))
        out = torch.addmm(x2, g, w_down.t())
        ctx.save_for_backward(rows, mean1, rstd1, h1, qkv, probs, y, x2, mean2, rstd2, h2, g, slope,
                              w_norm1, w_qkv, w_proj, w_norm2, w_up, w_down)
        ctx.tables, ctx.n_head, ctx.shape = tables, n_head, (B, T, C)
        return out.view(B, T, C)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        (rows, mean1, rstd1, h1, qkv, probs, y, x2, mean2, rstd2, h2, g, slope,
         w_norm1, w_qkv, w_proj, w_norm2, w_up, w_down) = ctx.saved_tensors
        B, T, C = ctx.shape
        need = ctx.needs_input_grad
        d = grad_out.reshape(B * T, C)
        d_down = torch.mm(d.t(), g) if need[6] else None
        du = torch.mm(d, w_down).mul_(slope)  # a fresh product: multiplied in place
        d_up = torch.mm(du.t(), h2) if need[5] else None
        layer_norm_backward = torch.ops.aten.native_layer_norm_backward
        dx2, d_norm2, _ = layer_norm_backward(torch.mm(du, w_up), x2, (C,), mean2, rstd2, w_norm2, None,
                                              (True, need[4], False))
        dx2.add_(d)  # the residual's share
        d_proj = torch.mm(dx2.t(), y.view(B * T, C)) if need[3] else None
        # The attention's gradient takes the place of the projections it is of, which nothing reads
        # after: the cache lines the kernel writes are the ones it has just read, not 1.2 MB a layer
        # of fresh memory fetched before it is written (the kernel took ~0.75x the time with cold
        # caches, a step ~0.98x; AVX2). The saved tensor's version is bumped, so a second backward
        # through a retained graph fails as PyTorch's own do.
        qkv = qkv.view(B, T, -1)
        dqkv = native_attention_backward(torch.mm(dx2, w_proj).view(B, T, C), qkv, probs, ctx.n_head, ctx.tables,
                                         out=qkv).view(B * T, -1)
        torch.autograd.graph.increment_version(qkv)
        d_qkv = torch.mm(dqkv.t(), h1) if need[2] else None
        dx, d_norm1, _ = layer_norm_backward(torch.mm(dqkv, w_qkv), rows, (C,), mean1, rstd1, w_norm1, None,
                                             (True, need[1], False))
        dx.add_(dx2)
        return dx.view(B, T, C), d_norm1, d_qkv, d_proj, d_norm2, d_up, d_down, None, None, None
