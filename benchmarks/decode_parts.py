"""Where one sampled token's time goes, for a Transformer run (not a test).

    python benchmarks/decode_parts.py --run RUN          # a run's name or folder (sample_speed.py --runs-root keeps them)

sample_speed.py says how fast the cached sampler is against the reference loop; this script says why,
in microseconds per token, each figure the median of --rounds measurements (each also printed as its
low-high range):
  generate      Sampler.generate(), 1,000 tokens at temperature 0.8, all of it
  in place      the same loop taken apart, each part timed where it runs: the decode step, the pick
                (softmax, the draw, the top alternatives), compute()'s entry and exit (inference mode,
                the sampler's thread count) and the event (text, stop strings)
  decode alone  model.decode_step on one token, again and again, nothing in between
  pick alone    Sampler.pick on one row of logits, again and again
  products      the decode's matrix products alone in torch (MKL; the model's own weights, one row each)
  in cache      the same products on the first block's weights used four times, which stay in
                cache: the gap to `products` is the time to stream the weights from memory
The step and the pick are the C kernels' (core/native.py) where they are built, else torch's
(MINIGPT_TUI_NATIVE=0 measures the torch path); the first line says which step ran. The parts cost
more in place than alone when the weights do not fit the L2 cache: each token's decode streams them
through and evicts what the pick and the loop use. Prints the machine line
(benchmarks/machine.py) and the JSON, also written to benchmarks/results/decode_parts.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import machine  # benchmarks/machine.py (this script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "ROMEO:\nWhat light through yonder window breaks?\n"


def per_token(fn, tokens: int) -> float:
    """µs per token of fn(), which handles `tokens` tokens."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) / tokens * 1e6


def parts_in_place(sampler, tokenizer, tokens: int) -> dict[str, float]:
    """generate()'s loop with each part timed where it runs (µs per token, the prefill left out)."""
    from minigpt_tui.core.generation.sampling import GenerationStats, ReplyText, prompt_ids

    ids = prompt_ids(tokenizer, PROMPT)
    reply = ReplyText(tokenizer.stream_decoder(ids[-1]), GenerationStats(), tokenizer.end_ids)
    sampler.reseed()
    spent = dict.fromkeys(("decode", "pick", "compute() entry and exit", "event"), 0.0)
    logits = state = None
    for n in range(tokens):
        a = time.perf_counter()
        computing = sampler.compute()
        computing.__enter__()
        b = time.perf_counter()
        logits, state = sampler._prefill(ids) if logits is None else sampler._step(ids, state)
        c = time.perf_counter()
        next_id, prob, top = sampler.pick(logits, ids)
        d = time.perf_counter()
        computing.__exit__(None, None, None)
        e = time.perf_counter()
        ids.append(next_id)
        reply.event(next_id, prob, top, e - a, (), last=False)
        f = time.perf_counter()
        if n:  # the first token is the prefill
            for name, took in zip(spent, (c - b, d - c, (b - a) + (e - d), f - e)):
                spent[name] += took
    return {name: took / (tokens - 1) * 1e6 for name, took in spent.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a Transformer run (name or folder)")
    p.add_argument("--tokens", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "decode_parts.json")
    args = p.parse_args()

    import torch

    from minigpt_tui.core.generation.sampling import Sampler, SamplingSettings
    from minigpt_tui.core.runs.run_dir import RunDir

    run_dir = RunDir.resolve(args.run)
    run = run_dir.load(checkpoint="last")
    model, tok = run.model.eval(), run.tokenizer
    if run.config.model.family != "transformer":
        print(f"{args.run} is a {run.config.model.family} run; this script takes apart a Transformer's decode.")
        return 2
    settings = SamplingSettings(temperature=0.8, seed=1337, max_new_tokens=args.tokens)
    sampler = Sampler(model, tok, settings)
    list(sampler.generate(PROMPT))  # warm-up

    # The decode alone and its products, on the sampler's thread count, as generate() runs them.
    threads = torch.get_num_threads()
    torch.set_num_threads(sampler.threads or threads)
    with torch.inference_mode():
        prompt = tok.encode(PROMPT)[-model.config.context_length:]
        _, state = model(torch.tensor([prompt]), model.new_state(), last=True)
        for _ in range(2 * model.config.context_length):  # past the ring's filling: the steady path
            _, state = model.decode_step(5, state)
        weights = [w for b in state.plan.blocks for w in (b.qkv_weight_t, b.proj_weight_t, b.up_weight_t,
                                                          b.down_weight_t)] + [state.plan.head_t]
        first_block = weights[:4] * len(state.plan.blocks) + weights[-1:]
        rows = [torch.randn(1, w.size(0)) for w in weights]

        def decode_alone():
            for _ in range(args.tokens):
                model.decode_step(5, state)

        logits = model.decode_step(5, state)[0][0]
        recent = list(prompt)

        def pick_alone():
            for _ in range(args.tokens):
                sampler.pick(logits, recent)

        def products(ws):
            def go():
                for _ in range(args.tokens):
                    for x, w in zip(rows, ws):
                        torch.mm(x, w)
            return go

        timings: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            torch.set_num_threads(threads)
            timings.setdefault("generate", []).append(per_token(lambda: list(sampler.generate(PROMPT)), args.tokens))
            for name, took in parts_in_place(sampler, tok, args.tokens).items():
                timings.setdefault(f"in place: {name}", []).append(took)
            torch.set_num_threads(sampler.threads or threads)
            mkldnn, torch.backends.mkldnn.enabled = torch.backends.mkldnn.enabled, False  # as the decode runs them
            try:
                timings.setdefault("decode alone", []).append(per_token(decode_alone, args.tokens))
                timings.setdefault("pick alone", []).append(per_token(pick_alone, args.tokens))
                timings.setdefault(f"products ({len(weights)} matrices)", []).append(
                    per_token(products(weights), args.tokens))
                timings.setdefault("the same products, in cache", []).append(
                    per_token(products(first_block), args.tokens))
            finally:
                torch.backends.mkldnn.enabled = mkldnn
        torch.set_num_threads(threads)

    megabytes = sum(w.numel() * w.element_size() for w in weights) / 1e6
    step = type(state.steady).__name__  # NativeStep (the C kernels of core/native.py) or SteadyStep (torch)
    print(f"one token of {run_dir.name} ({megabytes:.1f} MB of decode weights; the step: {step}), µs per token, "
          f"median of {args.rounds} rounds (low-high):")
    for name, values in timings.items():
        print(f"  {name:<40} {statistics.median(values):8.1f}   ({min(values):.1f}-{max(values):.1f})")
    report = {"run": run_dir.name, "weights_mb": round(megabytes, 2), "tokens": args.tokens,
              "rounds": args.rounds, "step": step, "sampler_threads": sampler.threads, "machine": machine.info("cpu"),
              "us_per_token": {k: [round(v, 1) for v in vs] for k, vs in timings.items()}}
    machine.publish(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
