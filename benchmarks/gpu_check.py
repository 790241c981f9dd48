"""GPU check: training and sampling on a CUDA GPU, against the baseline (not a test; benchmarks/gpu_session.sh
runs it on a lent GPU machine after tests/test_cuda.py).

    python benchmarks/gpu_check.py --data PATH/input.txt             # all three parts, ~6 minutes on an H100
    python benchmarks/gpu_check.py --data PATH/input.txt --only compare,sample
    python benchmarks/gpu_check.py --data PATH/input.txt --dry-run   # the same code on the CPU, tiny and short

1. train: the real trainer (core/training/trainer.py) on the shakespeare-char-transformer recipe and
   tiny Shakespeare, --steps steps in four settings (fp32 / bf16 autocast, each with and without
   torch.compile): training tokens/s (median step, evaluations left out) and the final loss.
2. compare: minigpt-tui's Transformer against the GPT-2-style baseline (benchmarks/baseline_gpt.py),
   both in bf16 autocast, without and with torch.compile, at two shapes: shakespeare-char (4 layers,
   128 wide, context 64, batch 12, vocabulary 65) and GPT-2 small (12 layers, 768 wide, 12 heads,
   context 1024, vocabulary 50257, batch --gpt2-batch; random weights, random tokens: speed does not
   depend on them). Each side's step is its trainer's (ours: forward under autocast, cross-entropy,
   backward, clip_and_step, zero_grad, as Trainer._train_step; the baseline's: baseline_gpt.train_step),
   both with trainer.make_optimizer's AdamW, on the same batches, ending in the loss's .item() (one
   GPU sync a step each). They alternate in blocks of --block steps, so drift hits both; the first
   --warmup steps of each (compilation) are left out. Reported: median ms a step and tokens/s of
   each, the ratio of medians (baseline / ours: above 1, ours is faster) and the p10-p90 of the
   per-block ratios.
3. sample: at both shapes, that the cached sampler's logits equal full recomputation (float32,
   TF32 off, past the window), and sampling tokens/s, cached and uncached (Sampler.tokens_per_s:
   the whole generate() call, prefill included). The GPT-2-shape model samples over a 50,257-symbol
   character vocabulary (code points from U+0100): the sampler's work per token is the same as
   with a BPE vocabulary of that size.
Prints the machine line (benchmarks/machine.py: "Machine class: GPU NVIDIA H100 80GB HBM3 (sm 9.0) ..."),
a table per part, and writes the JSON (machine.info("cuda")'s dict under "machine") to --out after
each part, so that a run stopped by its time limit keeps what it measured.
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
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
# name: (n_layer, n_head, n_embd, context_length, vocabulary, batch)
SHAPES = {"shakespeare-char": (4, 4, 128, 64, 65, 12), "gpt2-small": (12, 12, 768, 1024, 50257, 8)}
TINY_SHAPES = {"shakespeare-char": (2, 2, 32, 16, 65, 4), "gpt2-small": (2, 2, 64, 32, 5000, 2)}  # --dry-run


# ---- 1. the real trainer on the recipe ------------------------------------------------------------

def train(data: Path, steps: int, precision: str, compile_: bool, device: str, sync) -> dict:
    from minigpt_tui.core.config import RunConfig
    from minigpt_tui.core.paths import find_recipe
    from minigpt_tui.core.runs import events as ev
    from minigpt_tui.core.training.trainer import Trainer

    config = RunConfig.load(find_recipe("shakespeare-char-transformer")).with_overrides([
        f"data.path={json.dumps(str(data))}", f"train.max_steps={steps}", f"train.eval_interval={steps}",
        "train.log_interval=1", "train.sample_tokens=0", f'train.device="{device}"',
        f'train.precision="{precision}"', f"train.compile={str(compile_).lower()}",
    ])
    times, losses, started = [], [], {}
    last = [None]

    def on_event(e):
        if isinstance(e, ev.Step):
            sync()
            now = time.perf_counter()
            if last[0] is not None:
                times.append(now - last[0])
            last[0] = now
            losses.append(e.loss)
        elif isinstance(e, ev.Started):
            started["tokens_per_step"] = e.tokens_per_step
        elif isinstance(e, ev.Eval):
            last[0] = None  # an evaluation is not a step
            started["val_loss"] = e.val_loss

    trainer = Trainer(config, on_event, recipe_name="gpu-check")
    trainer.run()
    ms = statistics.median(times[min(20, len(times) // 2):]) * 1000  # past the warm-up (and compilation)
    return {"precision": precision, "compile": compile_, "median_ms_per_step": round(ms, 3),
            "tokens_per_s": round(started["tokens_per_step"] / (ms / 1000)), "final_loss": round(losses[-1], 4),
            "final_val_loss": round(started.get("val_loss", float("nan")), 4)}


# ---- 2. side by side with the baseline ------------------------------------------------------------

def compare(shape: tuple, steps: int, block: int, warmup: int, compile_: bool, device: torch.device, sync) -> dict:
    """Ours and the baseline, alternating blocks of steps in bf16 autocast (see the module docstring)."""
    from baseline_gpt import BaselineConfig, BaselineGPT, train_step

    from minigpt_tui.core.config import ModelConfig, TrainConfig
    from minigpt_tui.core.models import build_model
    from minigpt_tui.core.training.optim import clip_and_step, lr_at, make_optimizer

    L, H, C, T, V, B = shape
    t = TrainConfig(max_steps=steps, warmup_steps=min(100, steps // 4))
    torch.manual_seed(0)
    ours = build_model(ModelConfig(n_layer=L, n_head=H, n_embd=C, context_length=T), V).to(device).train()
    base = BaselineGPT(BaselineConfig(V, n_layer=L, n_head=H, n_embd=C, context_length=T)).to(device)
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16)  # noqa: E731
    sides = {}
    for name, model in (("minigpt-tui", ours), ("baseline", base)):
        optimizer = make_optimizer(model, t, device, autocast_dtype=torch.bfloat16)
        sides[name] = {"model": torch.compile(model) if compile_ else model, "optimizer": optimizer,
                       "params": [p for p in model.parameters() if p.requires_grad], "times": [], "blocks": []}

    def our_step(side, x, y, lr):
        for group in side["optimizer"].param_groups:
            group["lr"] = lr
        with autocast():
            logits, _ = side["model"](x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))
        loss.backward()
        clip_and_step(side["optimizer"], side["params"], t.grad_clip)
        side["optimizer"].zero_grad(set_to_none=True)
        return loss.item()

    def base_step(side, x, y, lr):
        with autocast():
            return train_step(side["model"], side["optimizer"], [(x, y)], lr, t.grad_clip)

    gen = torch.Generator(device=device).manual_seed(1)
    batches = [torch.randint(V, (B, T + 1), generator=gen, device=device) for _ in range(8)]
    losses = {}
    for first in range(0, steps, block):
        for name, step in (("minigpt-tui", our_step), ("baseline", base_step)):
            side, block_times = sides[name], []
            for j in range(first, min(first + block, steps)):
                ids = batches[j % len(batches)]
                sync()
                t0 = time.perf_counter()
                losses[name] = step(side, ids[:, :-1], ids[:, 1:], lr_at(j, t))
                block_times.append(time.perf_counter() - t0)
                if j >= warmup:
                    side["times"].append(block_times[-1])
            if first >= warmup:
                side["blocks"].append(statistics.median(block_times))
    ours_ms, base_ms = (statistics.median(sides[n]["times"]) * 1000 for n in ("minigpt-tui", "baseline"))
    per_block = sorted(b / o for o, b in zip(sides["minigpt-tui"]["blocks"], sides["baseline"]["blocks"]))
    spread = (per_block[len(per_block) // 10], per_block[(9 * len(per_block)) // 10]) if per_block else (None, None)
    return {"compile": compile_, "ours_ms": round(ours_ms, 3), "baseline_ms": round(base_ms, 3),
            "ours_tokens_per_s": round(B * T / ours_ms * 1000), "baseline_tokens_per_s": round(B * T / base_ms * 1000),
            "ratio": round(base_ms / ours_ms, 3), "block_ratio_p10_p90": [round(r, 3) for r in spread if r],
            "final_loss": {k: round(v, 4) for k, v in losses.items()},
            "params": {k: sum(p.numel() for p in sides[k]["params"]) for k in sides}}


# ---- 3. sampling ---------------------------------------------------------------------------------

def sample(shape: tuple, tokens: int, device: torch.device) -> dict:
    from minigpt_tui.core.config import ModelConfig
    from minigpt_tui.core.data.tokenizer import CharTokenizer
    from minigpt_tui.core.generation.sampling import Sampler, SamplingSettings
    from minigpt_tui.core.models import build_model

    L, H, C, T, V, _ = shape
    tokenizer = CharTokenizer.train("".join(chr(0x100 + i) for i in range(V)))
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=L, n_head=H, n_embd=C, context_length=T), tokenizer.vocab_size)
    model = model.to(device).eval()
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # the comparison is of float32 arithmetic
    gen = torch.Generator(device=device).manual_seed(2)
    ids = torch.randint(tokenizer.vocab_size, (1, 2 * T + 32), generator=gen, device=device)
    with torch.inference_mode():
        logits, cache = model(ids[:, : T // 2], model.new_state())
        worst = 0.0
        for t in range(T // 2, ids.size(1)):
            logits, cache = model(ids[:, t : t + 1], cache)
            if t % max(1, T // 16) == 0 or t == ids.size(1) - 1:  # every so often: a full forward each
                full = model(ids[:, max(0, t + 1 - model.receptive_field) : t + 1])[0][:, -1]
                worst = max(worst, (full - logits[:, -1]).abs().max().item())
    torch.backends.cuda.matmul.allow_tf32 = tf32
    prompt = tokenizer.decode(ids[0, :32].tolist())
    speeds = {}
    for use_cache in (True, False):
        n = tokens if use_cache else max(16, tokens // 8)
        sampler = Sampler(model, tokenizer, SamplingSettings(max_new_tokens=n, seed=1), use_cache=use_cache)
        for _ in sampler.generate(prompt):
            pass
        speeds["cached" if use_cache else "uncached"] = round(sampler.tokens_per_s, 1)
    return {"cache_vs_recompute_max_abs_diff": worst, "cache_equals_recompute": worst < 1e-3,
            "tokens_per_s": speeds, "new_tokens": {"cached": tokens, "uncached": max(16, tokens // 8)}}


# ---- the report ----------------------------------------------------------------------------------

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="tiny Shakespeare's input.txt (part 1)")
    p.add_argument("--only", default="train,compare,sample", help="which parts, comma-separated")
    p.add_argument("--steps", type=int, default=300, help="part 1's steps per setting")
    p.add_argument("--compare-steps", type=int, default=300, help="part 2's steps per side at the char shape")
    p.add_argument("--gpt2-steps", type=int, default=120, help="part 2's steps per side at the GPT-2 shape")
    p.add_argument("--gpt2-batch", type=int, default=8)
    p.add_argument("--block", type=int, default=20, help="part 2's steps per alternated block")
    p.add_argument("--sample-tokens", type=int, default=500)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_check.json")
    p.add_argument("--dry-run", action="store_true", help="on the CPU: tiny shapes, few steps, no compile")
    args = p.parse_args()
    parts = set(args.only.split(","))
    if args.dry_run:
        device, shapes, compiles = torch.device("cpu"), TINY_SHAPES, (False,)
        args.steps, args.compare_steps, args.gpt2_steps, args.block, args.sample_tokens = 12, 12, 8, 4, 40
    elif torch.cuda.is_available():
        device, shapes, compiles = torch.device("cuda"), SHAPES, (False, True)
    else:
        print("gpu_check: no CUDA GPU here; nothing to check (--dry-run runs the code on the CPU).")
        return 0
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    shapes = {**shapes, "gpt2-small": (*shapes["gpt2-small"][:5], args.gpt2_batch if not args.dry_run else 2)}
    report: dict = {"machine": machine.info(str(device)), "date": time.strftime("%Y-%m-%d")}
    print(machine.summary(report["machine"]), flush=True)

    def save():
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MINIGPT_TUI_HOME"] = tmp
        if "train" in parts:
            report["train"] = []
            print(f"\n1. the trainer, shakespeare-char-transformer, {args.steps} steps\n"
                  f"{'precision':<10}{'compile':<9}{'ms/step':>9}{'tokens/s':>12}{'loss':>8}{'val':>8}")
            for precision in ("fp32", "bf16"):
                for compile_ in compiles:
                    r = train(args.data, args.steps, precision, compile_, device.type, sync)
                    report["train"].append(r)
                    save()
                    print(f"{precision:<10}{str(compile_):<9}{r['median_ms_per_step']:>9}{r['tokens_per_s']:>12,}"
                          f"{r['final_loss']:>8}{r['final_val_loss']:>8}", flush=True)
        if "compare" in parts:
            report["compare"] = {}
            print("\n2. side by side with the GPT-2-style baseline, bf16 autocast\n"
                  f"{'shape':<18}{'compile':<9}{'ours ms':>9}{'base ms':>9}{'ours tok/s':>12}{'ratio':>7}  p10-p90")
            for name, shape in shapes.items():
                steps = args.gpt2_steps if name == "gpt2-small" else args.compare_steps
                for compile_ in compiles:
                    r = compare(shape, steps, args.block, min(20, steps // 3), compile_, device, sync)
                    report["compare"].setdefault(name, []).append(r)
                    save()
                    print(f"{name:<18}{str(compile_):<9}{r['ours_ms']:>9}{r['baseline_ms']:>9}"
                          f"{r['ours_tokens_per_s']:>12,}{r['ratio']:>7}  {r['block_ratio_p10_p90']}", flush=True)
        if "sample" in parts:
            report["sample"] = {}
            print("\n3. sampling (float32): cache against recompute, tokens/s")
            for name, shape in shapes.items():
                r = report["sample"][name] = sample(shape, args.sample_tokens, device)
                save()
                verdict = "OK" if r["cache_equals_recompute"] else "MISMATCH"
                print(f"{name:<18} max |diff| {r['cache_vs_recompute_max_abs_diff']:.2e} ({verdict}); "
                      f"tokens/s {r['tokens_per_s']}", flush=True)
    print(json.dumps(report))
    return 0 if all(r["cache_equals_recompute"] for r in report.get("sample", {}).values()) else 1


if __name__ == "__main__":
    sys.exit(main())
