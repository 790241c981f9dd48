"""Make the README's pictures from the real app on a real small run (not a test; run it by hand).

    python docs/screenshots.py --data ../shared/data/tinyshakespeare/input.txt
    python docs/screenshots.py --data input.txt --steps 300 --out /tmp/shots    # a quick look

What it does, in a data home of its own (a temporary folder, removed at the end; your runs are
not touched):

1. trains `shakespeare-char-best` headless on the text for --steps steps (`minigpt-tui --train`,
   the same trainer the app runs; ~3 minutes for 1,500 steps on 2 CPU cores);
2. opens the app on that run in a terminal of --size columns x rows (Textual's headless driver, as
   the tests do), switches Generate to dialogue mode (the two speakers of the template the app
   reads from the corpus: you speak as the one, the model answers as the other), sends the --turn
   lines one after the other,
   waits for each reply and saves the screen as `generate.svg`: the conversation, the odds panel
   with the alternatives to the last token, the status line with the settings;
3. opens the app on the Train tab, starts a fresh run of the same recipe with evaluations every
   --eval-every steps, waits until the plot holds --train-evals validation points, saves
   `train.svg` with the loss plot mid-run, and stops the run.

The SVGs are Textual's own screenshot export (`App.save_screenshot`). Sampling uses the app's
default settings (seed 1337), so the same run gives the same replies; a new run of the trainer
gives new weights, and so other words. Regenerate them when the app's screens change, and commit
the files in docs/images/.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECIPE = "shakespeare-char-best"
TURNS = ["What light through yonder window breaks?", "I would I were thy bird.",
         "Good night, good night! Parting is such sweet sorrow."]


async def wait_for(pilot, condition, timeout: float) -> None:
    """Let the app run until condition() holds; a clear error if it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise SystemExit(f"The app did not get there within {timeout:.0f} s: {condition.__doc__ or ''}")
        await pilot.pause(0.05)


def train_headless(corpus: Path, steps: int) -> Path:
    """A run of the recipe trained for `steps` steps; its folder."""
    from minigpt_tui.core import paths

    print(f"training {RECIPE} for {steps:,} steps on {corpus} ...", flush=True)
    subprocess.run([sys.executable, "-m", "minigpt_tui", "--train", RECIPE, "--set", f"data.path={corpus}",
                    "--set", f"train.max_steps={steps}", "--set", f"train.eval_interval={max(steps // 4, 1)}",
                    "--progress-every", "30"], check=True)
    (run,) = sorted(paths.runs_dir().iterdir())
    return run


async def shoot_generate(run: Path, out: Path, size: tuple[int, int], turns: list[str]) -> None:
    from minigpt_tui.tui.app import MiniGPTApp
    from minigpt_tui.tui.settings import AppSettings

    app = MiniGPTApp(run=run, settings=AppSettings(), save=False)
    async with app.run_test(size=size) as pilot:
        gen = app.generate

        def loaded():
            """the run to load into the Generate tab"""
            return gen.sampler is not None and not gen.loading
        await wait_for(pilot, loaded, 60)
        await pilot.press("escape", "m")  # co-write -> dialogue, the speakers read from the corpus
        for words in turns:
            await pilot.press("i")
            gen.prompt.value = words
            await pilot.press("enter")

            def replied():
                """a reply to end"""
                return not gen.generating and gen.chat.last_reply is not None and gen.chat.turns[-2].text == words
            await wait_for(pilot, replied, 60)
        await pilot.press("escape")  # the focus off the prompt, as a reader would leave it
        app.clear_notifications()
        await pilot.pause(0.5)
        app.save_screenshot("generate.svg", str(out))
    print(f"wrote {out / 'generate.svg'}")


async def shoot_train(corpus: Path, out: Path, size: tuple[int, int], eval_every: int, evals: int) -> None:
    from textual.widgets import Input

    from minigpt_tui.tui.app import MiniGPTApp
    from minigpt_tui.tui.settings import AppSettings

    app = MiniGPTApp(settings=AppSettings(recipe=RECIPE), save=False)
    async with app.run_test(size=size) as pilot:
        train = app.train
        app.query_one("#f-data-path", Input).value = str(corpus)
        app.query_one("#f-train-eval-interval", Input).value = str(eval_every)
        await pilot.pause(0.5)
        if train.config is None:
            raise SystemExit(f"The Train tab's form has an error: {train.errors}")
        await pilot.press("escape", "s")

        def enough():
            """the loss plot to hold the validation points asked for"""
            return len(train.plot.val) >= evals
        await wait_for(pilot, enough, 60 + 2.0 * eval_every * evals)
        await pilot.pause(1.0)  # a few more training steps on the plot, the status line redrawn
        app.save_screenshot("train.svg", str(out))
        await pilot.press("x")

        def stopped():
            """the run to stop"""
            return not train.training
        await wait_for(pilot, stopped, 60)
    print(f"wrote {out / 'train.svg'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="tiny Shakespeare's input.txt")
    parser.add_argument("--steps", type=int, default=1500, help="steps of the run the Generate tab chats with")
    parser.add_argument("--eval-every", type=int, default=50, help="the Train tab run's evaluation interval")
    parser.add_argument("--train-evals", type=int, default=8, help="validation points on the plot when shot")
    parser.add_argument("--size", default="120x36", help="the terminal, COLUMNSxROWS (default 120x36)")
    parser.add_argument("--turn", action="append", help="a line you say (repeatable; default: three)")
    parser.add_argument("--out", type=Path, default=HERE / "images")
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"No text file at {args.data}: pass --data with tiny Shakespeare's input.txt.")
    columns, rows = (int(n) for n in args.size.lower().split("x"))
    args.out.mkdir(parents=True, exist_ok=True)
    corpus = args.data.resolve()
    with tempfile.TemporaryDirectory() as home:
        os.environ["MINIGPT_TUI_HOME"] = home  # before minigpt_tui reads it
        run = train_headless(corpus, args.steps)
        asyncio.run(shoot_generate(run, args.out.resolve(), (columns, rows), args.turn or TURNS))
        asyncio.run(shoot_train(corpus, args.out.resolve(), (columns, rows), args.eval_every, args.train_evals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
