"""What machine a benchmark ran on, printed beside every table it makes (the one place for it).

A figure holds for its machine class: on a CPU with native bf16 dot products (avx512_bf16, AMX) bf16
autocast is fast and `train.precision = "auto"` picks it; on one without (AVX2 only, most laptops)
bf16 is emulated and `auto` stays float32. So every benchmark prints `describe()`'s line and puts
`info()` in its JSON, and a ratio quoted anywhere names the class (`machine_class()`). A report made
later from a saved `info()` dict prints the same line with `summary(info)`.

    python benchmarks/machine.py        # this machine's line
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch

# The trainer's own tests, so that the class says what `train.precision = "auto"` will do. (A
# before/after benchmark runs the other checkout in its children; this module runs in the parent.)
from minigpt_tui.core.training.devices import cpu_flags, cpu_has_native_bf16

# The CPU features that decide the speed of our training and sampling, in the order we print them.
FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8",
            "asimd", "bf16", "sve")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu() -> dict | None:
    """The CUDA GPU torch would train on (name, compute capability, memory), or None."""
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return {"name": props.name, "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1), "count": torch.cuda.device_count(),
            "bf16": torch.cuda.is_bf16_supported()}


def machine_class(device: str = "cpu") -> str:
    """The class a figure belongs to: "CPU with native bf16 (avx512_bf16)", "CPU without native bf16
    (AVX2)", or "GPU NVIDIA H100 80GB HBM3 (sm 9.0)". `device` is what the figure ran on ("cpu",
    "cuda", "cuda:1", a torch.device)."""
    device = str(device)
    if device.startswith("mps"):
        return "GPU Apple (mps)"
    if device.startswith("cuda"):
        g = gpu()
        return f"GPU {g['name']} (sm {g['capability']})" if g else "GPU (none found)"
    flags = cpu_flags()
    native = sorted(f for f in ("avx512_bf16", "amx_bf16", "bf16") if f in flags)
    if cpu_has_native_bf16(flags):
        return f"CPU with native bf16 ({', '.join(native) or 'torch says so'})"
    return f"CPU without native bf16 ({torch.backends.cpu.get_cpu_capability()})"


def info(device: str = "cpu") -> dict:
    """Everything about the machine a result depends on, for the benchmark's JSON."""
    device = str(device)
    flags = cpu_flags()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"class": machine_class(device), "cpu": cpu_model(), "arch": platform.machine(),
            "cpu_features": [f for f in FEATURES if f in flags],
            "bf16_flags": sorted(f for f in flags if "bf16" in f),  # every one, FEATURES or not
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cores": os.cpu_count(), "usable_cores": usable, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "gpu": gpu() if device.startswith("cuda") else None,
            "load_average": load}


def describe(device: str = "cpu") -> str:
    """One line for a benchmark's output: the class first, then what it is made of."""
    return summary(info(device))


def summary(i: dict, load: bool = True) -> str:
    """describe()'s line from an info() dict (one saved in a result, say); load=False leaves out
    the load average (for a report that gives its own, before and after)."""
    gpu_part = ""
    if i["gpu"]:
        g = i["gpu"]
        gpu_part = f"; {g['count']} x {g['name']} (compute capability {g['capability']}, {g['memory_gib']} GiB)"
    line = (f"Machine class: {i['class']}{gpu_part}. CPU: {i['cpu']} ({i['arch']}; features "
            f"{' '.join(i['cpu_features']) or 'none of ' + '/'.join(FEATURES[:5])}; torch CPU capability "
            f"{i['cpu_capability']}), {i['cores']} cores ({i['usable_cores']} usable); torch {i['torch']}, "
            f"{i['torch_threads']} thread{'' if i['torch_threads'] == 1 else 's'}")
    if not load:
        return line + "."
    average = " ".join(f"{x:.2f}" for x in i["load_average"]) if i["load_average"] else "unknown"
    return f"{line}; load average {average}."


def publish(report: dict, out: Path) -> None:
    """A benchmark's ending: the machine line of report["machine"], the report as JSON, and the same
    JSON written to `out`."""
    print(summary(report["machine"]))
    print()
    print(json.dumps(report, indent=1))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    print(describe("cuda" if torch.cuda.is_available() else "cpu"))
