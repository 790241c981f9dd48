"""The optimizer and its learning-rate schedule (the trainer's; benchmarks/ reuse them)."""

from __future__ import annotations

import math

import torch

from minigpt_tui.core.training import adamw
from minigpt_tui.core.training.muon import Muon, is_hidden_matrix


def lr_at(step: int, cfg) -> float:
    """Linear warm-up to learning_rate, then cosine decay to min_lr at max_steps."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.learning_rate - cfg.min_lr)


def make_optimizer(model: torch.nn.Module, cfg, device: torch.device,
                   autocast_dtype: torch.dtype = torch.float32) -> adamw.AdamW | torch.optim.AdamW | Muon:
    """cfg.optimizer: "adamw", or "muon" (core/training/muon.py: Muon for the blocks' matrices,
    this AdamW for the rest; it orthogonalizes in bf16 where the run trains in bf16 (its
    `autocast_dtype`), elsewhere in float32).

    AdamW: weight decay on matrices (linear and embedding weights), none on biases and norms.
    On the CPU and CUDA our own (core/training/adamw.py: torch's fused AdamW without the 1.5-2 s of
    importing torch._dynamo that building a torch optimizer costs), elsewhere torch's."""
    muon = cfg.optimizer == "muon"
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    matrices = [p for name, p in named if muon and is_hidden_matrix(name, p)]
    taken = {id(p) for p in matrices}
    params = [p for _, p in named if id(p) not in taken]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if adamw.supports(device):
        rest = adamw.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2))
    else:
        rest = torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2))
    if not muon:
        return rest
    return Muon(rest, matrices, lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                matmul_dtype=torch.bfloat16 if autocast_dtype == torch.bfloat16 else torch.float32)


def clip_and_step(optimizer, params: list[torch.Tensor], grad_clip: float, scaler=None) -> None:
    """The gradients clipped to norm grad_clip (0: not clipped), then the optimizer's step (under
    fp16's GradScaler: unscaled first, and the step skipped where they overflowed). Our AdamW clips
    inside its fused update (adamw.clip_divisor): a pass over the gradients fewer."""
    if scaler:
        scaler.unscale_(optimizer)
    if grad_clip and not scaler and isinstance(optimizer, adamw.AdamW):
        optimizer.step(adamw.clip_divisor(params, grad_clip))
        return
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
