"""Char, word and BPE models on one scale: bits per character after the same wall-clock budget.

    python benchmarks/bits_per_char.py                   # 150 s of training each, on the built-in Bible
    python benchmarks/bits_per_char.py --budget 300 --data path/to/corpus.txt

Each of the three trains in this process with minigpt-tui's real trainer for --budget seconds of
training (the clock starts at the trainer's Started event, so reading and tokenizing the corpus,
which the token cache does once, is left out), one after the other, its train.max_steps sized to
the budget from a 40-step pilot (so its learning-rate schedule ends at the budget):
  char   kjv-char-transformer (characters, 4 layers, 128 wide, context 128)
  word   the same recipe on word tokens, every training word kept (data.vocab_size = 0)
  bpe    kjv-bpe-transformer (the same shape on 2048 byte-level BPE tokens)
Then `minigpt-tui --evaluate RUN --checkpoint last --json` scores each on the whole validation split
(the last 10% of the Bible's characters, the same characters for all three): every token predicted
once, and bits per character = total nats / ln 2 / characters. A word model's validation text has
words its training text lacks (<unk>): it predicts the <unk> token, not the word's letters, so its
figure flatters it by that share, which the table prints. Runs are sequential: the load average
before each is printed, and the machine should be otherwise idle. The machine line (benchmarks/
machine.py: "Machine class: CPU without native bf16 (AVX2). CPU: ... features avx2 fma ...; torch
... threads; load average ...", the GPU's name and compute capability when the models train on one)
is printed at the start and above the table, and machine.info()'s dict is the JSON's "machine".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # machine, train_bench

MODELS = {
    "char": ("kjv-char-transformer", []),
    "word": ("kjv-char-transformer", ["data.tokenizer=word", "data.vocab_size=0"]),
    "bpe": ("kjv-bpe-transformer", []),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=150.0, help="seconds of training per model")
    parser.add_argument("--data", default="", help="corpus (default: the built-in Bible)")
    parser.add_argument("--only", nargs="*", choices=list(MODELS), help="a subset of the models")
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "bits_per_char.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as home:
        os.environ["MINIGPT_TUI_HOME"] = home  # runs and token cache of their own, removed at the end
        import machine
        from train_bench import steps_for_budget, train

        device = "cpu"  # until a model has trained: the recipe's train.device decides
        print(machine.describe(), flush=True)
        rows = []
        for label in args.only or list(MODELS):
            recipe, overrides = MODELS[label]
            load = os.getloadavg()[0]
            print(f"training {label} ({recipe} {' '.join(overrides)}) for {args.budget:.0f} s ...", flush=True)
            sets = [f"data.path={args.data}", "train.sample_tokens=0", *overrides]
            steps = steps_for_budget(recipe, sets, args.budget)
            log = train(recipe, [*sets, f"train.max_steps={steps}"], budget_s=args.budget, label=label)
            device = log["device"]
            out = subprocess.run([sys.executable, "-m", "minigpt_tui", "--evaluate", log["run_dir"],
                                  "--checkpoint", "last", "--json"], capture_output=True, text=True, check=True)
            result = json.loads(out.stdout)
            rows.append({"model": label, "recipe": recipe, "overrides": overrides, "load_before": round(load, 2),
                         "params": log["params"], "vocab_size": log["vocab_size"], "steps": log["steps_done"],
                         "train_s": round(log["wall_s"], 1), **{k: result[k] for k in result
                                                               if k in ("bits_per_char", "bits_per_token",
                                                                        "nats_per_token", "perplexity", "tokens",
                                                                        "chars", "unk_share")}})
            print(json.dumps(rows[-1]), flush=True)

    mach = machine.info(device)
    print(f"\n{machine.summary(mach)}")
    print(f"| model | params | vocabulary | steps in {args.budget:.0f} s | chars/token | bits/token | "
          "bits/char | <unk> share |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} ({r['recipe']}{' ' + ' '.join(r['overrides']) if r['overrides'] else ''}) | "
              f"{r['params']:,} | {r['vocab_size']:,} | {r['steps']:,} | {r['chars'] / r['tokens']:.2f} | "
              f"{r['bits_per_token']:.3f} | **{r['bits_per_char']:.3f}** | {100 * r.get('unk_share', 0):.2f}% |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": mach, "budget_s": args.budget, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
