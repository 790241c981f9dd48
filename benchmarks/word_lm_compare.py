"""Word level against the reference word LM, on the same data, vocabulary, budget and evaluation.

    python benchmarks/word_lm_compare.py                 # 240 s of training each
    python benchmarks/word_lm_compare.py --budget 600

The reference is PyTorch's examples/word_language_model (benchmarks/reference_word_lm.py: a 2-layer
LSTM of 200, tied, dropout 0.2, bptt 35, SGD at lr 20 with its /4 annealing), trained for --budget
seconds. minigpt-tui then trains the same network shape (the wikitext2-word-lstm recipe with 200 wide,
2 layers, context 35, dropout 0.2, tied weights; AdamW with its own schedule, sized to the budget from
a short pilot) for the same budget. Data, the ../shared/data convention: train on wiki.valid.tokens,
validate on the first half of wiki.test.tokens' lines, test on the second half; the vocabulary is
every training word on both sides (data.vocab_size = 0), so <unk> means the same words on both.
Test perplexity is a full pass on both sides: the reference's own evaluate() (10 lanes from a zero
state) and `minigpt-tui --evaluate RUN --data TEST --batch 10` (10 lanes, each warmed with the
context before it). The two run one after the other in this invocation; the load is printed.
Perplexities are not comparable with published WikiText-2 figures (those train on the 2M-word split).
Above the table, the machine line (benchmarks/machine.py: "Machine class: CPU without native bf16
(AVX2). CPU: ... features avx2 fma ...; torch ... threads; load average ...", the GPU's name and
compute capability when minigpt-tui trained on one); machine.info()'s dict is the JSON's "machine".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # machine, train_bench
DATA = HERE.parent.parent / "shared" / "data" / "wikitext-2-partial"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=240.0, help="seconds of training per side")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "word_lm_compare.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["MINIGPT_TUI_HOME"] = str(work / "home")
        load_ref = os.getloadavg()[0]
        print(f"reference word LM, {args.budget:.0f} s ...", flush=True)
        subprocess.run([sys.executable, str(HERE / "reference_word_lm.py"), "--minutes", str(args.budget / 60),
                        "--work", str(work), "--json", str(work / "reference.json"), "--threads", "2"],
                       check=True, stdout=subprocess.DEVNULL)
        ref = json.loads((work / "reference.json").read_text())
        test = work / "wiki.test.second-half.tokens"

        import machine
        from train_bench import steps_for_budget, train

        load_ours = os.getloadavg()[0]
        sets = [f"data.path={args.data / 'wiki.valid.tokens'}", f"data.val_path={work / 'wiki.test.first-half.tokens'}",
                "data.vocab_size=0", "model.n_embd=200", "model.n_layer=2", "model.context_length=35",
                "model.dropout=0.2", "model.tie_weights=true", "train.sample_tokens=0"]
        steps = steps_for_budget("wikitext2-word-lstm", sets, args.budget)
        print(f"minigpt-tui wikitext2-word-lstm, {steps} steps sized to {args.budget:.0f} s ...", flush=True)
        log = train("wikitext2-word-lstm", [*sets, f"train.max_steps={steps}"], budget_s=args.budget)
        out = subprocess.run([sys.executable, "-m", "minigpt_tui", "--evaluate", log["run_dir"], "--data", str(test),
                              "--batch", "10", "--checkpoint", "best", "--json"],
                             capture_output=True, text=True, check=True)
        ours = json.loads(out.stdout)

    mach = machine.info(log["device"])
    print(f"\n{machine.summary(mach)}")
    print(f"Load average before each side: reference {load_ref:.2f}, minigpt-tui {load_ours:.2f}")
    print(f"| {args.budget:.0f} s of training, same data and vocabulary ({ref['vocab']:,} words) | reference word LM "
          "| minigpt-tui |")
    print("|---|---|---|")
    print(f"| training | {ref['epochs']} epochs, SGD | {log['steps_done']:,} steps, AdamW |")
    print(f"| test perplexity, full pass | {ref['test_ppl']:.1f} | {ours['perplexity']:.1f} |")
    print(f"| test bits per character | {ref['test_bits_per_char']:.3f} | {ours['bits_per_char']:.3f} |")
    print(f"| test tokens scored (<unk> share) | {ref['test_tokens_scored']:,} ({100 * ref['test_unk_share']:.1f}%) "
          f"| {ours['tokens']:,} ({100 * ours['unk_share']:.1f}%) |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": mach, "budget_s": args.budget, "reference": ref,
                                     "minigpt_tui": {**ours, "steps": log["steps_done"], "params": log["params"]}},
                                    indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
