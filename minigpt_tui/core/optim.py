"""The optimizer and its learning-rate schedule (the trainer's; benchmarks/ reuse them)."""

from __future__ import annotations

import math

import torch


def lr_at(step: int, cfg) -> float:
    """Linear warm-up to learning_rate, then cosine decay to min_lr at max_steps."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.learning_rate - cfg.min_lr)


def make_optimizer(model: torch.nn.Module, cfg, device: torch.device) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices (linear and embedding weights), none on biases and norms."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    extra = {"fused": True} if device.type in ("cuda", "cpu") else {}
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), **extra)


def clip_grad_norm(parameters, max_norm: float) -> torch.Tensor:
    """torch.nn.utils.clip_grad_norm_ with the same result, bit for bit, in fewer kernels on a CPU.

    torch's CPU path takes one norm and one multiply per gradient (no foreach kernels there), and
    multiplies even when the factor is clamped to exactly 1. Here the norms are one foreach call
    (on a CPU, the same per-tensor kernel in a C++ loop), the factor is computed exactly as torch
    does, and the gradients are scaled only when it is below 1: when the norm is under max_norm
    nothing changes, as multiplying by 1.0 changes nothing. Asking whether it is below 1 reads a
    number back, which would wait for a GPU: elsewhere this is torch's own function.
    """
    params = [p for p in parameters if p.grad is not None]
    if not params or params[0].grad.device.type != "cpu":
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    grads = [p.grad for p in params]
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    factor = max_norm / (total + 1e-6)
    if factor.item() < 1.0:
        torch._foreach_mul_(grads, factor)
    return total
