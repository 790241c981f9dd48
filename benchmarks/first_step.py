"""Seconds from pressing `s` in the Train tab to the first step's loss on screen (not a test).

    python benchmarks/first_step.py                 # 3 rounds, the default recipe on the built-in Bible
    python benchmarks/first_step.py --rounds 5 --recipe shakespeare-char-transformer --data path/to/input.txt

Each round opens the real app headless (App.run_test) in a private data home, waits --wait
seconds (a person filling in the form; the standby trainer does its imports meanwhile), presses
`s`, and times until the Train tab has drawn the first step's loss (the state holds it and the
4 Hz display tick has rendered it); then it stops the run. Two ways take turns, round by round:
  standby   the app's default: the run goes to the standby trainer (minigpt_tui/cli/standby.py)
  fresh     MINIGPT_TUI_STANDBY=0: a new `python -m minigpt_tui --train` per start, as before
A first, untimed start tokenizes the corpus into the cache, as a user's first run does once.
The second table is where a fresh trainer's time goes: seconds from spawning
`python -m minigpt_tui --train ... --events jsonl` to its first events.
Prints the machine line (benchmarks/machine.py) and JSON (also benchmarks/results/first_step.json).
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
RESULTS = ROOT / "benchmarks" / "results"


async def press_s(recipe: str, data: str | None, wait: float) -> float:
    """One start in the app: seconds from `s` to the first loss drawn."""
    from minigpt_tui.tui.app import MiniGPTApp

    app = MiniGPTApp(save=False)
    async with app.run_test(size=(100, 30)) as pilot:
        train = app.train
        train.load_recipe(recipe)
        if data:
            app.query_one("#f-data-path").value = data
        await pilot.pause(wait)
        started = time.perf_counter()
        # (Pilot.press returns only once the app is idle, which a streaming run delays by a second
        # or more: the press runs beside the clock, not in front of it.)
        press = asyncio.create_task(pilot.press("s"))
        while not (train.state.loss is not None and not train._dirty):  # held, and drawn by the tick
            if press.done() and not train.training and train.state.status in ("failed", "finished", "stopped"):
                raise SystemExit(f"the run ended before its first step: {train.state.message}")
            await asyncio.sleep(0.005)
        seconds = time.perf_counter() - started
        await press
        await pilot.press("x")
        while train.training:
            await asyncio.sleep(0.05)
    return seconds


def fresh_process_timeline(recipe: str, data: str | None) -> dict[str, float]:
    """Seconds from spawning a headless trainer to each kind of its first events."""
    argv = [sys.executable, "-m", "minigpt_tui", "--train", recipe, "--events", "jsonl"]
    if data:
        argv += ["--set", f"data.path={json.dumps(data)}"]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    seen: dict[str, float] = {}
    for line in proc.stdout:
        try:
            kind = json.loads(line).get("type")
        except ValueError:
            continue
        seen.setdefault(kind, round(time.perf_counter() - start, 2))
        if kind == "step":
            break
    proc.terminate()
    proc.wait()
    proc.stdout.close()
    return seen


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--wait", type=float, default=8.0, help="seconds in the app before pressing s (default 8)")
    p.add_argument("--recipe", default="kjv-char-transformer")
    p.add_argument("--data", help="the corpus (default: the recipe's)")
    p.add_argument("--out", type=Path, default=RESULTS / "first_step.json")
    args = p.parse_args()

    times: dict[str, list[float]] = {"standby": [], "fresh": []}
    with tempfile.TemporaryDirectory(prefix="minigpt-first-step-") as home:
        os.environ["MINIGPT_TUI_HOME"] = home
        os.environ["MINIGPT_TUI_STANDBY"] = "0"
        print("an untimed first start (tokenizes the corpus into the cache) ...", file=sys.stderr, flush=True)
        asyncio.run(press_s(args.recipe, args.data, 0.5))
        for r in range(args.rounds):
            for way in ("standby", "fresh"):
                os.environ["MINIGPT_TUI_STANDBY"] = "1" if way == "standby" else "0"
                seconds = asyncio.run(press_s(args.recipe, args.data, args.wait))
                times[way].append(round(seconds, 2))
                print(f"round {r + 1} {way:8s} {seconds:5.2f} s from s to the first loss on screen",
                      file=sys.stderr, flush=True)
        timeline = fresh_process_timeline(args.recipe, args.data)

    report = {"machine": machine.info("cpu"), "recipe": args.recipe, "data": args.data or "(the recipe's)",
              "wait_s": args.wait, "seconds_to_first_loss": times,
              "median": {k: statistics.median(v) for k, v in times.items()},
              "fresh_trainer_timeline_s": timeline, "load_average_1m": round(os.getloadavg()[0], 2)}
    print(f"\nfirst step's loss on screen after pressing s ({args.recipe}; {args.rounds} rounds, taking turns)")
    for way, values in times.items():
        print(f"  {way:8s} median {statistics.median(values):5.2f} s   ({', '.join(f'{v:.2f}' for v in values)})")
    print("a fresh headless trainer, seconds from spawn to its first events: "
          + ", ".join(f"{k} {v:.2f}" for k, v in timeline.items()))
    machine.publish(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
