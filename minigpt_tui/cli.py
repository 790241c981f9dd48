"""Command line: the app, and its headless twins (train, generate, list).

    minigpt-tui                          the full-screen app
    minigpt-tui --run RUN                the app, on the Generate tab with RUN loaded
    minigpt-tui --train [RECIPE] [--set section.key=value ...] [--resume RUN] [--events jsonl]
    minigpt-tui --generate RUN --prompt TEXT [sampling options]
    minigpt-tui --list

The headless paths never import textual (a test checks it). Every error a user
can cause ends in one sentence on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from minigpt_tui.core import paths

USER_ERROR = 2
RUN_ERROR = 1
DEBUG_ENV = "MINIGPT_TUI_DEBUG"  # set to 1 to see tracebacks of unexpected errors


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="minigpt-tui",
        description="Train a small language model on a laptop and play with it, all from the terminal.",
        epilog="With no mode flag, opens the full-screen app. Data lives in $MINIGPT_TUI_HOME "
        "(default: the platform's user data folder).",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--train", nargs="?", const=paths.DEFAULT_RECIPE, metavar="RECIPE",
                      help=f"train headless from a recipe (a path, or a name in models/; default {paths.DEFAULT_RECIPE})")
    mode.add_argument("--generate", metavar="RUN", help="stream text from a trained run (name or folder)")
    mode.add_argument("--list", action="store_true", help="list the runs in the data home")
    p.add_argument("--run", metavar="RUN", help="open the app on the Generate tab with this run")

    t = p.add_argument_group("training")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config field, e.g. --set train.max_steps=200 (repeatable)")
    t.add_argument("--resume", metavar="RUN", help="continue a run where it stopped (name or folder)")
    t.add_argument("--events", choices=["jsonl"], help="print one JSON event per line instead of a progress bar")
    t.add_argument("--device", help="override train.device (auto, cpu, cuda, cuda:N, mps)")

    g = p.add_argument_group("generation")
    g.add_argument("--prompt", default="", help="text to continue (default: start afresh)")
    g.add_argument("--temperature", type=float, default=0.8, help="0 means greedy (default 0.8)")
    g.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0: off)")
    g.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold (1: off)")
    g.add_argument("--min-p", type=float, default=0.0, help="drop tokens below min-p x the top probability (0: off)")
    g.add_argument("--repetition-penalty", type=float, default=1.0, help="penalise recent tokens (1: off)")
    g.add_argument("--repetition-window", type=int, default=64, help="how many recent tokens the penalty sees")
    g.add_argument("--seed", type=int, default=1337)
    g.add_argument("--max-new-tokens", type=int, default=500)
    g.add_argument("--stop", action="append", default=[], help="stop after this string appears (repeatable)")
    g.add_argument("--checkpoint", choices=["best", "last"], default="best")
    g.add_argument("--json", action="store_true", help="one JSON event per token instead of plain text")
    g.add_argument("--no-kv-cache", action="store_true", help="recompute the whole context for every token")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.train is not None:
            return cmd_train(args)
        if args.generate is not None:
            return cmd_generate(args)
        if args.list:
            return cmd_list()
        from minigpt_tui.tui.app import run_app

        return run_app(run=args.run)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as err:  # the one place that turns unexpected errors into a sentence
        from minigpt_tui.core.errors import USER_ERRORS

        if isinstance(err, USER_ERRORS):
            print(f"minigpt-tui: {err}", file=sys.stderr)
            return USER_ERROR
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"minigpt-tui: unexpected error: {type(err).__name__}: {err} "
              f"(set {DEBUG_ENV}=1 to see the traceback).", file=sys.stderr)
        return RUN_ERROR


# ---- --train ---------------------------------------------------------------------------


def load_training_config(args) -> tuple["RunConfig", str, Path | None]:
    """The resolved config, the recipe name and the run folder to resume (if any)."""
    from minigpt_tui.core import checkpoint as ckpt
    from minigpt_tui.core.config import ConfigError, RunConfig

    overrides = list(args.set)
    if args.device:
        overrides.append(f"train.device={json.dumps(args.device)}")
    if args.resume:
        run_dir = ckpt.resolve_run(args.resume)
        if not ckpt.checkpoint_path(run_dir, "last").is_file():
            raise ckpt.CheckpointError(f"Run {run_dir.name} has no checkpoint to resume from; start a new run instead.")
        config = ckpt.load_run_config(run_dir).with_overrides(overrides)
        return config, ckpt.read_meta(run_dir).get("recipe", run_dir.name), run_dir
    recipe = paths.find_recipe(args.train)
    if not recipe.is_file():
        names = ", ".join(p.stem for p in paths.list_recipes())
        raise ConfigError(f"Recipe {args.train!r} not found; give a TOML file or one of: {names}.")
    return RunConfig.load(recipe).with_overrides(overrides), recipe.stem, None


def cmd_train(args) -> int:
    from minigpt_tui.core import events as ev
    from minigpt_tui.core.errors import USER_ERRORS
    from minigpt_tui.core.trainer import Trainer

    jsonl = args.events == "jsonl"
    printer = JsonlPrinter() if jsonl else ProgressPrinter()
    try:
        config, recipe_name, resume_dir = load_training_config(args)
    except USER_ERRORS as err:
        printer(ev.Error(message=str(err)))
        return USER_ERROR
    trainer = Trainer(config, printer, recipe_name=recipe_name, resume_dir=resume_dir)

    def request_stop(signum, frame):
        trainer.stop_requested = True
        # A second Ctrl-C stops at once (the last checkpoint stays as it was).
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        done = trainer.run()
    except USER_ERRORS as err:
        trainer.fail(str(err))
        printer(ev.Error(message=str(err), run_dir=str(trainer.run_dir or "")))
        return USER_ERROR if trainer.run_dir is None else RUN_ERROR
    except KeyboardInterrupt:
        printer(ev.Error(message="Interrupted; the last checkpoint written is kept.", run_dir=str(trainer.run_dir or "")))
        return 130
    finally:
        printer.close()
        if trainer.dist.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    printer(done)
    return 0


class JsonlPrinter:
    """--events jsonl: one event per line on stdout, flushed at once (the app reads it live)."""

    def __call__(self, event) -> None:
        from minigpt_tui.core.events import encode

        print(encode(event), flush=True)

    def close(self) -> None:
        pass


class ProgressPrinter:
    """A rich progress bar (step, loss, tokens/s, ETA) with evaluations and samples printed above it."""

    def __init__(self):
        from rich.console import Console

        # soft_wrap: long lines (samples, paths) are never broken by inserted newlines
        self.console = Console(highlight=False, soft_wrap=True)
        self.progress = None
        self.task = None
        self.last_loss = float("nan")

    def _start(self, e) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"),
            TextColumn("ETA"), TimeRemainingColumn(), console=self.console, transient=False,
        )
        self.task = self.progress.add_task("train", total=e.max_steps, completed=e.start_step, loss="-", tps="-")
        self.progress.start()

    def __call__(self, e) -> None:
        from minigpt_tui.core import events as ev

        say = (self.progress.console if self.progress else self.console).print
        if isinstance(e, ev.Started):
            verb = f"Resuming {e.run_name} at step {e.start_step}" if e.start_step else f"Training {e.run_name}"
            say(f"[bold]{verb}[/]: {e.family}, {e.params:,} parameters, {e.tokenizer}-level vocabulary of "
                f"{e.vocab_size} (ln V = {e.ln_vocab:.2f}), corpus {e.corpus}, on {e.device} ({e.dtype}).")
            say(f"Run folder: {e.run_dir}")
            self._start(e)
        elif isinstance(e, ev.Step):
            self.progress.update(self.task, completed=e.step + 1, loss=f"{e.loss:.3f}", tps=f"{e.tokens_per_s:,.0f}")
        elif isinstance(e, ev.Eval):
            say(f"step {e.step:>6}  train loss {e.train_loss:.4f}  val loss {e.val_loss:.4f}  (best {e.best_val_loss:.4f})")
        elif isinstance(e, ev.Sample):
            say(f"[dim]{_escape(e.text.strip())}[/]")
        elif isinstance(e, ev.Done):
            self.close()
            what = "Stopped" if e.reason == "stopped" else "Finished"
            best = f", best val loss {e.best_val_loss:.4f}" if e.best_val_loss is not None else ""
            self.console.print(f"[bold]{what}[/] at step {e.step} in {e.elapsed_s:.0f} s{best}. "
                               f"Checkpoints are in {e.run_dir}/checkpoints.")
        elif isinstance(e, ev.Error):
            self.close()
            print(f"minigpt-tui: {e.message}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


# ---- --generate --------------------------------------------------------------------------


def cmd_generate(args) -> int:
    from minigpt_tui.core import checkpoint as ckpt
    from minigpt_tui.core.sampling import Sampler, SamplingSettings, prompt_warning

    settings = SamplingSettings(
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
        repetition_penalty=args.repetition_penalty, repetition_window=args.repetition_window,
        seed=args.seed, max_new_tokens=args.max_new_tokens, stop=args.stop,
    )
    try:
        settings.validate()
    except ValueError as err:
        print(f"minigpt-tui: {err}", file=sys.stderr)
        return USER_ERROR
    run = ckpt.load_run(ckpt.resolve_run(args.generate), checkpoint=args.checkpoint)
    warning = prompt_warning(run.tokenizer, args.prompt)
    if warning:
        print(f"minigpt-tui: warning: {warning}", file=sys.stderr)
    sampler = Sampler(run.model, run.tokenizer, settings, use_cache=not args.no_kv_cache)
    out = sys.stdout
    if args.json:
        for event in sampler.generate(args.prompt):
            out.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
            out.flush()
        out.write(json.dumps({"done": True, "tokens_per_s": sampler.tokens_per_s}) + "\n")
    else:
        out.write(args.prompt)
        out.flush()
        for event in sampler.generate(args.prompt):
            out.write(event.text)
            out.flush()
        out.write("\n")
        print(f"[{sampler.tokens_per_s:,.0f} tokens/s, checkpoint {run.checkpoint.stem} at step {run.step}]",
              file=sys.stderr)
    out.flush()
    return 0


# ---- --list --------------------------------------------------------------------------------


def cmd_list() -> int:
    from minigpt_tui.core.checkpoint import list_runs

    runs = list_runs()
    if not runs:
        print(f"No runs yet in {paths.runs_dir()}; start one with minigpt-tui --train.")
        return 0
    header = ("NAME", "FAMILY", "TOKENIZER", "CORPUS", "PARAMS", "STEPS", "BEST VAL", "DATE")
    rows = []
    for r in runs:
        if r.error:
            continue
        best = f"{r.best_val_loss:.4f}" if r.best_val_loss is not None else "-"
        steps = f"{r.step}/{r.max_steps}" if r.max_steps else str(r.step)
        rows.append((r.name, r.family, r.tokenizer, r.corpus, f"{r.params:,}", steps, best, r.date))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    for r in runs:
        if r.error:
            print(f"{r.name}  unreadable: {r.error}")
    return 0
