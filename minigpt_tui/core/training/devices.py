"""Where training runs: the device, the arithmetic precision, and the torchrun processes.

Read once by the trainer at start-up; kept apart from the loop so that trainer.py
reads as the loop it is.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from minigpt_tui.core.errors import TrainingError

if TYPE_CHECKING:
    from minigpt_tui.core.models import LanguageModel


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


# ---- precision ----------------------------------------------------------------------------
#
# On a CPU, bf16 autocast pays only where the CPU multiplies bf16 natively (AVX512-BF16, AMX) and
# the model's matmuls are large enough to outweigh the casts autocast adds around them. Both depend
# on the machine and the model, so "auto" measures it: the model's own forward and backward at the
# training shape, in float32 and under bf16 autocast, alternated a few times (the fastest of each is
# kept: noise on a shared machine only ever slows a run down). Weights, gradients and the optimizer's
# state stay float32 either way; only the matmuls' inputs are rounded.

BF16_MIN_SPEEDUP = 1.2  # "clearly faster": the probe is noisy, and bf16 rounds the matmuls' inputs
PROBE_ROUNDS = 3  # timed forward+backward passes of each precision (after one warm-up each)
PROBE_BUDGET_S = 0.5  # fewer rounds where the passes would take longer than this in all
# Narrower models are not measured: their matmuls are too small for bf16 to outweigh autocast's casts
# (forward+backward measured 0.6x float32's speed at width 16, 0.8-0.95x at 64, 1.3-1.5x at 128 on an
# AVX512-BF16 CPU), and a timing probe of passes that short would only add noise to the choice.
BF16_MIN_WIDTH = 64


@dataclass(frozen=True)
class Precision:
    """The autocast dtype and, when train.precision is "auto" on a CPU, how it was chosen."""

    dtype: torch.dtype
    note: str = ""  # for the start line and meta.json, e.g. "auto: bf16 autocast, forward+backward 1.43x ..."
    bf16_speedup: float | None = None  # float32 time / bf16 time of the probe; None when not measured

    @property
    def name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (x86 "flags", Arm "Features"); empty elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16(flags: set[str] | None = None) -> bool:
    """Whether the CPU has bf16 dot-product instructions. Without them PyTorch emulates bf16
    matmuls through float32, and autocast can only add casts: no need to measure."""
    if flags is None:
        probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
        if any(probe is not None and probe() for probe in probes):
            return True
        flags = cpu_flags()
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})  # "bf16": Arm's FEAT_BF16 (BFDOT, BFMMLA)


def choose_cpu_precision(native_bf16: bool, fp32_s: float | None = None, bf16_s: float | None = None,
                         min_speedup: float = BF16_MIN_SPEEDUP) -> Precision:
    """auto on a CPU, given the capability and the probe's timings (None: not measured)."""
    if not native_bf16:
        return Precision(torch.float32, "auto: float32 (this CPU has no native bf16 arithmetic)")
    if not fp32_s or not bf16_s:
        return Precision(torch.float32, "auto: float32 (bf16 not measured)")
    speedup = fp32_s / bf16_s
    if speedup >= min_speedup:
        return Precision(torch.bfloat16, f"auto: bf16 autocast, forward+backward {speedup:.2f}x float32's speed here",
                         speedup)
    return Precision(torch.float32, f"auto: float32 (bf16 measured {speedup:.2f}x, under {min_speedup}x)", speedup)


def probe_bf16(model: LanguageModel, batch_size: int, context: int) -> tuple[float, float]:
    """The fastest forward+backward of `model` on a (batch_size, context) batch in float32 and under
    bf16 autocast, alternated, on the threads training will use. Leaves no trace: the global RNG
    (dropout) is restored and the gradients are dropped, so a run's losses do not depend on it."""
    import torch.nn.functional as F

    device = next(model.parameters()).device
    x = torch.zeros(batch_size, context, dtype=torch.long, device=device)
    was_training = model.training
    model.train()

    def once(dtype: torch.dtype) -> float:
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            logits, _ = model(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), x.reshape(-1))
        loss.backward()
        return time.perf_counter() - start

    best = {torch.float32: math.inf, torch.bfloat16: math.inf}
    try:
        with torch.random.fork_rng(devices=[]):
            first = once(torch.float32) + once(torch.bfloat16)  # warm-up: first-call allocations
            rounds = max(1, min(PROBE_ROUNDS, int(PROBE_BUDGET_S / max(first, 1e-9))))
            for _ in range(rounds):
                for dtype in best:
                    best[dtype] = min(best[dtype], once(dtype))
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return best[torch.float32], best[torch.bfloat16]


def resolve_precision(name: str, device: torch.device, probe: Callable[[], tuple[float, float]] | None = None,
                      native_bf16: bool | None = None, width: int | None = None) -> Precision:
    """The autocast dtype. "auto" is bf16 on CUDA where supported (fp16 with a grad scaler on older
    GPUs), float32 on MPS, and on a CPU bf16 only where `probe` (float32 and bf16 seconds, see
    probe_bf16) finds it clearly faster on a CPU with native bf16, for a model at least
    BF16_MIN_WIDTH wide (`width`: n_embd); float32 without a probe."""
    if name == "fp32":
        return Precision(torch.float32)
    if name == "auto":
        if device.type == "cuda":
            return Precision(torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        if device.type != "cpu":
            return Precision(torch.float32)
        native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
        if native and width is not None and width < BF16_MIN_WIDTH:
            return Precision(torch.float32, f"auto: float32 (a model {width} wide is too narrow for bf16 to pay)")
        return choose_cpu_precision(native, *(probe() if native and probe is not None else (None, None)))
    if name == "fp16" and device.type != "cuda":
        raise TrainingError("train.precision fp16 needs a CUDA GPU; use auto, fp32 or bf16.")
    return Precision(torch.bfloat16 if name == "bf16" else torch.float16)


def autocast_and_scaler(device: torch.device, dtype: torch.dtype):
    """The autocast context factory for `dtype` (none for float32) and the gradient scaler fp16
    needs (its gradients underflow without loss scaling; bf16 has float32's range)."""
    if dtype == torch.float32:
        return nullcontext, None
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    return (lambda: torch.autocast(device.type, dtype=dtype)), scaler


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

    def init(self, device_name: str) -> torch.device:
        """Join the process group (NCCL on CUDA, gloo on CPU); this rank's device."""
        import torch.distributed as dist

        if torch.cuda.is_available() and device_name != "cpu":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
            backend = "nccl"
        else:
            device, backend = torch.device("cpu"), "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
        return device

    def close(self, finished: bool) -> None:
        """Leave the process group. After a run that ended normally every rank first waits for the
        others, so that none tears gloo down while rank 0 still writes its last checkpoint. After
        an error no barrier: the failed rank may never reach it."""
        import torch.distributed as dist

        if not dist.is_initialized():
            return
        if finished:
            try:
                dist.barrier()
            except RuntimeError:  # a rank that failed late (its last save) has left already
                pass
        dist.destroy_process_group()

    def broadcast(self, value):
        """Rank 0's `value` (any picklable object), on every rank."""
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_reduce(self, value: torch.Tensor, average: bool) -> torch.Tensor:
        """Sum (or average) `value` over the ranks, in place; as it is in one process."""
        if self.enabled:
            import torch.distributed as dist

            dist.all_reduce(value)
            if average:
                value /= self.world_size
        return value

    def any(self, flag: bool, device: torch.device) -> bool:
        """Whether `flag` is set on any rank (a stop request reaches one rank only)."""
        if not self.enabled:
            return flag
        import torch.distributed as dist

        shared = torch.tensor(float(flag), device=device)
        dist.all_reduce(shared, op=dist.ReduceOp.MAX)
        return bool(shared.item())
