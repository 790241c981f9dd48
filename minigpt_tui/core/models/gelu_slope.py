"""The MLP's exact GELU for a float32 training step on a CPU, its derivative computed in the same
pass (core/training_kernels.c's gelu_slope) and kept for the backward instead of the input.

Why. torch's GELU backward computes erf and exp again from the input, read back from memory long
after the forward wrote it: at the shakespeare-char-transformer shape, about 0.9 ms a layer of a
~45 ms step (AVX2, 2 threads). Computing the slope while the input is still in cache leaves the
backward one multiply. The memory kept is the same (the slope in place of the input), and the
values are F.gelu's and its gradient's to float rounding (tests/test_native_training.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from minigpt_tui.core import native


class GeluSlope(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        out, slope = gelu_and_slope(x)
        ctx.save_for_backward(slope)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (slope,) = ctx.saved_tensors
        return grad * slope


def gelu_and_slope(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """F.gelu(x) and its derivative at x, in one pass (float32 on the CPU, the kernels built)."""
    x = x.contiguous()
    out, slope = torch.empty_like(x), torch.empty_like(x)
    native.library().gelu_slope(x.data_ptr(), out.data_ptr(), slope.data_ptr(), x.numel(), native.threads())
    return out, slope


def gelu(x: torch.Tensor) -> torch.Tensor:
    """F.gelu(x) (exact), through GeluSlope where it pays: a float32 CPU tensor that autograd will
    take back through, the kernels built, not under torch.compile (which fuses its own)."""
    if (x.requires_grad and torch.is_grad_enabled() and x.dtype == torch.float32 and x.device.type == "cpu"
            and not torch.compiler.is_compiling() and native.enabled()):
        return GeluSlope.apply(x)
    return F.gelu(x)
