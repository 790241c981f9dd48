"""The optimizer and its learning-rate schedule (the trainer's; benchmarks/ reuse them)."""

from __future__ import annotations

import math

import torch

from minigpt_tui.core.training import adamw


def lr_at(step: int, cfg) -> float:
    """Linear warm-up to learning_rate, then cosine decay to min_lr at max_steps."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.learning_rate - cfg.min_lr)


def make_optimizer(model: torch.nn.Module, cfg, device: torch.device) -> adamw.AdamW | torch.optim.AdamW:
    """AdamW; weight decay on matrices (linear and embedding weights), none on biases and norms.
    On the CPU and CUDA our own (core/training/adamw.py: torch's fused AdamW without the 1.5-2 s of
    importing torch._dynamo that building a torch optimizer costs), elsewhere torch's."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if adamw.supports(device):
        return adamw.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2))
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2))
