"""The Transformer's attention for training on a CPU, forward and backward written out.

Training steps at the sizes this runs on a laptop (context 64, head size 32) are mostly small
kernels around a few matmuls, and attention is where autograd adds the most of them: slicing the
fused projection into queries, keys and values, rotating queries and keys, making each head
contiguous for batched matmuls, and, backwards, the same in reverse (a stack, two zero-filled
slice gradients and their sum, a roll, four multiplies). Written out it is fewer kernels each way:

forward   rotate queries and keys straight into one (3, B*H, T, D) buffer of contiguous heads (the
          queries already multiplied by the score scale, so the scores need no extra pass), copy the
          values beside them, then scores (with the causal mask added in the same matmul),
          softmax, optional dropout, and the weighted sum of the values;
backward  the matmuls' gradients written straight into one such buffer, and the rotation
          undone from it straight into the gradient of the fused projection.

Same numbers as rotating with apply_rotary and calling scaled_dot_product_attention(is_causal=True)
(tests/test_train_path.py checks values and gradients in float64, dropout included). The scores
are T x T per head, so this is for short contexts only (transformer.SMALL_ATTENTION). Under
torch.compile, which fuses kernels itself, training attends with transformer.plain_causal_attention.

NativeAttention is the same forward and backward in one C call each way (core/training_kernels.c),
where the kernels are built and the step is float32 without dropout (native_fits): each sequence's
heads are computed while they sit in L1, the scores above the diagonal are skipped, and only the
softmax weights are kept for the backward.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from minigpt_tui.core import native

NATIVE_MAX_T = NATIVE_MAX_D = 128  # what training_kernels.c's per-thread buffers are sized for


def native_fits(qkv: torch.Tensor, n_head: int, dropout: float) -> bool:
    """Whether NativeAttention can take this step's attention (native_takes, for qkv (B, T, 3C))."""
    return native_takes(qkv.size(1), qkv.size(2) // 3 // n_head, qkv.dtype, qkv.device, dropout)


def native_takes(T: int, D: int, dtype: torch.dtype, device: torch.device, dropout: float) -> bool:
    """float32 on the CPU, no dropout, a head size D that is a multiple of 8 (the kernels' vectors)
    and sizes its buffers hold, the kernels built."""
    return (dtype == torch.float32 and device.type == "cpu" and not dropout and D % 8 == 0
            and D <= NATIVE_MAX_D and T <= NATIVE_MAX_T and native.enabled())


def rotate_into(out: torch.Tensor, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> None:
    """out = x * cos + halves_swapped(x) * sin: apply_rotary's rotation, written into `out`
    (any layout), three kernels."""
    torch.mul(x, cos, out=out)
    out.addcmul_(x.roll(x.size(-1) // 2, dims=-1), sin)


class TrainingAttention(torch.autograd.Function):
    """(B, T, 3C) fused projections -> (B, T, C) causal attention output, rotary included.

    cos, sin: (2, 1, 1, T, D) tables from Rotary.qk_tables, row 0 for queries (times the score
    scale), row 1 for keys; sin_swapped: sin with its halves swapped. future: (T, T), -inf above
    the diagonal.
    """

    @staticmethod
    def forward(ctx, qkv, n_head: int, cos, sin, sin_swapped, future, dropout: float):
        B, T, C = qkv.size(0), qkv.size(1), qkv.size(2) // 3
        H, D = n_head, C // n_head
        x = qkv.view(B, T, 3, H, D).permute(2, 0, 3, 1, 4)  # (3, B, H, T, D), a view
        heads = qkv.new_empty(x.shape)
        rotate_into(heads[:2], x[:2], cos, sin)
        heads[2].copy_(x[2])
        q, k, v = heads.view(3, B * H, T, D).unbind(0)
        weights = torch.baddbmm(future, q, k.transpose(1, 2)).softmax(-1)
        if dropout:
            dropped, keep = torch.native_dropout(weights, dropout, True)
        else:
            dropped, keep = weights, None
        y = torch.bmm(dropped, v)
        ctx.save_for_backward(heads, weights, dropped, keep, cos, sin_swapped)
        ctx.dropout = dropout
        return y.view(B, H, T, D).transpose(1, 2).reshape(B, T, C)

    @staticmethod
    @once_differentiable  # (a hand-written backward: no gradients of gradients)
    def backward(ctx, grad_y):
        heads, weights, dropped, keep, cos, sin_swapped = ctx.saved_tensors
        _, B, H, T, D = heads.shape
        q, k, v = heads.view(3, B * H, T, D).unbind(0)
        grad_y = grad_y.view(B, T, H, D).transpose(1, 2).reshape(B * H, T, D)
        grad_heads = torch.empty_like(heads)
        grad_q, grad_k, grad_v = grad_heads.view(3, B * H, T, D).unbind(0)
        torch.bmm(dropped.transpose(1, 2), grad_y, out=grad_v)
        grad_weights = torch.bmm(grad_y, v.transpose(1, 2))
        if ctx.dropout:
            grad_weights = torch.ops.aten.native_dropout_backward(grad_weights, keep, 1.0 / (1.0 - ctx.dropout))
        grad_scores = torch._softmax_backward_data(grad_weights, weights, -1, weights.dtype)
        torch.bmm(grad_scores, k, out=grad_q)
        torch.bmm(grad_scores.transpose(1, 2), q, out=grad_k)
        # The rotation's transpose is the rotation backwards: with h the rotated heads' gradient and
        # halves_swapped its own transpose, x's is h * cos + halves_swapped(h * sin)
        # = h * cos + halves_swapped(h) * sin_swapped.
        grad_qkv = grad_heads.new_empty(B, T, 3, H, D)
        as_heads = grad_qkv.permute(2, 0, 3, 1, 4)  # a view: writes land in grad_qkv's layout
        rotate_into(as_heads[:2], grad_heads[:2], cos, sin_swapped)
        as_heads[2].copy_(grad_heads[2])
        return grad_qkv.view(B, T, 3 * H * D), None, None, None, None, None, None


class NativeAttention(torch.autograd.Function):
    """TrainingAttention's forward and backward (dropout 0, float32) in training_kernels.c: the same
    arguments, and the same results to float rounding."""

    @staticmethod
    def forward(ctx, qkv, n_head: int, cos, sin, sin_swapped, future, dropout: float):
        qkv = qkv.contiguous()
        y, probs = native_attention_forward(qkv, n_head, (cos, sin, sin_swapped))
        ctx.save_for_backward(qkv, probs, cos, sin, sin_swapped)
        ctx.n_head = n_head
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        qkv, probs, *tables = ctx.saved_tensors
        return native_attention_backward(grad_y, qkv, probs, ctx.n_head, tables), None, None, None, None, None, None


def native_attention_forward(qkv: torch.Tensor, n_head: int, tables) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, 3C) contiguous fused projections -> the attention output (B, T, C) and the softmax
    weights (B, H, T, T) its backward takes; tables: Rotary.qk_tables' (cos, sin, sin_swapped)."""
    B, T, C = qkv.size(0), qkv.size(1), qkv.size(2) // 3
    cos, sin, _ = tables
    probs, y = qkv.new_empty(B, n_head, T, T), qkv.new_empty(B, T, C)
    native.library().attention_forward(qkv.data_ptr(), cos.data_ptr(), sin.data_ptr(), probs.data_ptr(),
                                       y.data_ptr(), B, T, n_head, C // n_head, native.threads())
    return y, probs


def native_attention_backward(grad_y: torch.Tensor, qkv: torch.Tensor, probs: torch.Tensor, n_head: int,
                              tables, out: torch.Tensor | None = None) -> torch.Tensor:
    """The gradient of the fused projections (B, T, 3C) from the output's (B, T, C), written into
    `out` if given, which may be qkv itself (training_kernels.c reads a head before it writes it)."""
    grad_y = grad_y.contiguous()
    B, T, C = qkv.size(0), qkv.size(1), qkv.size(2) // 3
    cos, sin, sin_swapped = tables
    grad_qkv = torch.empty_like(qkv) if out is None else out
    native.library().attention_backward(grad_y.data_ptr(), qkv.data_ptr(), probs.data_ptr(), cos.data_ptr(),
                                        sin.data_ptr(), sin_swapped.data_ptr(), grad_qkv.data_ptr(), B, T,
                                        n_head, C // n_head, native.threads())
    return grad_qkv
