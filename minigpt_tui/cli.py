"""Command line: the app, and its headless twins (train, generate, chat, list).

    minigpt-tui                          the full-screen app
    minigpt-tui --run RUN                the app, on the Generate tab with RUN loaded
    minigpt-tui --train [RECIPE] [--set section.key=value ...] [--resume RUN] [--events jsonl]
    minigpt-tui --generate RUN --prompt TEXT [sampling options]
    minigpt-tui --chat RUN [--mode cowrite|dialogue] [--json] [sampling options]   (chat_cli.py)
    minigpt-tui --evaluate RUN [--split valid|test] [--checkpoint best|last] [--data PATH] [--json]   (evaluate_cli.py)
    minigpt-tui --list
    minigpt-tui --corpus list | --corpus fetch NAME   the corpus catalogue (corpus_cli.py)

The headless paths never import textual (a test checks it). Every error a user
can cause ends in one sentence on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import TYPE_CHECKING

from minigpt_tui.core import paths

if TYPE_CHECKING:  # imported lazily at run time: the app's start must stay light
    from minigpt_tui.core.config import RunConfig
    from minigpt_tui.core.runs.run_dir import RunDir

USER_ERROR = 2
RUN_ERROR = 1
DEBUG_ENV = "MINIGPT_TUI_DEBUG"  # set to 1 to see tracebacks of unexpected errors


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (not the usage block), like every other error."""

    def error(self, message: str):
        self.exit(USER_ERROR, f"{self.prog}: {message[:1].upper()}{message[1:]}; see {self.prog} --help.\n")


def _seconds(text: str) -> float:
    """A finite number of seconds >= 0 (argparse prints the error as one sentence)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="minigpt-tui",
        description="Train a small language model on a laptop and play with it, all from the terminal.",
        epilog="With no mode flag, opens the full-screen app. Data lives in $MINIGPT_TUI_HOME "
        "(default: the platform's user data folder).",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--train", nargs="?", const=paths.DEFAULT_RECIPE, metavar="RECIPE",
                      help=f"train headless from a recipe (a path, or a name in models/; default {paths.DEFAULT_RECIPE})")
    mode.add_argument("--generate", metavar="RUN", help="stream text from a trained run (name or folder)")
    mode.add_argument("--chat", metavar="RUN", help="a conversation with a trained run in the terminal (/help inside)")
    mode.add_argument("--list", action="store_true", help="list the runs in the data home")
    mode.add_argument("--corpus", nargs="+", metavar="list|fetch NAME",
                      help="the corpus catalogue: list the named corpora, or download one (e.g. fetch text8)")
    from minigpt_tui.evaluate_cli import add_arguments as add_evaluate_arguments

    add_evaluate_arguments(p, mode)
    p.add_argument("--run", metavar="RUN", help="open the app on the Generate tab with this run")

    t = p.add_argument_group("training")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config field, e.g. --set train.max_steps=200 (repeatable)")
    t.add_argument("--resume", metavar="RUN", help="continue a run where it stopped (name or folder)")
    t.add_argument("--events", choices=["jsonl"], help="print one JSON event per line instead of a progress bar")
    t.add_argument("--progress-every", type=_seconds, default=10.0, metavar="SECONDS",
                   help="with output not a terminal (a log file, a pipe), print a progress line this often "
                        "(default 10)")
    t.add_argument("--device", help="override train.device (auto, cpu, cuda, cuda:N, mps)")

    # Generation values are read as text and checked by cmd_generate, so that a bad one
    # ends in one sentence saying what the option accepts.
    g = p.add_argument_group("generation (with --generate RUN)")
    g.add_argument("--prompt", default="", help="text to continue (default: start afresh)")
    g.add_argument("--temperature", default="0.8", metavar="T", help="0 means greedy (default 0.8)")
    g.add_argument("--top-k", default="0", metavar="K", help="keep the k most likely tokens (0: off)")
    g.add_argument("--top-p", default="1.0", metavar="P", help="keep the most likely tokens until their probabilities sum to p (1: off)")
    g.add_argument("--min-p", default="0.0", metavar="P", help="drop tokens below min-p x the top probability (0: off)")
    g.add_argument("--repetition-penalty", default="1.0", metavar="X", help="penalise tokens seen recently (1: off; 1.1-1.3 is mild)")
    g.add_argument("--repetition-window", default="64", metavar="N", help="how many recent tokens the penalty sees (default 64)")
    g.add_argument("--seed", default="1337", metavar="N", help="random seed: same settings and seed, same text (default 1337)")
    g.add_argument("--max-new-tokens", default="500", metavar="N", help="how many tokens to generate (default 500)")
    g.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="stop once the output contains TEXT (repeatable; \\n means a newline)")
    g.add_argument("--checkpoint", default="best", metavar="best|last", help="which checkpoint to load (default best)")
    g.add_argument("--json", action="store_true", help="one JSON event per token instead of plain text")
    g.add_argument("--no-kv-cache", action="store_true",
                   help="recompute the whole context for every token (slow; for comparison)")
    g.add_argument("--mode", metavar="cowrite|dialogue", help="with --chat: how turns join (default: the run's last)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.train is not None:
            return cmd_train(args)
        if args.generate is not None:
            return cmd_generate(args)
        if args.chat is not None:
            from minigpt_tui.chat_cli import cmd_chat

            return cmd_chat(args)
        if args.evaluate is not None:
            from minigpt_tui.evaluate_cli import cmd_evaluate

            return cmd_evaluate(args)
        if args.list:
            return cmd_list()
        if args.corpus is not None:
            from minigpt_tui.corpus_cli import cmd_corpus

            return cmd_corpus(args.corpus)
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


def load_training_config(args) -> tuple[RunConfig, str, RunDir | None]:
    """The resolved config, the recipe name and the run folder to resume (if any)."""
    from minigpt_tui.core.config import RunConfig
    from minigpt_tui.core.errors import ConfigError
    from minigpt_tui.core.runs.run_dir import RunDir

    overrides = list(args.set)
    if args.device:
        overrides.append(f"train.device={json.dumps(args.device)}")
    if args.resume:
        # A run killed before its first checkpoint resumes from step 0 (the trainer checks the files).
        run = RunDir.resolve(args.resume)
        config = run.config().with_overrides(overrides)
        return config, run.read_meta().recipe or run.name, run
    recipe = paths.find_recipe(args.train)
    if not recipe.is_file():
        names = ", ".join(p.stem for p in paths.list_recipes())
        raise ConfigError(f"Recipe {args.train!r} not found; give a TOML file or one of: {names}.")
    return RunConfig.load(recipe).with_overrides(overrides), recipe.stem, None


def cmd_train(args) -> int:
    from minigpt_tui.core.errors import USER_ERRORS
    from minigpt_tui.core.runs import events as ev
    from minigpt_tui.core.training.trainer import Trainer

    jsonl = args.events == "jsonl"
    printer = JsonlPrinter() if jsonl else ProgressPrinter(every_s=args.progress_every)
    try:
        config, recipe_name, resume_dir = load_training_config(args)
    except USER_ERRORS as err:
        printer(ev.Error(message=str(err)))
        return USER_ERROR
    trainer = Trainer(config, printer, recipe_name=recipe_name, resume_dir=resume_dir)

    interrupted = []  # Ctrl-C asked for the stop (SIGTERM, the app's Stop, is a requested end: 0)

    def request_stop(signum=None, frame=None):
        trainer.stop_requested = True
        if signum == signal.SIGINT:
            interrupted.append(True)
        # A second Ctrl-C stops at once (the last checkpoint stays as it was).
        signal.signal(signal.SIGINT, signal.default_int_handler)

    # Whoever reads the events going away (the app closed) is a stop request too: save, then exit.
    printer.on_broken_pipe = request_stop
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    finished = False
    try:
        done = trainer.run()
        finished = True
    except USER_ERRORS as err:
        trainer.fail(str(err))
        trainer.emit(ev.Error(message=str(err), run_dir=str(trainer.run_dir or "")))  # rank 0 only
        return USER_ERROR if trainer.run_dir is None else RUN_ERROR
    except KeyboardInterrupt:
        trainer.emit(ev.Error(message="Interrupted; the last checkpoint written is kept.",
                              run_dir=str(trainer.run_dir or "")))
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        printer.close()
        trainer.leave_process_group(finished)
    trainer.emit(done)
    # Ctrl-C ends with 130 (128 + SIGINT), as shells expect of an interrupted program, so
    # `minigpt-tui --train && next-step` does not go on as if the run had finished.
    return 130 if done.reason == "stopped" and interrupted else 0


class JsonlPrinter:
    """--events jsonl: one event per line on stdout, flushed at once (the app reads it live)."""

    on_broken_pipe = None  # called once if the reader goes away

    def __init__(self):
        self.broken = False

    def __call__(self, event) -> None:
        from minigpt_tui.core.runs.events import encode

        if self.broken:
            return
        try:
            print(encode(event), flush=True)
        except BrokenPipeError:
            self.broken = True
            try:  # later writes (and the flush at exit) go nowhere instead of failing
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
            except (OSError, ValueError):
                pass
            if self.on_broken_pipe is not None:
                self.on_broken_pipe()

    def close(self) -> None:
        pass


class ProgressPrinter:
    """A rich progress bar (step, loss, tokens/s, ETA) with evaluations and samples printed above it.

    Where output is not a terminal (a log file, a pipe, a batch job) a bar cannot redraw,
    so a plain progress line is printed every `every_s` seconds instead."""

    def __init__(self, every_s: float = 10.0):
        from rich.console import Console

        # soft_wrap: long lines (samples, paths) are never broken by inserted newlines
        self.console = Console(highlight=False, soft_wrap=True)
        self.plain = not self.console.is_terminal
        self.every_s = every_s
        self.last_line_at = float("-inf")
        self.max_steps = 0
        self.progress = None
        self.task = None
        self.preparing_what = ""  # the Preparing job last printed as a plain line
        self.preparing_shown = False  # a Preparing line is drawn on the terminal, without its newline

    def _plain_step(self, e) -> None:
        import time

        now = time.monotonic()
        if now - self.last_line_at < self.every_s and e.step + 1 < self.max_steps:
            return
        self.last_line_at = now
        from minigpt_tui.core.formatting import fmt_duration

        self.console.print(f"step {e.step + 1:,}/{self.max_steps:,}  loss {e.loss:.3f}  "
                           f"{e.tokens_per_s:,.0f} tok/s  ETA {fmt_duration(e.eta_s)}", markup=False)
        self.console.file.flush()

    def _start(self, e) -> None:
        self.max_steps = e.max_steps
        if self.plain:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"),
            TextColumn("ETA"), TimeRemainingColumn(), console=self.console, transient=False,
        )
        self.task = self.progress.add_task("train", total=e.max_steps, completed=e.start_step, loss="-", tps="-")
        self.progress.start()

    def __call__(self, e) -> None:
        from minigpt_tui.core.runs import events as ev

        say = (self.progress.console if self.progress else self.console).print
        if isinstance(e, ev.Preparing):
            self._preparing(e)
            return
        self._end_preparing()
        if isinstance(e, ev.Started):
            verb = f"Resuming {e.run_name} at step {e.start_step}" if e.start_step else f"Training {e.run_name}"
            kind = "byte-level BPE" if e.tokenizer == "bpe" else f"{e.tokenizer}-level"
            say(f"[bold]{verb}[/]: {e.family}, {e.params:,} parameters, {kind} vocabulary of "
                f"{e.vocab_size} (ln V = {e.ln_vocab:.2f}), corpus {e.corpus}, on {e.device} ({e.dtype}"
                f"{'; ' + e.precision_note if e.precision_note else ''}).")
            say(f"Run folder: {e.run_dir}")
            self._start(e)
        elif isinstance(e, ev.Step) and self.plain:
            self._plain_step(e)
        elif isinstance(e, ev.Step):
            self.progress.update(self.task, completed=e.step + 1, loss=f"{e.loss:.3f}", tps=f"{e.tokens_per_s:,.0f}")
        elif isinstance(e, ev.Eval):
            best = f"  (best {e.best_val_loss:.4f})" if e.best_val_loss is not None else ""
            say(f"step {e.step:>6}  train loss {e.train_loss:.4f}  val loss {e.val_loss:.4f}{best}")
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

    def _preparing(self, e) -> None:
        """A first start tokenizing its corpus: one line on stderr, redrawn in place on a
        terminal; elsewhere a line per job and then one every `every_s` seconds."""
        import time

        line = f"{e.what}… {e.fraction:.0%}"
        if sys.stderr.isatty():
            sys.stderr.write(f"\r{line}\x1b[K")
            self.preparing_shown = True
        else:
            now = time.monotonic()
            if e.what == self.preparing_what and now - self.last_line_at < self.every_s:
                return
            self.preparing_what, self.last_line_at = e.what, now
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def _end_preparing(self) -> None:
        if self.preparing_shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
        if self.preparing_what:  # the step lines' own clock starts with the training
            self.last_line_at = float("-inf")
        self.preparing_what, self.preparing_shown = "", False

    def close(self) -> None:
        self._end_preparing()
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


# ---- --generate --------------------------------------------------------------------------


def cmd_generate(args) -> int:
    """Stream a continuation of --prompt: plain text flushed token by token, or JSON lines.

    Plain output is the prompt, then the continuation, then a newline; a summary
    line goes to stderr. --json prints one object per token (index, token_id,
    text, prob, top) and a last one {"done": true, ...}. Word-level output shows
    WikiText's " @-@ " joins as "-" in plain text (JSON keeps the raw tokens).
    """
    from minigpt_tui.core.data.tokenizer import WikiTextJoins
    from minigpt_tui.core.generation.sampling import Sampler, SamplingSettings, prompt_warning
    from minigpt_tui.core.runs.checkpoint import CHECKPOINT_KINDS
    from minigpt_tui.core.runs.run_dir import RunDir

    def number(option: str, text: str, kind: type):
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise ValueError(f"{option} must be {what}, got {text!r}.") from None
        return value

    try:
        settings = SamplingSettings(
            temperature=number("--temperature", args.temperature, float),
            top_k=number("--top-k", args.top_k, int),
            top_p=number("--top-p", args.top_p, float),
            min_p=number("--min-p", args.min_p, float),
            repetition_penalty=number("--repetition-penalty", args.repetition_penalty, float),
            repetition_window=number("--repetition-window", args.repetition_window, int),
            seed=number("--seed", args.seed, int),
            max_new_tokens=number("--max-new-tokens", args.max_new_tokens, int),
            # A shell passes "\n" literally; most people mean a newline.
            stop=[stop.replace("\\n", "\n").replace("\\t", "\t") for stop in args.stop],
        )
        settings.validate()
        if args.checkpoint not in CHECKPOINT_KINDS:
            raise ValueError(f"--checkpoint must be best or last, got {args.checkpoint!r}.")
    except ValueError as err:
        print(f"minigpt-tui: {err}", file=sys.stderr)
        return USER_ERROR

    run = RunDir.resolve(args.generate).load(checkpoint=args.checkpoint)
    warning = prompt_warning(run.tokenizer, args.prompt)
    if warning:
        print(f"minigpt-tui: warning: {warning}", file=sys.stderr)
    sampler = Sampler(run.model, run.tokenizer, settings, use_cache=not args.no_kv_cache)
    out = sys.stdout
    # Word-level plain text shows WikiText's joins as the app does (the same helper).
    joins = WikiTextJoins() if run.tokenizer.kind == "word" else None
    try:
        if args.json:
            for event in sampler.generate(args.prompt):
                out.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
                out.flush()
        else:
            out.write(args.prompt)
            out.flush()
            for event in sampler.generate(args.prompt):
                out.write(joins.feed(event.text) if joins else event.text)
                out.flush()
    except KeyboardInterrupt:
        sampler.stats.finish_reason = "interrupted"
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python's exit-time
        # flush of stdout from complaining about the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    stats = sampler.stats
    if args.json:
        out.write(json.dumps({"done": True, "new_tokens": stats.new_tokens, "prompt_tokens": stats.prompt_tokens,
                              "finish_reason": stats.finish_reason, "tokens_per_s": round(stats.tokens_per_s, 1),
                              "checkpoint": run.checkpoint.stem, "step": run.step}) + "\n")
    else:
        out.write((joins.flush() if joins else "") + "\n")
        cache = "no KV cache" if args.no_kv_cache else "KV cache"
        why = {"stop": ", stopped at a stop string", "interrupted": ", interrupted"}.get(stats.finish_reason, "")
        print(f"[{stats.new_tokens} tokens at {stats.tokens_per_s:,.0f} tokens/s ({cache}){why}; "
              f"checkpoint {run.checkpoint.stem} at step {run.step}]", file=sys.stderr)
    out.flush()
    return 130 if stats.finish_reason == "interrupted" else 0


# ---- --list --------------------------------------------------------------------------------


def cmd_list() -> int:
    from minigpt_tui.core.runs.run_dir import list_runs

    runs = list_runs()
    if not runs:
        print(f"No runs yet in {paths.runs_dir()}; start one with minigpt-tui --train.")
        return 0
    header = ("NAME", "FAMILY", "TOKENIZER", "CORPUS", "PARAMS", "STEPS", "BEST VAL", "DATE", "STATUS")
    rows = []
    for r in runs:
        if r.error:
            continue
        best = f"{r.best_val_loss:.4f}" if r.best_val_loss is not None else "-"
        steps = f"{r.step}/{r.max_steps}" if r.max_steps else str(r.step)
        # "interrupted": its trainer died without saying so (killed, crashed); --resume continues it
        rows.append((r.name, r.family, r.tokenizer, r.corpus, f"{r.params:,}", steps, best, r.date, r.status or "-"))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    for r in runs:
        if r.error:
            print(f"{r.name}  unreadable: {r.error}")
    return 0
