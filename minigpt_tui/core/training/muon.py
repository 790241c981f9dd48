"""Muon for the hidden layers' matrices, AdamW for the rest (train.optimizer = "muon").

Muon (Keller Jordan, 2024; the optimizer of the nanoGPT speedruns) takes SGD's momentum of a
matrix's gradient and replaces it by the nearest semi-orthogonal matrix before stepping: every
direction the update spans moves by the same amount, so the rare directions that Adam's
per-element scaling leaves small learn as fast as the common ones. The orthogonalization is
five iterations of a quintic Newton-Schulz polynomial (X <- aX + (bA + cA^2)X, A = X X^T): a few
small matrix products per matrix, about a quarter of a step of shakespeare-char-best on 2 CPU cores
in bf16, which Muon wins back by learning more per step (docs/performance.md).

Which parameters: the 2-D weights inside the blocks (attention, MLP, the RNN's gates, the CNN's
convolutions). The embedding, the output head, norms and biases are not matrices of the hidden
layers in that sense (an embedding row moves only when its token is seen) and stay with AdamW.

One learning rate for both: the orthogonal update is scaled by 0.2 * sqrt(max(rows, cols)), which
gives it the root-mean-square size of a typical AdamW update (Liu et al. 2025, "Muon is scalable
for LLM training"), so train.learning_rate, its schedule and weight_decay mean the same for both
halves and a recipe switches optimizers with one field.

Speed: matrices of the same shape are orthogonalized together, as one batch of matrix products.
The products run in bfloat16 where the run trains in bfloat16 (a CPU with native bf16, CUDA),
as the speedruns do; elsewhere in float32, as emulated bf16 would be far slower.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from minigpt_tui.core.training.adamw import zero_grads

# The quintic's coefficients, chosen so that five iterations take singular values anywhere in
# (0, 1] to about 0.7-1.2 (Keller Jordan's; exact orthogonality is not needed, speed is).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
RMS_MATCH = 0.2  # the update's RMS after scaling: that of a typical AdamW step


def is_hidden_matrix(name: str, param: torch.nn.Parameter) -> bool:
    """A weight Muon steps: a matrix inside the blocks (not the embedding, head, norms, biases)."""
    return name.startswith("blocks.") and param.dim() == 2


def orthogonalize(g: torch.Tensor, dtype: torch.dtype = torch.float32, steps: int = NS_STEPS) -> torch.Tensor:
    """The nearest semi-orthogonal matrix to each matrix of g (..., rows, cols), approximately."""
    x = g.to(dtype)
    wide = x.size(-2) <= x.size(-1)
    if not wide:  # iterate on the smaller Gram matrix X X^T
        x = x.mT
    # Singular values into (0, 1]: the Frobenius norm bounds the largest.
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    a, b, c = NS_COEFFICIENTS
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x if wide else x.mT


class Muon:
    """Muon over `matrices`, and an AdamW (ours or torch's) over everything else.

    param_groups lists AdamW's groups and then Muon's, so a schedule that sets every group's "lr"
    drives both; step(), zero_grad(), state_dict() and load_state_dict() cover both halves.
    """

    def __init__(self, adamw: Any, matrices: list[torch.nn.Parameter], lr: float, weight_decay: float,
                 momentum: float = 0.95, matmul_dtype: torch.dtype = torch.float32) -> None:
        self.adamw = adamw
        self.matmul_dtype = matmul_dtype
        self.muon_group: dict[str, Any] = {"params": list(matrices), "lr": lr, "weight_decay": weight_decay,
                                           "momentum": momentum, "nesterov": True}
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [*self.adamw.param_groups, self.muon_group]

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.adamw.zero_grad(set_to_none=set_to_none)
        zero_grads(self.muon_group["params"], set_to_none)

    @torch.no_grad()
    def step(self) -> None:
        self.adamw.step()
        group = self.muon_group
        lr, decay, momentum = group["lr"], group["weight_decay"], group["momentum"]
        by_shape: dict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state.get(p)
            if state is None:
                state = self.state[p] = {"momentum_buffer": torch.zeros_like(p)}
            buf = state["momentum_buffer"]
            buf.lerp_(p.grad, 1 - momentum)
            # Nesterov: the gradient pulled towards the new momentum.
            update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
            by_shape.setdefault(tuple(p.shape), []).append((p, update))
        for shape, items in by_shape.items():
            ortho = orthogonalize(torch.stack([u for _, u in items]), self.matmul_dtype)
            scale = RMS_MATCH * math.sqrt(max(shape))
            for (p, _), o in zip(items, ortho.unbind(0)):
                if decay:
                    p.mul_(1 - lr * decay)
                p.add_(o.to(p.dtype), alpha=-lr * scale)

    def state_dict(self) -> dict[str, Any]:
        index = {id(p): i for i, p in enumerate(self.muon_group["params"])}
        return {
            "adamw": self.adamw.state_dict(),
            "muon": {"state": {index[id(p)]: dict(s) for p, s in self.state.items()},
                     "param_groups": [{**{k: v for k, v in self.muon_group.items() if k != "params"},
                                       "params": list(range(len(index)))}]},
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """What state_dict() saved, for the same parameters; ValueError for another optimizer's."""
        if not isinstance(saved, dict) or "muon" not in saved or "adamw" not in saved:
            raise ValueError('the saved optimizer state is not Muon\'s: the run was trained with train.optimizer = "adamw"')
        muon = saved["muon"]
        params = self.muon_group["params"]
        if len(muon["param_groups"]) != 1 or len(muon["param_groups"][0]["params"]) != len(params):
            raise ValueError("the saved Muon state is for other matrices than this model's")
        buffers = {params[int(i)]: s["momentum_buffer"] for i, s in muon["state"].items()}
        if any(buf.shape != p.shape for p, buf in buffers.items()):
            raise ValueError("the saved Muon state is for other matrices than this model's")
        self.adamw.load_state_dict(saved["adamw"])
        # (copies: the update is in place and must not write into the loaded checkpoint)
        self.state = {p: {"momentum_buffer": buf.to(p.device, p.dtype, copy=True)} for p, buf in buffers.items()}
        self.muon_group.update({k: v for k, v in muon["param_groups"][0].items() if k != "params"})
