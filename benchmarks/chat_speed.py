"""Time to first token of a chat's turn 1 and turn 30, with the sampler's state carried between
turns and with the transcript re-read every turn (not a test).

    python benchmarks/chat_speed.py                  # untrained models of the kjv recipes' shapes
    python benchmarks/chat_speed.py --run RUN        # also (or only, with --only-run) a trained run

For each model family, on the default recipe's shape (kjv-char-transformer: 4 layers, 128 wide,
window 128; kjv-char-gru: 3 GRU layers of 256; the same with LSTM cells), a conversation of
--turns turns is made: each turn a --user-chars user text, then a reply of exactly --reply-tokens
tokens (no stop strings, so every conversation grows the same way). Time to first token (TTFT) is
measured from handing over the user's words to the first reply token:

  carried    core.generation.chat: the session feeds only the new words (the RNN from its hidden state, the
             Transformer a window at a time against its ring-buffer KV cache), then samples;
  re-read    a stateless chat: Sampler.generate() over the whole transcript each turn. It reads
             what can still matter: the Transformer its receptive field (n_layer x (W-1) + 1 =
             509 tokens here, exact), an RNN at most 8 x context_length = 1,024 tokens (cropped).

Each TTFT is the best of --repeats tries (the carried path restores its mark before each try, so
every try starts from the same state). Speed does not depend on how well the weights are trained.
Prints a table with the machine line under it (benchmarks/machine.py: "Machine class: CPU without
native bf16 (AVX2). CPU: ... features avx2 fma ...; torch ... threads; load average ...") and writes
JSON, with machine.info()'s dict under "machine", to benchmarks/results/chat_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import machine  # benchmarks/machine.py (this script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
USER_TEXT = "And he said unto them, Go ye into all the world, and preach the gospel. "
SHAPES = {  # family -> (recipe, overrides)
    "transformer": ("kjv-char-transformer", []),
    "gru": ("kjv-char-gru", []),
    "lstm": ("kjv-char-gru", ['model.family="lstm"']),
}


def untrained(family: str):
    """(model, tokenizer, shape) of a recipe's shape with fresh weights and a KJV-like vocabulary."""
    import torch

    from minigpt_tui.core.config import RunConfig
    from minigpt_tui.core.data.tokenizer import CharTokenizer
    from minigpt_tui.core.models import build_model
    from minigpt_tui.core.paths import find_recipe

    recipe, overrides = SHAPES[family]
    cfg = RunConfig.load(find_recipe(recipe)).with_overrides(overrides).model
    tok = CharTokenizer.train("".join(chr(c) for c in range(32, 127)) + "\n")
    torch.manual_seed(0)
    return build_model(cfg, tok.vocab_size).eval(), tok, f"{recipe} shape ({family})"


def carried_turn(session, words: str, repeats: int) -> tuple[float, str]:
    """One turn of a chat session that keeps its state: `words` read on top of it, then a reply.
    Seconds to the reply's first token, the best of `repeats` tries (the session's mark is restored
    before each), and the reply's text (the last try's, read into the state for the next turn)."""
    mark = session.mark()
    best, reply = float("inf"), ""
    for _ in range(repeats):
        session.restore(mark)
        start = time.perf_counter()
        session.feed(words)
        stream = session.reply()
        first = next(stream)
        best = min(best, time.perf_counter() - start)
        reply = first.text + "".join(e.text for e in stream)
    return best, reply


def measure(model, tok, turns: int, user_chars: int, reply_tokens: int, repeats: int) -> dict:
    from minigpt_tui.core.generation.chat_session import ChatSession
    from minigpt_tui.core.generation.sampling import Sampler, SamplingSettings

    words = (USER_TEXT * (user_chars // len(USER_TEXT) + 1))[:user_chars]
    settings = SamplingSettings(temperature=0.8, seed=1337, max_new_tokens=reply_tokens)
    session = ChatSession(Sampler(model, tok, settings))
    stateless = Sampler(model, tok, SamplingSettings(temperature=0.8, seed=1337, max_new_tokens=1))
    list(Sampler(model, tok, SamplingSettings(max_new_tokens=20)).generate(USER_TEXT))  # warm-up
    carried, reread, transcript = [], [], ""
    for turn in range(1, turns + 1):
        best, reply = carried_turn(session, words, repeats)
        carried.append(best)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            next(iter(stateless.generate(transcript + words)))
            best = min(best, time.perf_counter() - start)
        reread.append(best)
        transcript += words + reply
        print(f"  turn {turn:2d}: {len(session.ids):5d} tokens, TTFT carried {carried[-1] * 1e3:6.1f} ms, "
              f"re-read {reread[-1] * 1e3:6.1f} ms", file=sys.stderr, flush=True)
    ms = lambda s: round(s * 1e3, 2)  # noqa: E731
    return {
        "turns": turns, "tokens_at_last_turn": len(session.ids), "user_tokens": len(tok.encode(words)),
        "reply_tokens": reply_tokens,
        "carried_ms": {"turn_1": ms(carried[0]), f"turn_{turns}": ms(carried[-1])},
        "reread_ms": {"turn_1": ms(reread[0]), f"turn_{turns}": ms(reread[-1])},
        "carried_ratio": round(carried[-1] / carried[0], 2), "reread_ratio": round(reread[-1] / reread[0], 2),
        "carried_all_ms": [ms(s) for s in carried], "reread_all_ms": [ms(s) for s in reread],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", default="transformer,gru,lstm")
    p.add_argument("--run", action="append", default=[], help="also measure this trained run (name or folder)")
    p.add_argument("--only-run", action="store_true", help="measure only the --run runs")
    p.add_argument("--turns", type=int, default=30)
    p.add_argument("--user-chars", type=int, default=60)
    p.add_argument("--reply-tokens", type=int, default=120)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS / "chat_speed.json")
    args = p.parse_args()

    import torch

    from minigpt_tui.core.runs.run_dir import RunDir

    subjects = []
    if not args.only_run:
        subjects += [untrained(f) for f in args.families.split(",") if f]
    for name in args.run:
        loaded = RunDir.resolve(name).load(checkpoint="last")
        subjects.append((loaded.model, loaded.tokenizer, f"{loaded.run_dir.name} (step {loaded.step})"))
    rows = []
    for model, tok, label in subjects:
        print(f"{label}:", file=sys.stderr, flush=True)
        row = measure(model, tok, args.turns, args.user_chars, args.reply_tokens, args.repeats)
        rows.append({"model": label, "family": model.config.family, **row})
    report = {
        "machine": machine.info("cpu"), "torch": torch.__version__, "load_average_1m": round(os.getloadavg()[0], 2), "rows": rows,
    }
    t = args.turns
    print(f"\ntime to first token, ms (best of {args.repeats}); {args.user_chars}-character user turns, "
          f"{args.reply_tokens}-token replies; load average {report['load_average_1m']}")
    header = ("model", "turn 1 carried", f"turn {t} carried", "ratio", "turn 1 re-read", f"turn {t} re-read", "ratio")
    table = [header] + [(r["model"], f"{r['carried_ms']['turn_1']:.1f}", f"{r['carried_ms'][f'turn_{t}']:.1f}",
                         f"{r['carried_ratio']:.2f}x", f"{r['reread_ms']['turn_1']:.1f}",
                         f"{r['reread_ms'][f'turn_{t}']:.1f}", f"{r['reread_ratio']:.2f}x") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
    print(machine.summary(report["machine"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"\n(written to {args.out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
