"""Sampling speed of a shakespeare-char-transformer run, with and without the KV cache (not a test).

    python benchmarks/sample_speed.py                       # train two short runs (context 64 and 256), then measure
    python benchmarks/sample_speed.py --run RUN64 --run-256 RUN256   # measure existing runs (names or folders)
    python benchmarks/sample_speed.py --runs-root /tmp/speed-runs   # keep the trained runs for --run next time

For each context length it generates --tokens new tokens after a prompt and reports tokens/s (the whole
generate() call, prefill and events included) for the paths below. The cached sampler and the
reference loop take turns for --repeats rounds (default 5), and the ratio of the two is taken within
each round: its median and range are the figure to quote, as a shared machine moves every single
figure by up to 2x within a minute. The other paths run --slow-repeats times (default once).
  cached     Sampler(use_cache=True): KV ring buffer, one token per step (the default everywhere)
  uncached   Sampler(use_cache=False): re-runs the model over the last n_layer*(W-1)+1 tokens for every
             token (--no-kv-cache); exactly the cached logits, the honest no-cache baseline
  reference  the well-known nanoGPT-style loop: crop to the last W tokens, full forward, softmax,
             torch.multinomial, with torch's default threads (as that script runs) and with one thread
             (the sampler's setting, to separate the thread effect from the cache effect). Not exact
             past the window (the crop changes what the first tokens see); it is the usual yardstick.
Context 256 is the same recipe with model.context_length=256. Speed does not depend on how well the
weights are trained; runs trained here get --steps steps (default 300), and the table says so.
Prints a table, the machine line under it (benchmarks/machine.py: "Machine class: CPU without native bf16
(AVX2). CPU: ... features avx2 fma ...; torch ... threads; load average ...") and JSON, with
machine.info()'s dict under "machine" (also written to benchmarks/results/sample_speed.json). On a shared
machine the load average (printed) moves every figure; tokens per CPU-second and the best of several runs
move less.
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

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
RECIPE = "shakespeare-char-transformer"
PROMPT = "ROMEO:\nWhat light through yonder window breaks?\n"


def train_run(context: int, steps: int, data: Path, runs_root: Path) -> Path:
    from minigpt_tui.core.config import RunConfig
    from minigpt_tui.core.paths import find_recipe
    from minigpt_tui.core.training.trainer import Trainer

    config = RunConfig.load(find_recipe(RECIPE)).with_overrides([
        f"data.path={json.dumps(str(data))}", f"model.context_length={context}", f"train.max_steps={steps}",
        f"train.eval_interval={steps}", "train.sample_tokens=0", "train.device=\"cpu\"",
    ])
    print(f"training {RECIPE} at context {context} for {steps} steps ...", file=sys.stderr, flush=True)
    trainer = Trainer(config, emit=lambda e: None, recipe_name=f"{RECIPE}-ctx{context}", runs_root=runs_root)
    trainer.run()
    return trainer.run_dir


def reference_generate(model, ids: list[int], n: int, context: int, temperature: float, seed: int) -> list[int]:
    """nanoGPT's sample loop: crop, full forward, last logits / T, softmax, multinomial."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    idx = torch.tensor([ids])
    with torch.no_grad():
        for _ in range(n):
            logits, _ = model(idx[:, -context:])
            probs = (logits[:, -1, :] / temperature).softmax(-1)
            idx = torch.cat((idx, torch.multinomial(probs, 1, generator=gen)), dim=1)
    return idx[0, len(ids):].tolist()


def measure(run_dir: Path, tokens: int, repeats: int, uncached_tokens: int, slow_repeats: int) -> dict:
    import torch

    from minigpt_tui.core.generation.sampling import Sampler, SamplingSettings
    from minigpt_tui.core.runs.run_dir import RunDir

    run = RunDir(run_dir).load(checkpoint="last")
    context = run.config.model.context_length
    meta = RunDir(run_dir).read_meta()
    settings = SamplingSettings(temperature=0.8, seed=1337, max_new_tokens=tokens)
    ids = run.tokenizer.encode(PROMPT)

    rates: dict[str, list[float]] = {}  # wall-clock tokens/s of each measurement, by name
    cpu_rates: dict[str, list[float]] = {}  # tokens per CPU-second of this process (all its threads)

    def timed(fn, name: str) -> list[int]:
        """Run fn once and record its tokens/s under `name`; tokens per CPU-second move less than
        wall time when other programs share the CPUs."""
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn()
        rates.setdefault(name, []).append(len(out) / (time.perf_counter() - start))
        cpu_rates.setdefault(name, []).append(len(out) / max(time.process_time() - start_cpu, 1e-9))
        return out

    def sampler_run(use_cache: bool, n: int):
        def go():
            s = SamplingSettings(**{**settings.__dict__, "max_new_tokens": n})
            return [e.token_id for e in Sampler(run.model, run.tokenizer, s, use_cache=use_cache).generate(PROMPT)]
        return go

    def reference_run():
        return reference_generate(run.model, ids, uncached_tokens, context, 0.8, 1337)

    list(Sampler(run.model, run.tokenizer, SamplingSettings(max_new_tokens=50)).generate(PROMPT))  # warm-up
    # The cached sampler and the reference loop take turns, round by round, so that both see the
    # same machine: a shared one moves every figure by up to 2x within a minute. The ratio is
    # taken within each round; its median and range are what to quote.
    ratios = []
    for _ in range(repeats):
        cached_ids = timed(sampler_run(True, tokens), "cached")
        timed(reference_run, "reference")
        ratios.append(rates["cached"][-1] / rates["reference"][-1])
    for _ in range(slow_repeats):
        uncached_ids = timed(sampler_run(False, uncached_tokens), "uncached")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(slow_repeats):
            timed(reference_run, "reference_1thread")
    finally:
        torch.set_num_threads(threads)
    median = {k: statistics.median(v) for k, v in rates.items()}
    n_layer = run.config.model.n_layer
    return {
        "context": context, "run": run_dir.name, "trained_steps": run.step,
        "best_val_loss": meta.best_val_loss, "params": meta.params,
        "prompt_tokens": len(ids), "new_tokens": tokens, "uncached_new_tokens": uncached_tokens,
        "receptive_field": n_layer * (context - 1) + 1,
        "cached_tok_s": round(median["cached"], 1), "uncached_tok_s": round(median["uncached"], 1),
        "reference_tok_s": round(median["reference"], 1),
        "reference_1thread_tok_s": round(median["reference_1thread"], 1),
        "per_cpu_second": {k: round(statistics.median(v), 1) for k, v in cpu_rates.items()},
        "best_tok_s": {k: round(max(v), 1) for k, v in rates.items()},
        "cached_over_uncached": round(median["cached"] / median["uncached"], 2),
        # round by round: the median, the lowest and the highest
        "cached_over_reference": round(statistics.median(ratios), 2),
        "cached_over_reference_range": [round(min(ratios), 2), round(max(ratios), 2)],
        # the same seed must give the same tokens with and without the cache
        "same_tokens_cached_vs_uncached": cached_ids[:uncached_tokens] == uncached_ids,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="an existing context-64 run (name or folder); default: train one")
    p.add_argument("--run-256", help="an existing context-256 run (name or folder); default: train one")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="tinyshakespeare input.txt (for training)")
    p.add_argument("--steps", type=int, default=300, help="training steps for runs trained here (default 300)")
    p.add_argument("--tokens", type=int, default=1000, help="new tokens per measurement (default 1000)")
    p.add_argument("--uncached-tokens", type=int, default=0,
                   help="new tokens for the slow paths (default: the same as --tokens)")
    p.add_argument("--repeats", type=int, default=5,
                   help="rounds of the cached sampler and the reference loop in turn (default 5)")
    p.add_argument("--slow-repeats", type=int, default=1, help="measurements of the slow paths (default 1)")
    p.add_argument("--runs-root", type=Path, help="keep runs trained here in this folder (default: a temporary one)")
    p.add_argument("--out", type=Path, default=RESULTS / "sample_speed.json")
    args = p.parse_args()

    import torch

    from minigpt_tui.core.runs.run_dir import RunDir

    default_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="minigpt-sample-speed-") as tmp:
        runs = []
        for context, given in ((64, args.run), (256, args.run_256)):
            if given:
                runs.append(RunDir.resolve(given).path)
            else:
                if not args.data.is_file():
                    print(f"{args.data} not found; pass --data or --run/--run-256.", file=sys.stderr)
                    return 2
                runs.append(train_run(context, args.steps, args.data, args.runs_root or Path(tmp) / "runs"))
        torch.set_num_threads(default_threads)  # training may have changed it; the reference uses the default
        rows = [measure(r, args.tokens, args.repeats, args.uncached_tokens or args.tokens, args.slow_repeats)
                for r in runs]

    report = {
        "machine": machine.info("cpu"), "torch": torch.__version__, "default_threads": default_threads,
        "load_average_1m": round(os.getloadavg()[0], 2), "prompt": PROMPT, "temperature": 0.8, "rows": rows,
    }
    print()
    print(f"sampling speed, {RECIPE}, temperature 0.8, {args.tokens} new tokens after a {rows[0]['prompt_tokens']}-token "
          f"prompt; load average {report['load_average_1m']} on {os.cpu_count()} CPUs")
    header = ("context", "trained", "val loss", "cached tok/s", "cached best", "uncached tok/s", "reference tok/s",
              "reference 1-thread", "cached/uncached", "cached/reference (range)", "cached tok/CPU-s", "same tokens")
    table = [header] + [(
        str(r["context"]), f"{r['trained_steps']} steps",
        f"{r['best_val_loss']:.3f}" if r["best_val_loss"] is not None else "-",
        f"{r['cached_tok_s']:,.0f}", f"{r['best_tok_s']['cached']:,.0f}", f"{r['uncached_tok_s']:,.0f}",
        f"{r['reference_tok_s']:,.0f}",
        f"{r['reference_1thread_tok_s']:,.0f}",
        f"{r['cached_over_uncached']:.1f}x",
        f"{r['cached_over_reference']:.1f}x ({r['cached_over_reference_range'][0]:.1f}-"
        f"{r['cached_over_reference_range'][1]:.1f})",
        f"{r['per_cpu_second']['cached']:,.0f}",
        "yes" if r["same_tokens_cached_vs_uncached"] else "NO",
    ) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    machine.publish(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
