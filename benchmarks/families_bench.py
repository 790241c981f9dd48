"""The four model families side by side on tiny Shakespeare (not a test; run it by hand).

    python benchmarks/families_bench.py                      # 180 s of training each
    python benchmarks/families_bench.py --seconds 20         # a quick check (no figure to publish)
    python benchmarks/families_bench.py --only cnn gru --data path/to/shared/data
    python benchmarks/families_bench.py --seconds 5 --set model.n_embd=32 --turns 3   # does it run?

GRU, LSTM, Transformer and CNN each train with minigpt-tui's real trainer for the same --seconds of
training, one after the other in this process (the clock starts at the trainer's Started event, so
reading and tokenizing the corpus is left out), from their recipes:
  gru          kjv-char-gru (3 GRU layers of 256, context 128) on tiny Shakespeare
  lstm         the same with LSTM cells
  transformer  shakespeare-char-best (4 layers, 192 wide, context 128)
  cnn          shakespeare-char-cnn
each with train.max_steps sized to the budget from a 40-step pilot (train_bench.steps_for_budget),
so its learning-rate schedule ends at the budget. Then, for each:
  bits/char    `minigpt-tui --evaluate RUN --checkpoint last --json`: a full pass over the validation
               split (the last 10% of the text; every token predicted once; see
               core/training/evaluate.py for how each family is scored);
  sampling     tokens/s of `Sampler.generate` (the sampler's own compute time, as --generate reports
               it), --sample-tokens new tokens after a 48-character prompt, temperature 0.8, the best
               of 3;
  chat TTFT    time to the first token of a reply at turn 1 and at turn --turns of one conversation
               (core.generation.chat_session: each turn --user-chars typed characters read on top of
               the carried state, then a --reply-tokens reply), the best of 3 tries per turn (the
               session's mark is restored before each).
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


def sampling_speed(model, tokenizer, tokens: int, repeats: int = 3) -> float:
    """Best tokens/s of the sampler's compute time over `repeats` generations."""
    from minigpt_tui.core.generation.sampling import Sampler, SamplingSettings

    best = 0.0
    for seed in range(repeats):
        sampler = Sampler(model, tokenizer, SamplingSettings(temperature=0.8, seed=seed, max_new_tokens=tokens))
        for _ in sampler.generate(PROMPT):
            pass
        best = max(best, sampler.tokens_per_s)
    return best


def chat_ttft(model, tokenizer, turns: int, user_chars: int, reply_tokens: int, repeats: int = 3) -> list[float]:
    """Seconds to the first reply token at each turn, the best of `repeats` tries."""
    from minigpt_tui.core.generation.chat_session import ChatSession
    from minigpt_tui.core.generation.sampling import Sampler, SamplingSettings

    words = (USER_TEXT * (user_chars // len(USER_TEXT) + 1))[:user_chars]
    session = ChatSession(Sampler(model, tokenizer, SamplingSettings(temperature=0.8, seed=1337,
                                                                      max_new_tokens=reply_tokens)))
    firsts = []
    for _ in range(turns):
        mark = session.mark()
        best = float("inf")
        for _ in range(repeats):
            session.restore(mark)
            start = time.perf_counter()
            session.feed(words)
            stream = session.reply()
            next(stream)
            best = min(best, time.perf_counter() - start)
            for _ in stream:  # the rest of the reply, read into the state for the next turn
                pass
        firsts.append(best)
    return firsts


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
        from train_bench import steps_for_budget, train

        threads = torch.get_num_threads()
        device = "cpu"  # until a family has trained: the recipe's train.device decides
        print(machine.describe(), flush=True)
        rows = []
        for label in args.only or list(FAMILIES):
            recipe, overrides = FAMILIES[label]
            load = os.getloadavg()[0]
            print(f"training {label} ({recipe} {' '.join(overrides)}) for {args.seconds:.0f} s "
                  f"(load average {load:.2f}) ...", flush=True)
            sets = [f"data.path={corpus}", "data.val_fraction=0.1", "train.sample_tokens=0", *overrides, *args.set]
            steps = steps_for_budget(recipe, sets, args.seconds)
            log = train(recipe, [*sets, f"train.max_steps={steps}"], budget_s=args.seconds, label=label)
            torch.set_num_threads(threads)  # (a recipe's train.threads must not carry over)
            device = log["device"]
            out = subprocess.run([sys.executable, "-m", "minigpt_tui", "--evaluate", log["run_dir"],
                                  "--checkpoint", "last", "--json"], capture_output=True, text=True, check=True)
            scored = json.loads(out.stdout)
            loaded = RunDir(log["run_dir"]).load(checkpoint="last")
            model, tok = loaded.model, loaded.tokenizer
            tokens_per_s = sampling_speed(model, tok, args.sample_tokens)
            ttft = chat_ttft(model, tok, args.turns, args.user_chars, args.reply_tokens)
            rows.append({
                "family": label, "recipe": recipe, "overrides": overrides + args.set, "load_before": round(load, 2),
                "params": log["params"], "receptive_field": model.receptive_field, "steps": log["steps_done"],
                "train_s": round(log["wall_s"], 1), "final_val_loss": log["final_val_loss"],
                "bits_per_char": scored["bits_per_char"], "eval_method": scored["method"],
                "sampling_tokens_per_s": round(tokens_per_s), "ttft_ms_turn_1": round(ttft[0] * 1e3, 2),
                f"ttft_ms_turn_{args.turns}": round(ttft[-1] * 1e3, 2),
            })
            print(json.dumps(rows[-1]), flush=True)
        mach = machine.info(device)

    print(f"\n{machine.summary(mach)}")
    t = args.turns
    print(f"\n| {args.seconds:.0f} s of training each | parameters | receptive field | steps | bits/char (full pass) "
          f"| sampling tok/s | chat TTFT turn 1 / turn {t} |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        reach = f"{r['receptive_field']:,}" if r["receptive_field"] else "unbounded"
        print(f"| {r['family']} (`{r['recipe']}`{' ' + ' '.join(r['overrides']) if r['overrides'] else ''}) | "
              f"{r['params']:,} | {reach} | {r['steps']:,} | **{r['bits_per_char']:.3f}** | "
              f"{r['sampling_tokens_per_s']:,} | {r['ttft_ms_turn_1']:.1f} / {r[f'ttft_ms_turn_{t}']:.1f} ms |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": mach, "seconds": args.seconds, "turns": t,
                                     "sample_tokens": args.sample_tokens, "rows": rows}, indent=1) + "\n")
    print(f"\n(written to {args.json})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
