"""The app's share of the sampler's speed: tokens/s in the Generate tab against the same chat headless.

    python benchmarks/app_share.py                      # trains a short shakespeare-char-transformer run first
    python benchmarks/app_share.py --run RUN --tokens 1500 --rounds 5
    python benchmarks/app_share.py --recipe kjv-char-transformer    # the default recipe's shape (10.6M)

Both sides run the very code a user runs: a run loaded from disk, a `core.chat.Chat` in co-write mode
over a `ChatSession`, one reply of --tokens tokens to the same prompt with the same seed.
  app       MiniGPTApp under Textual's headless driver (run_test): the prompt is typed and sent with
            Enter in the Generate tab; the reply streams from the tab's thread worker into the
            transcript (its 30 Hz drain, the odds panel, the status line), exactly as on a terminal.
  headless  the same reply iterated on the main thread of this process with no app running
            (what `minigpt-tui --chat` does, without printing).
Rate = (tokens - 1) / (time of the last token - time of the first), i.e. decoding after the first
token (prefill and the UI's start-up are left out of both). The two sides alternate A, B, A, B for
--rounds rounds so load drift hits both; the table gives each side's median and the ratio app/headless
per round (median and min-max). Key latency while streaming: the time from a key press (`]`, raise
the temperature), delivered as the terminal driver delivers keys, to its action having changed the
sampler's settings, measured five times during each app round.
Prints the machine's load average; on a shared machine run it when nothing else is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    from minigpt_tui.core.chat import Chat
    from minigpt_tui.core.chat_session import ChatSession
    from minigpt_tui.core.chat_template import RunChat
    from minigpt_tui.core.runs import RunDir
    from minigpt_tui.core.sampling import Sampler

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


async def app_round(run_dir: Path, tokens: int, seed: int) -> tuple[float, list[float]]:
    from textual import events

    from minigpt_tui.tui.app import MiniGPTApp

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
        presses = len(latencies)
        while pane.generating:
            await pilot.pause(0.02)
    return rate(stamps), latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="an existing run folder (default: train a short one)")
    parser.add_argument("--recipe", default="shakespeare-char-transformer")
    parser.add_argument("--steps", type=int, default=100, help="steps of the run trained when --run is not given")
    parser.add_argument("--tokens", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=5)
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
        app_rates, head_rates, ratios, latencies = [], [], [], []
        headless_round(run_dir, 50, 0)  # warm-up: imports and first-call costs, for neither side
        for r in range(args.rounds):
            a, lat = asyncio.run(app_round(run_dir, args.tokens, r))
            h = headless_round(run_dir, args.tokens, r)
            app_rates.append(a)
            head_rates.append(h)
            ratios.append(a / h)
            latencies += lat
            print(f"round {r + 1}: app {a:,.0f} tok/s, headless {h:,.0f} tok/s, ratio {a / h:.2f}", flush=True)

    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average": os.getloadavg(),
        "run": run_dir.name,
        "tokens": args.tokens,
        "app_tok_s_median": statistics.median(app_rates),
        "headless_tok_s_median": statistics.median(head_rates),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "key_latency_ms_median": 1000 * statistics.median(latencies) if latencies else None,
        "key_latency_ms_max": 1000 * max(latencies) if latencies else None,
    }
    print(f"\nmachine {result['machine']}, load average {' '.join(f'{x:.2f}' for x in result['load_average'])}")
    print(f"app {result['app_tok_s_median']:,.0f} tok/s  headless {result['headless_tok_s_median']:,.0f} tok/s  "
          f"ratio {result['ratio_median']:.2f} (min {result['ratio_min']:.2f}, max {result['ratio_max']:.2f}, "
          f"{args.rounds} rounds)")
    if latencies:
        print(f"key press to screen while streaming: median {result['key_latency_ms_median']:.0f} ms, "
              f"max {result['key_latency_ms_max']:.0f} ms ({len(latencies)} presses)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
