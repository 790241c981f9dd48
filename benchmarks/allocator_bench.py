"""What keeping freed memory (minigpt_tui/core/training/allocator.py) does to a training step (not a test).

    python benchmarks/allocator_bench.py                 # 6 rounds of 200 steps, shakespeare-char shape
    python benchmarks/allocator_bench.py --rounds 10 --steps 300 --precision fp32

The allocator's settings are per process and cannot be undone, so each measurement is a fresh
process: every round starts one with glibc's defaults and one with the trainer's settings, in
alternating order, each running minigpt-tui's own Trainer._train_step on tiny Shakespeare for
--steps steps after 20 of warm-up. Reported per round and as medians: minor page faults per step,
kernel (system) CPU time per step, wall time per step, and the ratio kept / default of each round;
under the medians, the machine line (benchmarks/machine.py: "Machine class: CPU without native bf16
(AVX2). CPU: ... features avx2 fma ...; torch 2.x, 2 threads; load average ...", the threads being
the children's train.threads).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
THREADS = 2  # each child's train.threads


def child(mode: str, steps: int, precision: str, data: str) -> None:
    """One measurement, printed as a JSON line: the Trainer's step with or without the settings."""
    from minigpt_tui.core.config import RunConfig
    from minigpt_tui.core.paths import find_recipe
    from minigpt_tui.core.training import trainer as trainer_module

    if mode == "default":  # the trainer calls keep_freed_memory() in its set-up: not this time
        trainer_module.keep_freed_memory = lambda: False
    overrides = [f"data.path={json.dumps(data)}", "data.val_fraction=0.1", "train.sample_tokens=0",
                 'train.device="cpu"', f'train.precision="{precision}"', f"train.threads={THREADS}"]
    config = RunConfig.load(find_recipe("shakespeare-char-transformer")).with_overrides(overrides)
    trainer = trainer_module.Trainer(config, lambda event: None, recipe_name="allocator-bench")
    trainer._setup()
    for step in range(20):
        trainer._train_step(step, 1e-3)
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for step in range(20, 20 + steps):
        trainer._train_step(step, 1e-3)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"mode": mode, "faults_per_step": (after.ru_minflt - before.ru_minflt) / steps,
                      "system_ms_per_step": (after.ru_stime - before.ru_stime) / steps * 1000,
                      "ms_per_step": wall / steps * 1000}))


def measure(mode: str, args, home: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--steps", str(args.steps),
                          "--precision", args.precision, "--data", str(args.data)],
                         capture_output=True, text=True, env={**os.environ, "MINIGPT_TUI_HOME": home})
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--child", choices=("default", "kept"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.steps, args.precision, str(args.data))
        return 0
    if not args.data.is_file():
        raise SystemExit(f"Tiny Shakespeare is not at {args.data}; pass --data PATH.")
    rounds = []
    with tempfile.TemporaryDirectory() as home:
        for r in range(args.rounds):
            order = ("default", "kept") if r % 2 == 0 else ("kept", "default")
            got = {mode: measure(mode, args, home) for mode in order}
            rounds.append(got)
            d, k = got["default"], got["kept"]
            print(f"round {r + 1}: default {d['ms_per_step']:.1f} ms, {d['faults_per_step']:,.0f} faults, "
                  f"{d['system_ms_per_step']:.2f} ms system | kept {k['ms_per_step']:.1f} ms, "
                  f"{k['faults_per_step']:,.0f} faults, {k['system_ms_per_step']:.2f} ms system | "
                  f"ratio {k['ms_per_step'] / d['ms_per_step']:.2f}", flush=True)
    med = {mode: {key: statistics.median(r[mode][key] for r in rounds)
                  for key in ("ms_per_step", "faults_per_step", "system_ms_per_step")} for mode in ("default", "kept")}
    ratios = sorted(r["kept"]["ms_per_step"] / r["default"]["ms_per_step"] for r in rounds)
    print(f"\nmedians over {args.rounds} rounds of {args.steps} steps ({args.precision}):")
    for mode in ("default", "kept"):
        m = med[mode]
        print(f"  {mode:8} {m['ms_per_step']:6.1f} ms/step  {m['faults_per_step']:8,.0f} page faults/step  "
              f"{m['system_ms_per_step']:5.2f} ms system/step")
    print(f"  step time kept / default: median {statistics.median(ratios):.2f} (range {ratios[0]:.2f}-{ratios[-1]:.2f})")
    # (imported here, not at the top: the children, this same file, measure; they import only what they use)
    import machine
    import torch

    torch.set_num_threads(THREADS)  # this process trains nothing: the line gives the children's threads
    print(machine.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
