"""Data set-up benchmark (issue 14): how long a run takes to reach its first step, and how much
memory it holds, on large text files (not a test; run it by hand).

    python benchmarks/data_bench.py                      # 53 MB and 100 MB, this checkout
    python benchmarks/data_bench.py --code /work/main    # the same with another checkout's code (before/after)
    python benchmarks/data_bench.py --sizes 10 --tokenizer word

For each size it writes a text file into a temporary folder (tiny Shakespeare from ../shared/data,
else the built-in Bible, repeated with its lines shuffled differently each time, so that a
character model sees the same alphabet), then runs the trainer in a child process (its code from
--code) three times in one temporary data home:

    cold    a new run, nothing cached yet (the old code tokenizes on every start anyway)
    warm    a second new run on the same file (the token cache, where there is one, is filled)
    resume  the first run resumed for a few more steps

Each child reports the seconds from Trainer(...) until its data is ready (it builds the model)
and until its first training step, and its peak resident memory (getrusage maxrss); the
optimizer's one-off import of torch._dynamo (seconds, the same for any corpus) happens before
the clock starts; `baseline` is the same model on a 10 kB file, so the
difference is what the data costs. The machine may be shared: timings move with its load, so the
machine line (benchmarks/machine.py: "Machine class: CPU without native bf16 (AVX2). CPU: ...
features avx2 fma ...; torch ..., 1 thread; load average ...", the threads being the children's)
is printed before the first line and after the last; --out's JSON has machine.info()'s dict under
"machine".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
MODEL = {"family": "transformer", "n_layer": 2, "n_head": 2, "n_embd": 64, "context_length": 64}
TRAIN = {"batch_size": 8, "eval_interval": 1000, "eval_batches": 1, "log_interval": 1, "sample_tokens": 0,
         "warmup_steps": 1, "device": "cpu", "threads": 1, "precision": "fp32"}


def child(args) -> None:
    """Run the trainer (the code on PYTHONPATH) for a few steps; print one JSON line."""
    import torch._dynamo  # noqa: F401  (AdamW imports it once: seconds, the same for any corpus)

    from minigpt_tui.core.config import RunConfig

    try:
        from minigpt_tui.core.training import trainer as trainer_module
    except ImportError:  # a checkout from before core/ was grouped into subpackages (--code)
        from minigpt_tui.core import trainer as trainer_module
    Trainer = trainer_module.Trainer

    # The data is ready when the trainer builds the model (old and new code alike).
    data_ready: list[float] = []
    build_model = trainer_module.build_model

    def timed_build_model(*a, **kw):
        data_ready.append(time.perf_counter())
        return build_model(*a, **kw)

    trainer_module.build_model = timed_build_model

    config = RunConfig.from_dict({"data": {"path": args.corpus, "tokenizer": args.tokenizer,
                                           "vocab_size": args.vocab_size},
                                  "model": MODEL, "train": {**TRAIN, "max_steps": args.steps}})
    first: list[float] = []

    def on_event(event) -> None:
        if type(event).__name__ == "Step" and not first:
            first.append(time.perf_counter())

    started = time.perf_counter()
    trainer = Trainer(config, on_event, recipe_name="bench", resume_dir=args.resume or None)
    done = trainer.run()
    print(json.dumps({"data_s": data_ready[0] - started, "first_step_s": first[0] - started,
                      "total_s": time.perf_counter() - started,
                      "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "params": trainer.params, "run_dir": done.run_dir}))


def run_child(code: Path, home: Path, corpus: Path, tokenizer: str, steps: int, resume: str = "") -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "MINIGPT_TUI_HOME": str(home), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--child", "--corpus", str(corpus), "--tokenizer", tokenizer,
           "--steps", str(steps), "--resume", resume, "--vocab-size", "0" if tokenizer == "word" else "256"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"child failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def source_lines() -> list[str]:
    if SHAKESPEARE.is_file():
        return SHAKESPEARE.read_text(encoding="utf-8").splitlines(keepends=True)
    sys.path.insert(0, str(ROOT))
    from minigpt_tui.core.data.corpus import kjv_text

    return kjv_text().splitlines(keepends=True)


def write_corpus(path: Path, megabytes: float) -> None:
    lines = source_lines()
    rng = random.Random(0)
    target = int(megabytes * 1_000_000)
    written = 0
    with path.open("w", encoding="utf-8") as f:
        while written < target:
            rng.shuffle(lines)
            block = "".join(lines)[: target - written]
            f.write(block)
            written += len(block.encode("utf-8"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    p.add_argument("--resume", default="", help=argparse.SUPPRESS)
    p.add_argument("--code", default=str(ROOT), help="the checkout whose code runs (default: this one)")
    p.add_argument("--sizes", default="53,100", help="file sizes in MB (default 53,100)")
    p.add_argument("--tokenizer", default="char", choices=["char", "word"])
    p.add_argument("--vocab-size", type=int, default=256, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=3, help="training steps per child (default 3)")
    p.add_argument("--out", help="also write the results as JSON here")
    args = p.parse_args()
    if args.child:
        return child(args)

    # (imported here, not at the top: a child runs --code's checkout and imports only what it uses)
    import machine
    import torch

    torch.set_num_threads(int(TRAIN["threads"]))  # this process trains nothing: the children's threads
    print(machine.describe(), flush=True)
    code = Path(args.code).resolve()
    results = []
    with tempfile.TemporaryDirectory(prefix="data-bench-") as tmp:
        tmp = Path(tmp)
        tiny = tmp / "tiny.txt"
        write_corpus(tiny, 0.01)
        base = run_child(code, tmp / "home-base", tiny, args.tokenizer, args.steps)
        print(f"code {code}  tokenizer {args.tokenizer}  baseline (10 kB file): first step "
              f"{base['first_step_s']:.2f} s, peak RSS {base['maxrss_mb']:.0f} MB, {base['params']:,} parameters",
              flush=True)
        for size in [float(s) for s in args.sizes.split(",")]:
            corpus = tmp / f"corpus-{size:g}mb.txt"
            write_corpus(corpus, size)
            home = tmp / f"home-{size:g}"
            row = {"size_mb": size, "bytes": corpus.stat().st_size}
            cold = run_child(code, home, corpus, args.tokenizer, args.steps)
            warm = run_child(code, home, corpus, args.tokenizer, args.steps)
            resumed = run_child(code, home, corpus, args.tokenizer, args.steps + 2, resume=cold["run_dir"])
            for name, r in (("cold", cold), ("warm", warm), ("resume", resumed)):
                row[name] = {k: r[k] for k in ("data_s", "first_step_s", "maxrss_mb")}
                print(f"{size:g} MB {name:>6}: data ready after {r['data_s']:6.2f} s, first step after "
                      f"{r['first_step_s']:6.2f} s, peak RSS "
                      f"{r['maxrss_mb']:6.0f} MB (+{r['maxrss_mb'] - base['maxrss_mb']:.0f} MB over the baseline)",
                      flush=True)
            results.append(row)
            corpus.unlink()
    mach = machine.info("cpu")
    print(machine.summary(mach))
    if args.out:
        Path(args.out).write_text(json.dumps({"code": str(code), "tokenizer": args.tokenizer, "machine": mach,
                                              "baseline": base, "results": results}, indent=1))


if __name__ == "__main__":
    main()
