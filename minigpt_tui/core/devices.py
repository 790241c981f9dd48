"""Where training runs: the device, the arithmetic precision, and the torchrun processes.

Read once by the trainer at start-up; kept apart from the loop so that trainer.py
reads as the loop it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from minigpt_tui.core.errors import TrainingError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"train.device is {name!r} but no CUDA GPU is available; use auto or cpu.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise TrainingError("train.device is 'mps' but MPS is not available; use auto or cpu.")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """The autocast dtype: "auto" is bf16 on CUDA where supported (fp16 with a grad
    scaler on older GPUs) and fp32 elsewhere (CPU autocast rarely pays at this size)."""
    if name == "fp32":
        return torch.float32
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name == "fp16" and device.type != "cuda":
        raise TrainingError("train.precision fp16 needs a CUDA GPU; use auto, fp32 or bf16.")
    return torch.bfloat16 if name == "bf16" else torch.float16


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Distributed":
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))
