"""The C kernels, compiled for this machine where a C compiler is at hand and loaded with ctypes:
native_kernels.c, the sampler's hot path, and training_kernels.c, the training step's attention and
activation.

Why. One token of the shakespeare-char Transformer (0.8M parameters) was ~50 torch calls around 17
matrix-vector products, then ~8 more to pick the token. Each call costs ~1 µs alone but 3-5 µs in
the sampler's loop: every token streams the model's 3.2 MB of float32 weights through the L2 cache
and evicts the dispatcher's code and data (benchmarks/decode_parts.py takes a token apart). One
call for the step and one for the pick touch little besides the weights. What uses them:
models/native_decode.py's NativeStep and generation/sampling.py's Sampler.pick. A training step's
attention and activation are the same story at another scale: training_kernels.c says it, and
models/training_attention.py's NativeAttention, models/gelu_slope.py and models/fused_block.py use it.

How. The first process that needs the kernels compiles both files with the system's compiler
(`cc`, or $CC), -O3 -march=native and OpenMP (~1 s) into the cache folder (paths.cache_dir()/native),
under a name that hashes the sources, the compiler's version, the flags and this CPU; later processes
load that file (one that does not load is built again; a compiler without OpenMP gets a build whose
attention runs in one thread, and one that refuses -march=native a portable build). Where there is no
compiler or the compile fails, or MINIGPT_TUI_NATIVE=0 is set, `enabled()` is False and the torch code
runs, with nothing shown: the results are the same to float rounding (sums run in another order), so
a seed gives the same text but for near-ties.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from minigpt_tui.core.paths import cache_dir

SOURCES = tuple(Path(__file__).with_name(name) for name in ("native_kernels.c", "training_kernels.c"))
HEADER = Path(__file__).with_name("native_math.h")  # included by both
ENV = "MINIGPT_TUI_NATIVE"  # "0": never compile or use the kernels
# -fno-trapping-math lets gcc turn the clamps and signs of exp_vectorized and erf_vectorized (x < c ?
# a : b) into vector selects: without it, gcc 12 left the loops of the activation, the attention's
# softmax and the pick's sum scalar ("control flow in loop"), and a decode step took ~1.25x the time
# (benchmarks/decode_parts.py, AVX2). It changes no result: the code reads no floating-point flags.
# -fopenmp: training_kernels.c's loops run in OpenMP threads.
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fno-trapping-math", "-fPIC", "-shared")
# Tried in turn when FLAGS fail: without OpenMP (Apple's clang has none; `#pragma omp simd` still
# vectorizes), then also without -march=native (a compiler that takes none for its target, as older
# Apple clang on arm64): the same code for the baseline of the architecture.
SERIAL_FLAGS = ("-O3", "-march=native", "-fopenmp-simd", "-fno-trapping-math", "-fPIC", "-shared")
PORTABLE_FLAGS = ("-O3", "-fno-trapping-math", "-fPIC", "-shared")


def enabled() -> bool:
    """Whether the kernels may be used now (read at every use, so a test or a user can turn them off)."""
    return os.environ.get(ENV, "1") != "0" and library() is not None


@functools.cache
def library() -> ctypes.CDLL | None:
    """native_kernels.c compiled for this machine and loaded, or None (no compiler, a failed
    compile). Tried once per process; `enabled()` is what callers ask."""
    lib = None
    for _ in range(2):  # a file in the cache that does not load (damaged, not a library) is built again
        path = _build()
        if path is None:
            return None
        try:
            lib = ctypes.CDLL(str(path))
            break
        except OSError:
            path.unlink(missing_ok=True)
    if lib is None:
        return None
    lib.decode_step.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                ctypes.c_void_p]
    lib.decode_step.restype = None
    lib.pick.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_float, ctypes.c_int,
                         ctypes.c_void_p, ctypes.c_void_p]
    lib.pick.restype = None
    lib.attention_forward.argtypes = [*[ctypes.c_void_p] * 5, *[ctypes.c_int] * 5]
    lib.attention_forward.restype = None
    lib.attention_backward.argtypes = [*[ctypes.c_void_p] * 7, *[ctypes.c_int] * 5]
    lib.attention_backward.restype = None
    lib.gelu_slope.argtypes = [*[ctypes.c_void_p] * 3, ctypes.c_long, ctypes.c_int]
    lib.gelu_slope.restype = None
    lib.kernels_threaded.argtypes = []
    lib.kernels_threaded.restype = ctypes.c_int
    return lib


def threads() -> int:
    """How many threads the kernels' OpenMP loops may use: torch's own count where they run in
    torch's OpenMP runtime, else 1. The kernels link `libgomp.so.1`; where torch ships a copy of
    its own under that name (as the Linux wheels do) the loader hands them that one, and they share
    torch's thread pool. A second runtime beside torch's (another name, or Intel's or LLVM's OpenMP)
    would keep two pools of busy threads on the same cores, so the kernels stay in one thread."""
    lib = library()
    if lib is None or not lib.kernels_threaded():
        return 1
    return torch.get_num_threads() if _one_openmp_runtime() else 1


@functools.cache
def _one_openmp_runtime() -> bool:
    """Whether exactly one OpenMP runtime is mapped into this process (Linux; elsewhere: not known)."""
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return False
    names = ("libgomp", "libiomp", "libomp")
    mapped = {line.split()[-1] for line in lines if any(n in line.rsplit("/", 1)[-1] for n in names)}
    return len(mapped) == 1


def _build() -> Path | None:
    """The compiled library in the cache folder, compiled first if it is not there; None where it
    cannot be."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler or platform.system() == "Windows":
        return None
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, timeout=20).stdout
        sources = [path.read_bytes() for path in (*SOURCES, HEADER)]
        key = hashlib.sha256(b"\0".join([*sources, version, " ".join(FLAGS).encode(), _cpu_id()]))
        target = cache_dir() / "native" / f"native_kernels-{key.hexdigest()[:16]}.so"
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            built = Path(tmp) / target.name
            for flags in (FLAGS, SERIAL_FLAGS, PORTABLE_FLAGS):
                done = subprocess.run([compiler, *flags, "-o", str(built), *map(str, SOURCES), "-lm"],
                                      capture_output=True, timeout=120)
                if done.returncode == 0 and built.is_file():
                    os.replace(built, target)  # whole or not at all, for a process compiling beside this one
                    return target
        return None
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_id() -> bytes:
    """What -march=native compiles for: the CPU's model and feature flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return (platform.machine() + platform.processor()).encode()
    return "\n".join(sorted({ln for ln in lines if ln.startswith(("model name", "flags", "Features"))})).encode()


class NativePick:
    """native_kernels.c's pick for one sampler (its own result buffers: samplers may run in threads).

    __call__(logits, noise, temperature, k) -> (drawn id, its probability, top ids, their
    probabilities): the draw argmax(logits + temperature * noise), argmax(logits) for noise None
    (greedy), and softmax at temperature 1 for the probabilities, the top k most likely first.
    logits: (V,) float32, contiguous, on the CPU."""

    def __init__(self, lib: ctypes.CDLL, k: int):
        self.pick, self.k = lib.pick, k
        self.ids, self.probs = (ctypes.c_int * (k + 1))(), (ctypes.c_float * (k + 1))()

    def __call__(self, logits: torch.Tensor, noise: torch.Tensor | None, temperature: float,
                 k: int) -> tuple[int, float, list[int], list[float]]:
        k = min(k, self.k, logits.numel())
        self.pick(logits.data_ptr(), logits.numel(), None if noise is None else noise.data_ptr(), temperature, k,
                  self.ids, self.probs)
        ids, probs = self.ids[: k + 1], self.probs[: k + 1]
        return ids[0], probs[0], ids[1:], probs[1:]
