"""The four model families side by side on tiny Shakespeare (not a test; run it by hand).

    python benchmarks/families_bench.py                      # 180 s of training each
    python benchmarks/families_bench.py --seconds 20         # a quick check (no figure to publish)
    python benchmarks/families_bench.py --only cnn gru --data path/to/shared/data
    python benchmarks/families_bench.py --seconds 5 --set model.n_embd=32 --turns 3   # does it run?
    python benchmarks/families_bench.py --speed-only         # sampling and chat speed alone

GRU, LSTM, Transformer and CNN each train with minigpt-tui's real trainer for the same --seconds of
training, one after the other in this process (the clock starts at the trainer's Started event, so
reading and tokenizing the corpus is left out), from their recipes:
  gru          kjv-char-gru (3 GRU layers of 256, context 128) on tiny Shakespeare
  lstm         the same with LSTM cells
  transformer  shakespeare-char-best (4 layers, 192 wide, context 128)
  cnn          shakespeare-char-cnn
each with train.time_budget = --seconds (core/training/time_budget.py sizes max_steps to the
measured rate as it trains), so its learning-rate schedule ends at the budget, and is scored:
  bits/char    `minigpt-tui --evaluate RUN --checkpoint last --json`: a full pass over the validation
               split (the last 10% of the text; every token predicted once; see
               core/training/evaluate.py for how each family is scored).
Then, once all have trained, their speed, in --rounds rounds in which the families take turns (so a
change in the machine's speed hits all alike), reported as the median (and range) over the rounds:
  sampling     tokens/s of `Sampler.generate` (the sampler's own compute time, as --generate reports
               it), --sample-tokens new tokens after a 48-character prompt, temperature 0.8;
  chat TTFT    time to the first token of a reply at turn 1 and at turn --turns of one conversation
               (core.generation.chat_session: each turn --user-chars typed characters read on top of
               the carried state, then a --reply-tokens reply);
  decode step  the model's decode_step alone on one thread, microseconds per token, and the aten
               operator calls it makes (torch.profiler): why one family samples faster than another.
--speed-only skips the training and measures untrained models of the recipes' shapes (speed does
not depend on how well the weights are trained): a minute or two.
Runs go to a temporary data home, removed at the end. Prints the machine line (benchmarks/machine.py:
its class, e.g. "Machine class: CPU without native bf16 (AVX2). CPU: ... features avx2 fma ...;
torch ... threads; load average ...", or the GPU's name and compute capability when the families
train on one) at the start and again above the table, the load average before each run, a Markdown
table, and writes JSON (machine.info()'s dict under "machine") to benchmarks/results/families_bench.json.
The machine should be otherwise idle.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # machine, train_bench
RESULTS = ROOT / "benchmarks" / "results"
FAMILIES = {  # label -> (recipe, overrides)
    "gru": ("kjv-char-gru", []),
    "lstm": ("kjv-char-gru", ['model.family="lstm"']),
    "transformer": ("shakespeare-char-best", []),
    "cnn": ("shakespeare-char-cnn", []),
}
PROMPT = "ROMEO:\nBut soft, what light through yonder window breaks?\n"[:48]
USER_TEXT = "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo? Deny thy father. "


def sampling_speed(model, tokenizer, tokens: int, seed: int) -> float:
    """Tokens/s of the sampler's compute time over one generation of `tokens` new tokens."""
    from minigpt_tui.core.generation.sampling import Sampler, SamplingSettings

    sampler = Sampler(model, tokenizer, SamplingSettings(temperature=0.8, seed=seed, max_new_tokens=tokens))
    for _ in sampler.generate(PROMPT):
        pass
    return sampler.tokens_per_s


def measure_speed(models: dict, args) -> dict:
    """family -> sampling tokens/s (median, range) and chat TTFT at turn 1 and the last turn
    (medians), over args.rounds rounds in which the families take turns."""
    import statistics

    rates: dict = {label: [] for label in models}
    firsts: dict = {label: [] for label in models}
    for label, (model, tok) in models.items():  # a warm-up, not measured
        sampling_speed(model, tok, 100, seed=0)
    for r in range(args.rounds):
        for label, (model, tok) in models.items():
            rates[label].append(sampling_speed(model, tok, args.sample_tokens, seed=r))
            firsts[label].append(chat_ttft(model, tok, args.turns, args.user_chars, args.reply_tokens, repeats=1))
    out = {}
    for label, (model, _) in models.items():
        out[label] = decode_profile(model)
    for label in models:
        turn_1 = statistics.median(f[0] for f in firsts[label])
        turn_n = statistics.median(f[-1] for f in firsts[label])
        out[label] |= {"sampling_tokens_per_s": round(statistics.median(rates[label])),
                      "sampling_tokens_per_s_range": [round(min(rates[label])), round(max(rates[label]))],
                      "ttft_ms_turn_1": round(turn_1 * 1e3, 2), f"ttft_ms_turn_{args.turns}": round(turn_n * 1e3, 2)}
    return out


def decode_profile(model, steps: int = 300) -> dict:
    """One token through the model's decode_step alone (no sampling): microseconds per token over
    `steps` calls, and the aten operator calls each makes (torch.profiler over 50 more, nested
    calls included); the sampler's own setting of one thread for small models."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            _, state = model.decode_step(1, model.new_state())
            for _ in range(50):
                _, state = model.decode_step(2, state)
            start = time.perf_counter()
            for _ in range(steps):
                _, state = model.decode_step(2, state)
            per_token = (time.perf_counter() - start) / steps
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(50):
                    _, state = model.decode_step(2, state)
    finally:
        torch.set_num_threads(threads)
    calls = sum(e.count for e in prof.key_averages() if e.key.startswith("aten::")) / 50
    return {"decode_step_us": round(per_token * 1e6), "aten_calls_per_token": round(calls)}


def untrained(recipe: str, overrides: list[str], corpus: Path):
    """A model of the recipe's shape with its initial weights, and a char tokenizer of the corpus
    (speed does not depend on how well the weights are trained)."""
    from minigpt_tui.core.config import RunConfig
    from minigpt_tui.core.data.tokenizer import CharTokenizer
    from minigpt_tui.core.models import build_model
    from minigpt_tui.core.paths import find_recipe

    config = RunConfig.load(find_recipe(recipe)).with_overrides(overrides)
    tokenizer = CharTokenizer.train(corpus.read_text(encoding="utf-8"), config.data.vocab_size)
    return build_model(config.model, tokenizer.vocab_size).eval(), tokenizer


def chat_ttft(model, tokenizer, turns: int, user_chars: int, reply_tokens: int, repeats: int = 3) -> list[float]:
    """Seconds to the first reply token at each turn, the best of `repeats` tries."""
    from chat_speed import carried_turn
    from minigpt_tui.core.generation.chat_session import ChatSession
    from minigpt_tui.core.generation.sampling import Sampler, SamplingSettings

    words = (USER_TEXT * (user_chars // len(USER_TEXT) + 1))[:user_chars]
    session = ChatSession(Sampler(model, tokenizer, SamplingSettings(temperature=0.8, seed=1337,
                                                                      max_new_tokens=reply_tokens)))
    return [carried_turn(session, words, repeats)[0] for _ in range(turns)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=180.0, help="seconds of training per family (default 180)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                        help="the folder holding tinyshakespeare/input.txt (default ../shared/data)")
    parser.add_argument("--only", nargs="*", choices=list(FAMILIES), help="a subset of the families")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every family (for a quick check: not the recipes' figures)")
    parser.add_argument("--sample-tokens", type=int, default=2000)
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--user-chars", type=int, default=60)
    parser.add_argument("--reply-tokens", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the speed measurements (default 5)")
    parser.add_argument("--speed-only", action="store_true",
                        help="no training: sampling and chat speed of untrained models of the recipes' shapes")
    parser.add_argument("--json", type=Path, default=RESULTS / "families_bench.json")
    args = parser.parse_args()
    corpus = args.data / "tinyshakespeare" / "input.txt"
    if not corpus.is_file():
        raise SystemExit(f"Tiny Shakespeare is not at {corpus}; pass --data with the folder that holds "
                         "tinyshakespeare/input.txt.")

    with tempfile.TemporaryDirectory() as home:
        os.environ["MINIGPT_TUI_HOME"] = home  # runs and token cache of their own, removed at the end
        import torch

        import machine
        from minigpt_tui.core.runs.run_dir import RunDir
        from train_bench import train

        threads = torch.get_num_threads()
        device = "cpu"  # until a family has trained: the recipe's train.device decides
        print(machine.describe(), flush=True)
        rows, models = [], {}
        for label in args.only or list(FAMILIES):
            recipe, overrides = FAMILIES[label]
            row = {"family": label, "recipe": recipe, "overrides": overrides + args.set}
            if args.speed_only:
                models[label] = untrained(recipe, [*overrides, *args.set], corpus)
                row["params"] = sum(p.numel() for p in models[label][0].parameters())
                rows.append(row)
                continue
            load = os.getloadavg()[0]
            print(f"training {label} ({recipe} {' '.join(overrides)}) for {args.seconds:.0f} s "
                  f"(load average {load:.2f}) ...", flush=True)
            sets = [f"data.path={corpus}", "data.val_fraction=0.1", "train.sample_tokens=0", *overrides, *args.set]
            # The run's time budget sizes its schedule to the machine; the hard stop is a guard.
            log = train(recipe, [*sets, f"train.time_budget={json.dumps(f'{args.seconds:g}s')}"],
                        budget_s=args.seconds + 60, label=label)
            torch.set_num_threads(threads)  # (a recipe's train.threads must not carry over)
            device = log["device"]
            out = subprocess.run([sys.executable, "-m", "minigpt_tui", "--evaluate", log["run_dir"],
                                  "--checkpoint", "last", "--json"], capture_output=True, text=True, check=True)
            scored = json.loads(out.stdout)
            loaded = RunDir(log["run_dir"]).load(checkpoint="last")
            models[label] = (loaded.model, loaded.tokenizer)
            row.update({
                "load_before": round(load, 2), "params": log["params"], "steps": log["steps_done"],
                "train_s": round(log["wall_s"], 1), "final_val_loss": log["final_val_loss"],
                "bits_per_char": scored["bits_per_char"], "eval_method": scored["method"],
            })
            rows.append(row)
            print(json.dumps(row), flush=True)
        # Speed, after all the training: the families take turns, round after round, so that a
        # change in the machine's speed while they are measured hits all of them alike.
        print(f"sampling and chat speed, {args.rounds} rounds, the families in turn ...", flush=True)
        speeds = measure_speed(models, args)
        for row in rows:
            row["receptive_field"] = models[row["family"]][0].receptive_field
            row.update(speeds[row["family"]])
        mach = machine.info(device)

    print(f"\n{machine.summary(mach)}")
    t = args.turns
    what = "untrained weights" if args.speed_only else f"{args.seconds:.0f} s of training each"
    print(f"\n| {what} | parameters | receptive field | steps | bits/char (full pass) "
          f"| sampling tok/s, median (min-max) | chat TTFT turn 1 / turn {t}, median |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        reach = f"{r['receptive_field']:,}" if r["receptive_field"] else "unbounded"
        trained = (f"{r['steps']:,} | **{r['bits_per_char']:.3f}**" if "steps" in r else "- | -")
        lo, hi = r["sampling_tokens_per_s_range"]
        print(f"| {r['family']} (`{r['recipe']}`{' ' + ' '.join(r['overrides']) if r['overrides'] else ''}) | "
              f"{r['params']:,} | {reach} | {trained} | {r['sampling_tokens_per_s']:,} ({lo:,}-{hi:,}) | "
              f"{r['ttft_ms_turn_1']:.1f} / {r[f'ttft_ms_turn_{t}']:.1f} ms |")
    print("\nOne decode step alone (one thread): " + "; ".join(
        f"{r['family']} {r['decode_step_us']:,} us, {r['aten_calls_per_token']} operator calls" for r in rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": mach, "seconds": 0 if args.speed_only else args.seconds, "turns": t,
                                     "sample_tokens": args.sample_tokens, "rows": rows}, indent=1) + "\n")
    print(f"\n(written to {args.json})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
