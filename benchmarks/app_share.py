"""The app's share of the sampler's speed: tokens/s in the Generate tab against the same chat headless.

    python benchmarks/app_share.py                      # trains a short shakespeare-char-transformer run first
    python benchmarks/app_share.py --run RUN --tokens 4000 --rounds 10 --sampler process,thread
    python benchmarks/app_share.py --recipe kjv-char-transformer    # the default recipe's shape (10.6M)

Both sides run the very code a user runs: a run loaded from disk, a `core.generation.chat.Chat` in co-write mode
over a chat session, one reply of --tokens tokens to the same prompt with the same seed.
  app       MiniGPTApp under Textual's headless driver (run_test): the prompt is typed and sent with
            Enter in the Generate tab; the reply streams into the transcript (its drain, the odds
            panel, the status line), exactly as on a terminal. --sampler says where it is sampled:
            `process` (the app's default, core.generation.sampler_process: a child process, the events coming
            back over a pipe) and/or `thread` (MINIGPT_TUI_SAMPLER=thread: a ChatSession in a worker
            thread of the app's process, sharing its GIL with the UI thread: how the app sampled
            before); each is one app round per round.
  headless  the same reply from a ChatSession iterated on the main thread of this process with no app
            running (what `minigpt-tui --chat` does, without printing).
Rate = (tokens - 1) / (time of the last token - time of the first), the times at which the app's
worker (or the headless loop) received each token, i.e. decoding after the first token (prefill and
the UI's start-up are left out of both). Each round runs the app rounds then headless (A, B, headless,
A, B, headless, ...) so load drift hits all; the table gives each side's median and the ratio
app/headless per round (median and min-max). Key latency while streaming: the time from a key press
(`]`, raise the temperature), delivered as the terminal driver delivers keys, to its action having
changed the sampler's settings in the app (the child process reads it within core.generation.sampler_process's
CHECK_S), measured five times during each app round.
Prints the summary with the machine line (benchmarks/machine.py: "Machine class: CPU without native
bf16 (AVX2). CPU: ... features avx2 fma ...; torch ... threads; load average ...") and one JSON line
with machine.info()'s dict under "machine"; on a shared machine run it when nothing else is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import machine  # benchmarks/machine.py (this script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
PROMPT = "ROMEO:\nWhat light through yonder window breaks?"


def train_run(recipe: str, runs_root: Path, steps: int) -> Path:
    """A short run of `recipe` (speed does not depend on how well the weights are trained)."""
    data = ["--set", f"data.path={DATA}"] if DATA.exists() and recipe.startswith("shakespeare") else []
    subprocess.run([sys.executable, "-m", "minigpt_tui", "--train", recipe, *data,
                    "--set", f"train.max_steps={steps}", "--set", f"train.eval_interval={steps}",
                    "--set", "train.sample_tokens=0"], check=True, stdout=subprocess.DEVNULL)
    return max((p for p in runs_root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)


def timed(stream, stamps: list[float]):
    """Pass the reply's events through, noting when each arrived."""
    for event in stream:
        stamps.append(time.perf_counter())
        yield event


def rate(stamps: list[float]) -> float:
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")


def headless_round(run_dir: Path, tokens: int, seed: int) -> float:
    from minigpt_tui.core.generation.chat import Chat
    from minigpt_tui.core.generation.chat_session import ChatSession
    from minigpt_tui.core.generation.chat_template import RunChat
    from minigpt_tui.core.generation.sampling import Sampler
    from minigpt_tui.core.runs.run_dir import RunDir

    run = RunDir(run_dir).load(checkpoint="last")
    sampler = Sampler(run.model, run.tokenizer, use_cache=True)
    sampler.settings.max_new_tokens = tokens
    sampler.reseed(seed)
    template = RunChat(run_dir, run.tokenizer).template
    template.mode = "cowrite"
    chat = Chat(ChatSession(sampler), template, run=run_dir.name)
    stamps: list[float] = []
    for _ in timed(chat.say(PROMPT), stamps):
        pass
    return rate(stamps)


async def app_round(run_dir: Path, tokens: int, seed: int, sampler: str) -> tuple[float, list[float]]:
    from textual import events

    from minigpt_tui.tui.app import MiniGPTApp

    os.environ["MINIGPT_TUI_SAMPLER"] = sampler  # read when the app loads the run
    app = MiniGPTApp(run=run_dir, save=False)
    stamps: list[float] = []
    latencies: list[float] = []
    async with app.run_test(size=(120, 36)) as pilot:
        pane = app.generate
        await pilot.press("3")
        deadline = time.monotonic() + 60
        while pane.sampler is None and time.monotonic() < deadline:
            await pilot.pause(0.05)
        pane.prefs.max_new_tokens = pane.sampler.settings.max_new_tokens = tokens
        pane.sampler.reseed(seed)
        pane.chat.template.mode = "cowrite"
        say = pane.chat.say
        pane.chat.say = lambda words, cancel=None: timed(say(words, cancel=cancel), stamps)
        await pilot.press("i")
        pane.prompt.value = PROMPT
        await pilot.press("enter")
        while not stamps:
            await pilot.pause(0.01)
        # Key latency while the reply streams: `]` raises the temperature; the settings line shows it.
        while pane.generating and len(latencies) < 5:
            await pilot.pause(0.15)
            before = pane.sampler.settings.temperature
            # Sent as the terminal driver sends a key (Pilot.press would then wait for the process to
            # fall idle, which it never does while a reply streams, and time that instead).
            key = events.Key("right_square_bracket", "]")
            key.set_sender(app)
            pressed = time.perf_counter()
            app._driver.send_message(key)
            while pane.sampler.settings.temperature == before and time.perf_counter() - pressed < 2:
                await asyncio.sleep(0.001)
            latencies.append(time.perf_counter() - pressed)
        while pane.generating:
            await pilot.pause(0.02)
    return rate(stamps), latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="an existing run folder (default: train a short one)")
    parser.add_argument("--recipe", default="shakespeare-char-transformer")
    parser.add_argument("--steps", type=int, default=100, help="steps of the run trained when --run is not given")
    parser.add_argument("--tokens", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--sampler", default="process,thread",
                        help="where the app samples, one app round each per round: process (the app's default: "
                             "a child process), thread (a worker thread in the app's process, as before)")
    parser.add_argument("--switch-interval", type=float, default=None,
                        help="sys.setswitchinterval for both sides (an experiment; Python's default is 0.005)")
    args = parser.parse_args()
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)

    with tempfile.TemporaryDirectory() as tmp:
        if not args.run:  # (a home of its own, so the app lists only this run)
            os.environ["MINIGPT_TUI_HOME"] = str(Path(tmp) / "home")
        from minigpt_tui.core.paths import runs_dir

        run_dir = Path(args.run).resolve() if args.run else train_run(args.recipe, runs_dir(), args.steps)
        modes = [m.strip() for m in args.sampler.split(",") if m.strip()]
        app_rates = {m: [] for m in modes}
        ratios = {m: [] for m in modes}
        latencies = {m: [] for m in modes}
        head_rates = []
        headless_round(run_dir, 50, 0)  # warm-up: imports and first-call costs, for neither side
        for r in range(args.rounds):
            line = []
            for mode in modes:  # A, B, headless; A, B, headless; ...
                a, lat = asyncio.run(app_round(run_dir, args.tokens, r, mode))
                app_rates[mode].append(a)
                latencies[mode] += lat
                line.append((mode, a))
            h = headless_round(run_dir, args.tokens, r)
            head_rates.append(h)
            for mode, a in line:
                ratios[mode].append(a / h)
            print(f"round {r + 1}: " + ", ".join(f"app ({m}) {a:,.0f} tok/s" for m, a in line)
                  + f", headless {h:,.0f} tok/s; ratios " + ", ".join(f"{a / h:.2f}" for _, a in line), flush=True)

    result = {
        "machine": machine.info("cpu"),
        "load_average": os.getloadavg(),
        "run": run_dir.name,
        "tokens": args.tokens,
        "headless_tok_s_median": statistics.median(head_rates),
        "sampler": {m: {
            "app_tok_s_median": statistics.median(app_rates[m]),
            "ratio_median": statistics.median(ratios[m]),
            "ratio_min": min(ratios[m]),
            "ratio_max": max(ratios[m]),
            "key_latency_ms_median": 1000 * statistics.median(latencies[m]) if latencies[m] else None,
            "key_latency_ms_max": 1000 * max(latencies[m]) if latencies[m] else None,
        } for m in modes},
    }
    print(f"\n{machine.summary(result['machine'])}")
    print(f"headless {result['headless_tok_s_median']:,.0f} tok/s (median of {args.rounds} rounds)")
    for m, row in result["sampler"].items():
        print(f"app, sampler in a {m}: {row['app_tok_s_median']:,.0f} tok/s, ratio to headless {row['ratio_median']:.2f} "
              f"(min {row['ratio_min']:.2f}, max {row['ratio_max']:.2f})", end="")
        if row["key_latency_ms_median"] is not None:
            print(f"; key press to action while streaming: median {row['key_latency_ms_median']:.0f} ms, "
                  f"max {row['key_latency_ms_max']:.0f} ms ({len(latencies[m])} presses)")
        else:
            print()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
