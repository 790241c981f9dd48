"""Command line: the app, and its headless twins (train, generate, chat, list).

    minigpt-tui                          the full-screen app
    minigpt-tui --run RUN                the app, on the Generate tab with RUN loaded
    minigpt-tui --serve [--host H] [--port P] [--run RUN]   the app as a web page (serve.py; no login)
    minigpt-tui --train [RECIPE] [--set section.key=value ...] [--resume RUN] [--events jsonl]
    minigpt-tui --train [RECIPE] --from RUN [--set ...]   fine-tune: start from RUN's weights (train.py)
    minigpt-tui --import SOURCE [--name NAME] | --import list   a Hugging Face model as a run (import_model.py)
    minigpt-tui --export RUN --format hf|gguf|safetensors --out PATH   a run for other tools (export.py)
    minigpt-tui --generate RUN --prompt TEXT [sampling options]
    minigpt-tui --chat RUN [--mode cowrite|dialogue] [--json] [sampling options]   (chat.py)
    minigpt-tui --evaluate RUN [--split valid|test] [--checkpoint best|last] [--data PATH] [--json]   (evaluate.py)
    minigpt-tui --list
    minigpt-tui --corpus list | --corpus fetch NAME   the corpus catalogue (corpus.py)

The headless paths never import textual (a test checks it). Every error a user
can cause ends in one sentence on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import os
import sys

from minigpt_tui.cli.common import DEBUG_ENV, RUN_ERROR, USER_ERROR
from minigpt_tui.core import paths


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


def _minutes(text: str) -> float:
    """A finite number of minutes > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a number of minutes > 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="minigpt-tui",
        description="Train a small language model on a laptop and play with it, all from the terminal.",
        epilog="With no mode flag, opens the full-screen app. Data lives in $MINIGPT_TUI_HOME "
        "(default: the platform's user data folder).",
    )
    mode = p.add_mutually_exclusive_group()
    # (const "": no recipe named, which --from reads as "the run's own data and training fields")
    mode.add_argument("--train", nargs="?", const="", metavar="RECIPE",
                      help=f"train headless from a recipe (a path, or a name in models/; default {paths.DEFAULT_RECIPE})")
    mode.add_argument("--import", dest="import_source", metavar="SOURCE|list",
                      help="make a run from a Hugging Face model: a hub id (gpt2, HuggingFaceTB/SmolLM2-135M-Instruct) "
                           "or a local model folder; `--import list` suggests some")
    mode.add_argument("--generate", metavar="RUN", help="stream text from a trained run (name or folder)")
    mode.add_argument("--chat", metavar="RUN", help="a conversation with a trained run in the terminal (/help inside)")
    mode.add_argument("--list", action="store_true", help="list the runs in the data home")
    mode.add_argument("--corpus", nargs="+", metavar="list|fetch NAME",
                      help="the corpus catalogue: list the named corpora, or download one (e.g. fetch text8)")
    from minigpt_tui.cli.evaluate import add_arguments as add_evaluate_arguments

    add_evaluate_arguments(p, mode)
    from minigpt_tui.cli.export import add_arguments as add_export_arguments

    add_export_arguments(p, mode)
    from minigpt_tui.cli.serve import add_arguments as add_serve_arguments

    add_serve_arguments(p, mode)
    p.add_argument("--run", metavar="RUN", help="open the app on the Generate tab with this run")

    t = p.add_argument_group("training")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config field, e.g. --set train.max_steps=200 (repeatable)")
    t.add_argument("--resume", metavar="RUN", help="continue a run where it stopped (name or folder)")
    t.add_argument("--from", dest="from_run", metavar="RUN",
                   help="start a new run from RUN's weights, tokenizer and model shape (fine-tuning); data and "
                        "training fields come from the recipe (or, with none named, from RUN) and --set")
    t.add_argument("--name", help="with --import: the run's name (default: from the source)")
    t.add_argument("--events", choices=["jsonl"], help="print one JSON event per line instead of a progress bar")
    t.add_argument("--progress-every", type=_seconds, default=10.0, metavar="SECONDS",
                   help="with output not a terminal (a log file, a pipe), print a progress line this often "
                        "(default 10)")
    t.add_argument("--device", help="override train.device (auto, cpu, cuda, cuda:N, mps)")
    t.add_argument("--minutes", type=_minutes, metavar="M",
                   help="train for M minutes rather than train.max_steps: the schedule is sized to this "
                        "machine and ends on time (train.time_budget; with --resume, the run's whole budget)")

    # Generation values are read as text and checked by common.settings_from, so that a bad one
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
    g.add_argument("--allow-unk", action="store_true",
                   help="let the model write tokens its training text never held (a char model's <unk>, "
                        "a BPE's unused bytes), which are masked by default")
    g.add_argument("--json", action="store_true", help="one JSON event per token instead of plain text")
    g.add_argument("--no-kv-cache", action="store_true",
                   help="recompute the whole context for every token (slow; for comparison)")
    g.add_argument("--mode", metavar="cowrite|dialogue|instruct",
                   help="with --chat: how turns join; instruct uses the model's own chat template "
                        "(default: the run's last, instruct for a model that has one)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.serve and (args.host is not None or args.port is not None):
        parser.error("--host and --port go with --serve")
    try:
        # Each front end is imported only when asked for (the app's start stays light).
        if args.train is not None:
            from minigpt_tui.cli.train import cmd_train

            return cmd_train(args)
        if args.generate is not None:
            from minigpt_tui.cli.generate import cmd_generate

            return cmd_generate(args)
        if args.chat is not None:
            from minigpt_tui.cli.chat import cmd_chat

            return cmd_chat(args)
        if args.evaluate is not None:
            from minigpt_tui.cli.evaluate import cmd_evaluate

            return cmd_evaluate(args)
        if args.export is not None:
            from minigpt_tui.cli.export import cmd_export

            return cmd_export(args)
        if args.import_source is not None:
            from minigpt_tui.cli.import_model import cmd_import

            return cmd_import(args)
        if args.list:
            from minigpt_tui.cli.list_runs import cmd_list

            return cmd_list()
        if args.corpus is not None:
            from minigpt_tui.cli.corpus import cmd_corpus

            return cmd_corpus(args.corpus)
        if args.serve:
            from minigpt_tui.cli.serve import cmd_serve

            return cmd_serve(args)
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
