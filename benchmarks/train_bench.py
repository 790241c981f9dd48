"""Training benchmarks on the real corpora in ../shared/data (not a test; run it by hand).

    python benchmarks/train_bench.py throughput            # shakespeare-char-transformer: tokens/s, ms/step, peak memory
    python benchmarks/train_bench.py reference             # the same recipe, 2000 steps: wall time, final val loss
    python benchmarks/train_bench.py best-char --budget 600    # best char recipe: time to val 1.88, best val in 10 min
    python benchmarks/train_bench.py best-word --budget 300    # best word recipe on WikiText-2 (partial): val perplexity in 5 min
    python benchmarks/train_bench.py plot                  # loss-versus-time PNG from the saved results
    python benchmarks/train_bench.py profile               # torch.profiler's top ops of one training step
                                                           # (--precision fp32|bf16|auto, --steps, --threads)
    python benchmarks/train_bench.py compare               # side by side with a GPT-2-style baseline, interleaved
                                                           # (see benchmarks/side_by_side.py; --steps, --block,
                                                           # --threads, --precision fp32|bf16, --data FILE,
                                                           # --baseline-allocator default|tuned)

Each prints a table, the machine line beside it (benchmarks/machine.py: "Machine class: CPU without
native bf16 (AVX2). CPU: ... features avx2 fma ...; torch ... threads; load average ...", the GPU's
name and compute capability when the run trained on one) and writes JSON, with machine.info()'s dict
under "machine", to benchmarks/results/. The data folder defaults to ../shared/data next to the
repository; --data moves it (compare also takes the text file itself). Runs go to a temporary data
home, never the user's. compare prints a Markdown table (with the machine, its class in the table's
header, and its load) for the README's Performance section.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # machine, side_by_side, baseline_gpt
import machine  # noqa: E402
RESULTS = ROOT / "benchmarks" / "results"


def shakespeare(data: Path) -> list[str]:
    return [f"data.path={data / 'tinyshakespeare' / 'input.txt'}", "data.val_fraction=0.1"]


def wikitext(data: Path, tmp: Path) -> list[str]:
    """Train on wiki.valid.tokens; validate on the first half of wiki.test.tokens' lines."""
    lines = (data / "wikitext-2-partial" / "wiki.test.tokens").read_text(encoding="utf-8").splitlines(keepends=True)
    val = tmp / "wiki.test.first-half.tokens"
    val.write_text("".join(lines[: len(lines) // 2]), encoding="utf-8")
    return [f"data.path={data / 'wikitext-2-partial' / 'wiki.valid.tokens'}", f"data.val_path={val}"]


def train(recipe: str, overrides: list[str], budget_s: float | None = None, target: float | None = None,
          label: str = "") -> dict:
    """Run the real trainer in-process; record every event with its wall-clock time."""
    from minigpt_tui.core.config import RunConfig
    from minigpt_tui.core.paths import find_recipe
    from minigpt_tui.core.runs import events as ev
    from minigpt_tui.core.training.trainer import Trainer

    config = RunConfig.load(find_recipe(recipe)).with_overrides(overrides)
    log: dict = {"label": label or recipe, "recipe": recipe, "overrides": overrides, "evals": [], "steps": []}
    state = {"t0": None, "step_t": None}

    def on_event(e):
        now = time.perf_counter()
        if isinstance(e, ev.Started):
            state["t0"] = now
            log.update(params=e.params, vocab_size=e.vocab_size, tokens_per_step=e.tokens_per_step)
        elif isinstance(e, ev.Step):
            log["steps"].append({"step": e.step, "loss": e.loss, "t": now - state["t0"]})
        elif isinstance(e, ev.Eval):
            log["evals"].append({"step": e.step, "val_loss": e.val_loss, "train_loss": e.train_loss,
                                 "t": now - state["t0"]})
            if target is not None and e.val_loss <= target and "time_to_target_s" not in log:
                log["time_to_target_s"] = now - state["t0"]
                log["steps_to_target"] = e.step
        if budget_s is not None and state["t0"] is not None and now - state["t0"] > budget_s:
            trainer.stop_requested = True

    trainer = Trainer(config, on_event, recipe_name=recipe)
    done = trainer.run()
    log["wall_s"] = done.elapsed_s
    log["run_dir"] = str(trainer.run_dir) if trainer.run_dir else None
    log["device"] = str(getattr(trainer, "device", "cpu"))  # what it trained on: the machine line's class
    log["steps_done"] = done.step
    log["final_val_loss"] = log["evals"][-1]["val_loss"] if log["evals"] else None
    log["best_val_loss"] = done.best_val_loss
    log["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return log


def steps_for_budget(recipe: str, overrides: list[str], budget_s: float, pilot_steps: int = 40) -> int:
    """How many steps of `recipe` fit in budget_s, from the median step of a short pilot run (so a
    run stopped at its budget has finished its learning-rate schedule, as a sized recipe would)."""
    log = train(recipe, [*overrides, f"train.max_steps={pilot_steps}", "train.log_interval=1",
                         f"train.eval_interval={pilot_steps}", "train.sample_tokens=0"], label="pilot")
    ms = statistics.median(step_times(log)[5:]) * 1000
    # 3% spare for evaluations and checkpoints; the budget stop catches any excess.
    return max(pilot_steps, int(budget_s / (ms / 1000) * 0.97))


def step_times(log: dict) -> list[float]:
    """Per-step wall times between logged steps (log_interval=1), evaluation steps excluded."""
    steps = log["steps"]
    eval_steps = {e["step"] for e in log["evals"]}
    return [(b["t"] - a["t"]) / (b["step"] - a["step"]) for a, b in zip(steps, steps[1:])
            if b["step"] not in eval_steps and b["step"] - a["step"] >= 1]


def cmd_throughput(args, tmp: Path) -> dict:
    steps = args.steps or 300
    overrides = shakespeare(args.data) + [f"train.max_steps={steps}", "train.log_interval=1",
                                          f"train.eval_interval={steps}", *args.set]
    log = train("shakespeare-char-transformer", overrides, label="throughput")
    times = step_times(log)[10:]  # skip warm-up
    ms = statistics.median(times) * 1000
    return {"benchmark": "throughput", "recipe": "shakespeare-char-transformer", "overrides": args.set,
            "device": log["device"], "median_ms_per_step": round(ms, 2),
            "tokens_per_s": round(log["tokens_per_step"] / (ms / 1000)),
            "peak_rss_mb": round(log["peak_rss_mb"]), "params": log["params"]}


def cmd_reference(args, tmp: Path) -> dict:
    log = train("shakespeare-char-transformer", shakespeare(args.data) + ["train.log_interval=1", *args.set],
                target=1.88, label="shakespeare-char-transformer")
    times = step_times(log)[10:]
    ms = statistics.median(times) * 1000
    return {"benchmark": "reference", "recipe": "shakespeare-char-transformer", "overrides": args.set,
            "device": log["device"], "median_ms_per_step": round(ms, 2),
            "tokens_per_s": round(log["tokens_per_step"] / (ms / 1000)),
            "wall_s": round(log["wall_s"], 1), "final_val_loss": round(log["final_val_loss"], 4),
            "time_to_1.88_s": round(log["time_to_target_s"], 1) if "time_to_target_s" in log else None,
            "curve": log["evals"]}


def cmd_best_char(args, tmp: Path) -> dict:
    # The run's own time budget sizes its schedule to this machine (training/time_budget.py); the
    # hard stop a minute later only guards against a budget that does not end the run.
    log = train(args.recipe or "shakespeare-char-best",
                shakespeare(args.data) + [f"train.time_budget={json.dumps(f'{args.budget:g}s')}", *args.set],
                budget_s=args.budget + 60, target=1.88)
    return {"benchmark": "best-char", "recipe": log["recipe"], "overrides": args.set, "budget_s": args.budget,
            "device": log["device"],
            "params": log["params"], "steps": log["steps_done"], "wall_s": round(log["wall_s"], 1),
            "time_to_1.88_s": round(log["time_to_target_s"], 1) if "time_to_target_s" in log else None,
            "best_val_loss": round(log["best_val_loss"], 4), "curve": log["evals"]}


def cmd_best_word(args, tmp: Path) -> dict:
    log = train(args.recipe or "wikitext2-word-best",
                wikitext(args.data, tmp) + [f"train.time_budget={json.dumps(f'{args.budget:g}s')}", *args.set],
                budget_s=args.budget + 60)
    best = log["best_val_loss"]
    return {"benchmark": "best-word", "recipe": log["recipe"], "overrides": args.set, "budget_s": args.budget,
            "device": log["device"],
            "params": log["params"], "vocab_size": log["vocab_size"], "steps": log["steps_done"],
            "wall_s": round(log["wall_s"], 1), "best_val_loss": round(best, 4),
            "val_perplexity": round(math.exp(best), 1), "curve": log["evals"]}


def cmd_plot(args, tmp: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    classes = set()
    for name in ("reference-compile", "best-char"):  # written by `reference --tag compile` and `best-char`
        path = RESULTS / f"{name}.json"
        if not path.is_file():
            continue
        result = json.loads(path.read_text())
        mach = result.get("machine")
        classes.add(mach["class"] if isinstance(mach, dict) else mach or "machine not recorded")  # (older: a string)
        curve = result["curve"]
        extra = " ".join(o.split(".")[-1] for o in result.get("overrides", []))
        ax.plot([c["t"] for c in curve], [c["val_loss"] for c in curve], marker="o", ms=3,
                label=f"{result['recipe']} {extra}".strip())
    ax.axhline(1.88, color="grey", ls="--", lw=1, label="val loss 1.88")
    ax.set_xlabel(f"wall time (s), {'; '.join(sorted(classes)) or 'no results'}")
    ax.set_ylabel("validation loss (nats/char)")
    ax.set_title("tiny Shakespeare, character level")
    ax.set_ylim(1.3, 3.0)
    ax.grid(alpha=0.3)
    ax.legend()
    out = ROOT / "benchmarks" / "loss_vs_time.png"
    fig.tight_layout()
    fig.savefig(out)
    return {"benchmark": "plot", "image": str(out.relative_to(ROOT)), "machine_classes": sorted(classes)}


def cmd_profile(args, tmp: Path) -> dict:
    """torch.profiler over --steps (default 30) training steps of shakespeare-char-transformer, after
    20 warm-up steps, with the trainer's own step (Trainer._train_step): the top ops by self CPU time."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from minigpt_tui.core.config import RunConfig
    from minigpt_tui.core.paths import find_recipe
    from minigpt_tui.core.training.trainer import Trainer

    steps = args.steps or 30
    overrides = shakespeare(args.data) + ["train.sample_tokens=0", 'train.device="cpu"',
                                          f'train.precision="{args.precision}"', f"train.threads={args.threads}",
                                          *args.set]
    config = RunConfig.load(find_recipe("shakespeare-char-transformer")).with_overrides(overrides)
    trainer = Trainer(config, lambda e: None, recipe_name="profile")
    trainer._setup()  # the model, optimizer and batches, as a run has them; no run is trained

    def train(first: int, n: int) -> float:
        start = time.perf_counter()
        for step in range(first, first + n):
            loss = trainer._train_step(step, config.train.learning_rate)
        loss.item()
        return (time.perf_counter() - start) / n

    train(0, 20)
    unprofiled_ms = train(20, steps) * 1000
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train(20 + steps, steps)
    rows = sorted(prof.key_averages(), key=lambda r: r.self_cpu_time_total, reverse=True)
    total = sum(r.self_cpu_time_total for r in rows)
    top = [{"op": r.key, "self_ms_per_step": round(r.self_cpu_time_total / 1000 / steps, 3),
            "share": round(r.self_cpu_time_total / total, 3), "calls_per_step": r.count / steps} for r in rows[:args.top]]
    print(f"{'op':<58} {'ms/step':>8} {'share':>6} {'calls':>6}")
    for r in top:
        print(f"{r['op'][:58]:<58} {r['self_ms_per_step']:>8.2f} {r['share']:>6.1%} {r['calls_per_step']:>6.0f}")
    trainer.release()
    return {"benchmark": "profile", "device": "cpu", "precision": trainer.precision.name,
            "precision_note": trainer.precision.note,
            "threads": torch.get_num_threads(), "steps": steps, "ms_per_step_unprofiled": round(unprofiled_ms, 2),
            "self_cpu_ms_per_step_profiled": round(total / 1000 / steps, 2), "top": top}


def cmd_compare(args, tmp: Path) -> dict:
    from side_by_side import run_compare

    return run_compare(args, tmp)


COMMANDS = {"throughput": cmd_throughput, "reference": cmd_reference, "best-char": cmd_best_char,
            "best-word": cmd_best_word, "plot": cmd_plot, "profile": cmd_profile, "compare": cmd_compare}
# Kept in the JSON file, not printed as key/value lines ("machine" is printed as its line).
BULKY = ("curve", "markdown", "per_step_s", "per_step_loss", "top", "machine")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("benchmark", choices=COMMANDS)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--steps", type=int, default=None,
                   help="steps: throughput (default 300); profile (default 30); compare (default the recipe's 2000)")
    p.add_argument("--budget", type=float, default=600.0, help="wall-time budget in seconds")
    p.add_argument("--recipe", help="recipe for best-char / best-word")
    p.add_argument("--set", action="append", default=[], help="extra config overrides")
    p.add_argument("--tag", default="", help="suffix for the results file name")
    p.add_argument("--top", type=int, default=15, help="profile: how many ops to list")
    g = p.add_argument_group("compare")
    g.add_argument("--block", type=int, default=50, help="steps per interleaved block (default 50)")
    g.add_argument("--threads", type=int, default=0, help="torch threads for both (default: torch's default)")
    g.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="minigpt-tui's train.precision (bf16: CPU autocast, float32 weights); the baseline is fp32")
    g.add_argument("--warmup", type=int, default=10, help="first steps left out of step statistics")
    g.add_argument("--target", type=float, default=1.88, help="validation loss for the time-to-target row")
    g.add_argument("--peak-seconds", type=float, default=1.5, help="seconds per matmul-limit measurement")
    g.add_argument("--baseline-compile", action="store_true", help="torch.compile the baseline model too")
    g.add_argument("--baseline-allocator", choices=("default", "tuned"), default="default",
                   help="the baseline process's malloc: glibc's defaults (as run alone) or minigpt-tui's settings")
    args = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MINIGPT_TUI_HOME"] = tmp
        result = COMMANDS[args.benchmark](args, Path(tmp))
    # the device it trained on (the recipe's train.device; profile and compare: the CPU); compare's
    # report has its own, taken at its end
    result.setdefault("machine", machine.info(result.get("device", "cpu")))
    name = args.benchmark + (f"-{args.tag}" if args.tag else "")
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1))
    if "markdown" in result:  # (its machine line is in it)
        print(result["markdown"])
        print(f"\nresults: {(RESULTS / f'{name}.json').relative_to(ROOT)}")
        return 0
    width = max(map(len, result))
    for key, value in result.items():
        if key not in BULKY:
            print(f"{key.ljust(width)}  {value}")
    print(machine.summary(result["machine"]))
    print(json.dumps({k: v for k, v in result.items() if k not in BULKY or k == "machine"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
