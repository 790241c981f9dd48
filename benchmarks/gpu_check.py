"""GPU check (run by hand on a CUDA machine; it exits early elsewhere).

    python benchmarks/gpu_check.py [--data ../shared/data] [--steps 300]

1. Trains the shakespeare-char-transformer recipe on tiny Shakespeare for a fixed number of
   steps in four settings (fp32 / bf16 autocast, each with and without torch.compile) and
   reports training tokens/s (median step time, evaluation excluded) and the final loss.
2. Checks on the GPU that cached sampling equals full recomputation (logits within 1e-3 in
   fp32 at every position, well past the context window), and reports sampling tokens/s.
Prints the machine line (benchmarks/machine.py: "Machine class: GPU NVIDIA H100 80GB HBM3 (sm 9.0);
1 x NVIDIA H100 80GB HBM3 (compute capability 9.0, 79.2 GiB). CPU: ...; load average ..."), a table
and one JSON line, with machine.info("cuda")'s dict under "machine".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import machine  # benchmarks/machine.py (this script's folder is on sys.path)
import torch

ROOT = Path(__file__).resolve().parents[1]


def train(data: Path, steps: int, precision: str, compile_: bool) -> dict:
    from minigpt_tui.core.config import RunConfig
    from minigpt_tui.core.paths import find_recipe
    from minigpt_tui.core.runs import events as ev
    from minigpt_tui.core.training.trainer import Trainer

    config = RunConfig.load(find_recipe("shakespeare-char-transformer")).with_overrides([
        f"data.path={data / 'tinyshakespeare' / 'input.txt'}", f"train.max_steps={steps}",
        f"train.eval_interval={steps}", "train.log_interval=1", "train.device=cuda",
        f"train.precision={precision}", f"train.compile={str(compile_).lower()}",
    ])
    times, losses = [], []
    last = [None]

    def on_event(e):
        if isinstance(e, ev.Step):
            torch.cuda.synchronize()
            now = time.perf_counter()
            if last[0] is not None:
                times.append(now - last[0])
            last[0] = now
            losses.append(e.loss)
        elif isinstance(e, ev.Started):
            on_event.tokens_per_step = e.tokens_per_step

    trainer = Trainer(config, on_event, recipe_name="gpu-check")
    trainer.run()
    ms = statistics.median(times[20:]) * 1000  # skip warm-up (and compilation)
    return {"precision": precision, "compile": compile_, "median_ms_per_step": round(ms, 2),
            "tokens_per_s": round(on_event.tokens_per_step / (ms / 1000)), "final_loss": round(losses[-1], 4),
            "run_dir": str(trainer.run_dir)}


def check_sampling(run_dir: str) -> dict:
    from minigpt_tui.core.generation.sampling import Sampler, SamplingSettings
    from minigpt_tui.core.runs.run_dir import RunDir

    run = RunDir(run_dir).load("last", device="cuda")
    model = run.model.float()
    W = model.config.context_length
    torch.manual_seed(0)
    ids = torch.randint(run.tokenizer.vocab_size, (1, 3 * W), device="cuda")
    with torch.inference_mode():
        full, _ = model(ids)  # whole sequence, sliding-window mask
        cache = model.new_state()
        prefix = W // 2
        first, cache = model(ids[:, :prefix], cache)
        stepped = [first]
        for t in range(prefix, ids.size(1)):
            logits, cache = model(ids[:, t : t + 1], cache)
            stepped.append(logits)
        stepped = torch.cat(stepped, dim=1)
    max_diff = (full - stepped).abs().max().item()
    speeds = {}
    for use_cache in (True, False):
        sampler = Sampler(model, run.tokenizer, SamplingSettings(max_new_tokens=1000, seed=1), use_cache=use_cache)
        text = "".join(e.text for e in sampler.generate("ROMEO:"))
        speeds["cached" if use_cache else "uncached"] = round(sampler.tokens_per_s)
    return {"cache_vs_recompute_max_abs_diff": max_diff, "cache_equals_recompute": max_diff < 1e-3,
            "sampling_tokens_per_s": speeds, "sample": text[:80]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--steps", type=int, default=300)
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here; nothing to check.")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MINIGPT_TUI_HOME"] = tmp
        rows = [train(args.data, args.steps, precision, compile_)
                for precision in ("fp32", "bf16") for compile_ in (False, True)]
        sampling = check_sampling(rows[0]["run_dir"])
    mach = machine.info("cuda")
    print(machine.summary(mach))
    print(f"{'precision':<10}{'compile':<9}{'ms/step':>9}{'tokens/s':>12}{'loss':>8}")
    for r in rows:
        print(f"{r['precision']:<10}{str(r['compile']):<9}{r['median_ms_per_step']:>9}{r['tokens_per_s']:>12,}{r['final_loss']:>8}")
    print(f"cache vs recompute max |diff| {sampling['cache_vs_recompute_max_abs_diff']:.2e} "
          f"({'OK' if sampling['cache_equals_recompute'] else 'MISMATCH'}); sampling tokens/s {sampling['sampling_tokens_per_s']}")
    for r in rows:
        r.pop("run_dir")
    print(json.dumps({"gpu": torch.cuda.get_device_name(), "machine": mach, "training": rows, "sampling": sampling}))
    return 0 if sampling["cache_equals_recompute"] else 1


if __name__ == "__main__":
    sys.exit(main())
