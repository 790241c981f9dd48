"""Keep freed memory in the training process instead of handing it back to the OS every step.

A training step allocates and frees the same activations, gradients and casts every step. With
glibc's malloc (most Linux systems), the free memory at the top of the heap goes back to the OS once
more than M_TRIM_THRESHOLD of it has gathered (a few MB by default, moved as it goes), so each step
gave its activations back and then faulted them in again, page by page: at the
`shakespeare-char-transformer` shape, about 3,400 page faults and 8 ms of kernel time a step,
against about one with the thresholds below, and the step took 0.78x the time (median of six
alternated pairs of fresh processes: benchmarks/allocator_bench.py). PyTorch's own advice for CPU
training is the same in another form: preload jemalloc or tcmalloc. Blocks of 32 MiB and more (say,
the logits of a large vocabulary) are still mapped and unmapped each time.

The trainer sets this once the data is ready and before its first step, so what reading and
tokenizing a corpus freed is not kept. The app and `--train` train in a process of their own (the
app starts `--train` as a child), so what is kept goes when the run ends; a program that builds a
Trainer itself keeps the setting for its life. Other C libraries: nothing changes.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
# Allocations under 32 MiB come from the heap rather than a mapping of their own (which is unmapped
# on free): glibc's own upper bound for its moving threshold on 64-bit machines.
MMAP_THRESHOLD = 32 << 20
# Up to 1 GiB of free memory stays at the top of the heap: well above what a step of a model
# trained on a laptop frees (tens of MB at the shakespeare-char shape), so steps never trim.
TRIM_THRESHOLD = 1 << 30


def is_glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # not a POSIX system, or no such name
        return False


def keep_freed_memory() -> bool:
    """Set glibc's trim and mmap thresholds for this process; False where that is not possible."""
    if not is_glibc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this interpreter is linked with
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
