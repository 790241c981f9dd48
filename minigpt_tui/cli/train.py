"""`minigpt-tui --train [RECIPE]`: headless training, the Train tab's twin.

The config comes from a recipe (a path, or a name in models/) or from the run to --resume,
with --set overrides on top. Progress goes to the terminal as a rich progress bar (or, where
output is not a terminal, a plain line every --progress-every seconds), or with --events jsonl
as one JSON event per line (what the app reads when it trains in a child process). Ctrl-C
stops at the next step and keeps the last checkpoint (exit status 130); SIGTERM is a
requested stop (0).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import TYPE_CHECKING

from minigpt_tui.cli.common import RUN_ERROR, USER_ERROR
from minigpt_tui.core import paths

if TYPE_CHECKING:  # imported lazily at run time: the app's start must stay light
    from minigpt_tui.core.config import RunConfig
    from minigpt_tui.core.runs.run_dir import RunDir


def load_training_config(args) -> tuple[RunConfig, str, RunDir | None, RunDir | None]:
    """The resolved config, the recipe name, the run folder to resume (if any) and the run to
    start from (--from, if any)."""
    from minigpt_tui.core.config import RunConfig
    from minigpt_tui.core.errors import ConfigError
    from minigpt_tui.core.runs.run_dir import RunDir
    from minigpt_tui.core.training.start_from import start_from_config

    overrides = list(args.set)
    if args.device:
        overrides.append(f"train.device={json.dumps(args.device)}")
    if getattr(args, "minutes", None):
        overrides.append(f"train.time_budget={json.dumps(f'{args.minutes:g}m')}")
    if args.resume:
        if getattr(args, "from_run", None):
            raise ConfigError("--resume continues a run and --from starts a new one; give one of them.")
        # A run killed before its first checkpoint resumes from step 0 (the trainer checks the files).
        run = RunDir.resolve(args.resume)
        config = run.config().with_overrides(overrides)
        return config, run.read_meta().recipe or run.name, run, None
    recipe = None
    if args.train or not getattr(args, "from_run", None):
        recipe = paths.find_recipe(args.train or paths.DEFAULT_RECIPE)
        if not recipe.is_file():
            names = ", ".join(p.stem for p in paths.list_recipes())
            raise ConfigError(f"Recipe {args.train!r} not found; give a TOML file or one of: {names}.")
    if getattr(args, "from_run", None):
        source = RunDir.resolve(args.from_run)
        config = start_from_config(source, RunConfig.load(recipe) if recipe else None, overrides)
        return config, source.name, None, source
    return RunConfig.load(recipe).with_overrides(overrides), recipe.stem, None, None


def cmd_train(args) -> int:
    from minigpt_tui.core.errors import USER_ERRORS
    from minigpt_tui.core.runs import events as ev
    from minigpt_tui.core.training.trainer import Trainer

    jsonl = args.events == "jsonl"
    printer = JsonlPrinter() if jsonl else ProgressPrinter(every_s=args.progress_every)
    try:
        config, recipe_name, resume_dir, start_from = load_training_config(args)
    except USER_ERRORS as err:
        printer(ev.Error(message=str(err)))
        return USER_ERROR
    trainer = Trainer(config, printer, recipe_name=recipe_name, resume_dir=resume_dir, start_from=start_from)

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
            kind = {"bpe": "byte-level BPE", "hf": "imported"}.get(e.tokenizer, f"{e.tokenizer}-level")
            if e.started_from:
                verb += f" from {_escape(e.started_from)}"
            reach = f", receptive field {e.receptive_field:,} tokens" if e.receptive_field else ""
            say(f"[bold]{verb}[/]: {e.family}, {e.params:,} parameters{reach}, {kind} vocabulary of "
                f"{e.vocab_size} (ln V = {e.ln_vocab:.2f}), corpus {e.corpus}, on {e.device} ({e.dtype}"
                f"{'; ' + e.precision_note if e.precision_note else ''}).")
            if e.time_budget_s:
                from minigpt_tui.core.formatting import fmt_duration

                used = f", {fmt_duration(e.time_budget_used_s)} of it used before" if e.time_budget_used_s else ""
                say(f"Time budget {fmt_duration(e.time_budget_s)}{used}: the steps are sized to this machine's "
                    f"measured rate as it trains ({e.max_steps:,} is a first guess), and it ends on time "
                    "with a final evaluation.")
            if e.compile_note:
                say(f"torch.compile: {e.compile_note}.")
            say(f"Run folder: {e.run_dir}")
            self._start(e)
        elif isinstance(e, ev.Step) and self.plain:
            self.max_steps = e.max_steps or self.max_steps
            self._plain_step(e)
        elif isinstance(e, ev.Step):
            self.max_steps = e.max_steps or self.max_steps
            self.progress.update(self.task, completed=e.step + 1, total=self.max_steps, loss=f"{e.loss:.3f}",
                                 tps=f"{e.tokens_per_s:,.0f}")
        elif isinstance(e, ev.Eval):
            best = f"  (best {e.best_val_loss:.4f})" if e.best_val_loss is not None else ""
            say(f"step {e.step:>6}  train loss {e.train_loss:.4f}  val loss {e.val_loss:.4f}{best}")
        elif isinstance(e, ev.Sample):
            say(f"[dim]{_escape(e.text.strip())}[/]")
        elif isinstance(e, ev.Done):
            from minigpt_tui.core.runs.run_dir import RunDir

            self.close()
            what = "Stopped" if e.reason == "stopped" else "Finished"
            best = f", best val loss {e.best_val_loss:.4f}" if e.best_val_loss is not None else ""
            self.console.print(f"[bold]{what}[/] at step {e.step} in {e.elapsed_s:.0f} s{best}. "
                               f"Checkpoints are in {RunDir(e.run_dir).checkpoints_dir}.")
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
