"""AdamW as torch.optim.AdamW(fused=True) computes and saves it, without torch.optim's start-up cost.

Why not torch.optim.AdamW itself: building any torch optimizer imports torch._dynamo (its
add_param_group, zero_grad, state_dict and load_state_dict are wrapped by torch._disable_dynamo,
and its step by a helper that imports it on every call), which takes 1.5-2 s on a 2-core machine:
a third of the time from starting `minigpt-tui --train` to its first step, for a compiler the run
does not use (benchmarks/first_step.py prints that timeline).

This class makes the same update with the same kernel torch.optim.AdamW(fused=True) calls
(torch._fused_adamw_: one call per parameter group for every tensor), and keeps its state in the
same form, so checkpoints load into either (tests/test_adamw.py checks both, and the trajectory
bit for bit). What it leaves out, because the trainer never asks: amsgrad, maximize, capturable
and differentiable modes, hooks, and devices other than the CPU and CUDA (make_optimizer gives
those torch's own AdamW). Under fp16's GradScaler it is a plain optimizer: the scaler unscales the
gradients, then calls step() unless they overflowed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def supports(device: torch.device) -> bool:
    """This PyTorch has the fused kernel, for this device."""
    return device.type in ("cpu", "cuda") and hasattr(torch, "_fused_adamw_")


def zero_grads(params: Iterable[torch.Tensor], set_to_none: bool = True) -> None:
    """What torch.optim's zero_grad does to each parameter (also Muon's, core/training/muon.py)."""
    for p in params:
        if set_to_none:
            p.grad = None
        elif p.grad is not None:
            p.grad.detach_()
            p.grad.zero_()


@torch.no_grad()
def clip_divisor(params: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """What clip_grad_norm_(params, max_norm) would scale the gradients by, as the divisor that
    AdamW.step(grad_scale) applies inside its fused kernel: max(1, (norm + 1e-6) / max_norm), the
    norm of all gradients together. The gradients are then read once by the update instead of being
    multiplied in a pass of their own first (~0.5 ms of a ~45 ms step at the shakespeare-char
    shape); the update equals clipping's to float rounding (tests/test_adamw.py)."""
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    return torch.clamp((norm + 1e-6) / max_norm, min=1.0)


class AdamW:
    """Decoupled weight decay Adam over parameter groups (see the module docstring)."""

    def __init__(self, groups: Iterable[dict[str, Any]], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2) -> None:
        # torch.optim.AdamW's defaults, its flags included: they are part of what state_dict() saves.
        self.defaults: dict[str, Any] = {
            "lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay, "amsgrad": False,
            "maximize": False, "foreach": None, "capturable": False, "differentiable": False, "fused": True,
            "decoupled_weight_decay": True,
        }
        self.param_groups: list[dict[str, Any]] = [{**self.defaults, **g, "params": list(g["params"])} for g in groups]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            zero_grads(group["params"], set_to_none)

    @torch.no_grad()
    def step(self, grad_scale: torch.Tensor | None = None) -> None:
        """One update; with grad_scale (a 0-dim float32 tensor), of the gradients divided by it, in
        the fused kernel's own pass (clip_divisor's clipping)."""
        for group in self.param_groups:
            # One fused call per device and dtype, as torch.optim groups them.
            buckets: dict[tuple, tuple[list, ...]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.get(p)
                if not state:
                    state = self.state[p] = {
                        "step": torch.zeros((), dtype=torch.float32, device=p.device),
                        "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                        "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                    }
                lists = buckets.setdefault((p.device, p.dtype), ([], [], [], [], []))
                for bucket, tensor in zip(lists, (p, p.grad, state["exp_avg"], state["exp_avg_sq"], state["step"])):
                    bucket.append(tensor)
            beta1, beta2 = group["betas"]
            for params, grads, exp_avgs, exp_avg_sqs, steps in buckets.values():
                torch._foreach_add_(steps, 1)
                torch._fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=group["lr"], beta1=beta1,
                                    beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                                    amsgrad=False, maximize=False,
                                    grad_scale=None if grad_scale is None else grad_scale.to(params[0].device))

    def state_dict(self) -> dict[str, Any]:
        """torch.optim's form: parameters by their index over all groups, in order."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            ids = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        state = {index[id(p)]: dict(s) for p, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """What state_dict() (or torch.optim.AdamW's) saved, for the same parameters in the same groups."""
        if "muon" in saved:
            raise ValueError('the saved optimizer state is Muon\'s: the run was trained with train.optimizer = "muon"')
        groups = saved["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(g["params"]) != len(mine["params"]) for g, mine in zip(groups, self.param_groups)):
            raise ValueError("the saved optimizer state is for other parameter groups than this model's")
        by_index = {i: p for g, mine in zip(groups, self.param_groups) for i, p in zip(g["params"], mine["params"])}
        self.state = {}
        for i, saved_state in saved["state"].items():
            p = by_index[int(i)]
            self.state[p] = {
                # (copies: the update is in place, and must not write into the loaded checkpoint)
                key: value.to(device=p.device, dtype=torch.float32 if key == "step" else p.dtype, copy=True)
                if isinstance(value, torch.Tensor) else value
                for key, value in saved_state.items()
            }
        for g, mine in zip(groups, self.param_groups):
            mine.update({k: v for k, v in g.items() if k != "params"})
