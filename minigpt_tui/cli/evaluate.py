"""`minigpt-tui --evaluate RUN`: a full pass over a split, the number to compare with papers.

    minigpt-tui --evaluate RUN [--split valid|test] [--checkpoint best|last] [--data PATH]
                               [--stride N] [--batch N] [--device D] [--json]

Every token of the split is predicted exactly once (core/training/evaluate.py says how, per model
family). The report: mean loss in nats per token, perplexity, bits per token, bits per
character (total nats / ln 2 / characters of the split's text, whatever the tokenizer),
the counts and the time. Each evaluation is appended to the run's evaluations.jsonl (the
Checkpoints tab shows the latest per split). stdout carries the report only (--json: one
object); the progress bar and notes go to stderr.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from minigpt_tui.cli.common import USER_ERROR, checkpoint_kind


def add_arguments(parser, mode) -> None:
    """The --evaluate mode flag (in the mutually exclusive `mode` group) and its options."""
    mode.add_argument("--evaluate", metavar="RUN",
                      help="a full pass over a split: loss, perplexity, bits per token and per character")
    e = parser.add_argument_group("evaluation (with --evaluate RUN; also --checkpoint, --json, --device)")
    e.add_argument("--split", default="valid", metavar="valid|test",
                   help="which split of the run's corpus (test: folders with their own test file only; default valid)")
    e.add_argument("--data", metavar="PATH",
                   help="evaluate other text: a folder of splits or catalogue name (its --split) or a text file (evaluated whole)")
    e.add_argument("--stride", default=None, metavar="N",
                   help="Transformer: tokens between sliding windows (default context_length // 2)")
    e.add_argument("--batch", default="32", metavar="N",
                   help="windows (Transformer) or lanes (RNN, CNN) scored together (default 32; 1 for an RNN "
                        "is the plain sequential pass)")


def cmd_evaluate(args) -> int:
    from minigpt_tui.core.training.evaluate import EvaluationError

    try:
        try:
            checkpoint_kind(args.checkpoint)
        except ValueError as err:
            raise EvaluationError(str(err)) from None
        stride = _whole_number("--stride", args.stride) if args.stride is not None else None
        batch = _whole_number("--batch", args.batch)
        return _evaluate(args, stride, batch)
    except EvaluationError as err:
        print(f"minigpt-tui: {err}", file=sys.stderr)
        return USER_ERROR


def _whole_number(option: str, text: str) -> int:
    from minigpt_tui.core.training.evaluate import EvaluationError

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise EvaluationError(f"{option} must be a whole number >= 1, got {text!r}.")
    return value


def _evaluate(args, stride: int | None, batch: int) -> int:
    from minigpt_tui.core.runs.evaluations import append_evaluation
    from minigpt_tui.core.runs.run_dir import RunDir
    from minigpt_tui.core.training import evaluate as ev
    from minigpt_tui.core.training.devices import resolve_device

    run_dir = RunDir.resolve(args.evaluate)
    config = run_dir.config()
    data = args.data
    if data and Path(data).expanduser().exists():  # (else a catalogue name, or a missing path load_split names)
        data = str(Path(data).expanduser().resolve())
    device = resolve_device(args.device or "auto")
    tokenizer = run_dir.tokenizer()
    # The text is read (and its problems reported) before the weights are loaded.
    tokens, n_chars = ev.load_split(config, tokenizer, args.split, data,
                                    progress=_preparing_lines(getattr(args, "progress_every", 10.0)))
    split = args.split if data is None or ev.names_folder(data) else ev.WHOLE
    run = run_dir.load(checkpoint=args.checkpoint, device=device)
    W = config.model.context_length
    stateful = ev.carries_state(run.model)
    if not stateful:
        stride = stride or W // 2
        if stride > W:
            raise ev.EvaluationError(f"--stride must be at most the context length {W}, got {stride}.")
    progress = ProgressLine(tokens.numel() - 1, getattr(args, "progress_every", 10.0))
    started = time.perf_counter()
    try:
        nats, n = ev.full_pass_loss(run.model, tokens, context_length=W, stride=stride, batch_size=batch,
                                    device=device, progress=progress)
    finally:
        progress.close()
    seconds = time.perf_counter() - started
    scores = ev.Scores(nats, n, n_chars)
    unk_share, note = ev.unk_note(tokens, tokenizer, config.data.vocab_size)
    R = run.model.receptive_field
    if not stateful:
        method = (f"sliding windows of {W} tokens, stride {stride} (each token sees at least {W - stride} "
                  "tokens before it)")
    elif R is None:
        method = f"hidden state carried across windows of {W} tokens"
    else:
        method = (f"convolution state carried across windows of {W} tokens (exact: each token sees its "
                  f"whole receptive field of {R} tokens)")
    record = {
        "time": round(time.time(), 3), "split": split, "checkpoint": run.checkpoint.stem, "step": run.step,
        "data": data or "", "tokenizer": tokenizer.kind, "family": run.model.family,
        "nats_per_token": scores.loss, "perplexity": scores.perplexity,
        "bits_per_token": scores.bits_per_token, "bits_per_char": scores.bits_per_char,
        "tokens": n, "chars": n_chars, "unk_share": unk_share, "vocab_size": tokenizer.vocab_size,
        "vocab_cap": config.data.vocab_size, "note": note, "method": method, "stride": stride,
        "batch": batch, "seconds": round(seconds, 3), "device": str(device),
    }
    append_evaluation(run_dir.path, record)
    if args.json:
        print(json.dumps({"run": run_dir.name, **record}, ensure_ascii=False))
        return 0
    where = f"{split} split" if split != ev.WHOLE else "whole file"
    source = Path(data).name if data else (Path(config.data.path).name if config.data.path.strip() else "kjv")
    print(f"Run {run_dir.name}, checkpoint {run.checkpoint.stem} (step {run.step:,}): {where} of {source}")
    print(f"  loss        {scores.loss:.4f} nats/token")
    print(f"  perplexity  {scores.perplexity:,.2f}")
    print(f"  bits/token  {scores.bits_per_token:.4f}")
    print(f"  bits/char   {scores.bits_per_char:.4f}   (total nats / ln 2 / {n_chars:,} characters)")
    print(f"  counted     {n:,} {tokenizer.kind} tokens predicted, {n_chars:,} characters")
    print(f"  time        {seconds:.1f} s ({n / max(seconds, 1e-9):,.0f} tokens/s) on {device}")
    print(f"  method      full pass, {method}")
    if tokenizer.kind == "word":
        print("  counting    a word token is every word and every end of line, as PyTorch's "
              "word_language_model counts <eos>")
    if note:
        print(f"  note        {note}")
    return 0


def _preparing_lines(every_s: float):
    """Text not tokenized yet (other text, a split never read before) is tokenized into the cache
    first: after a quiet half second (small text is ready before anyone would read it), a line on
    stderr per job, then one every `every_s` seconds and at its end."""
    last: dict[str, float] = {}
    started = time.monotonic()

    def report(what: str, fraction: float) -> None:
        now = time.monotonic()
        if now - started < 0.5 or (what in last and now - last[what] < every_s and fraction < 1.0):
            return
        last[what] = now
        print(f"{what}… {fraction:.0%}", file=sys.stderr, flush=True)

    return report


class ProgressLine:
    """A progress bar on stderr while it is a terminal; else a plain line every `every_s` seconds
    (as --train prints progress into a log file)."""

    def __init__(self, total: int, every_s: float = 10.0):
        from rich.console import Console

        self.console = Console(file=sys.stderr, highlight=False, soft_wrap=True)
        self.total = total
        self.every_s = every_s
        self.started = time.monotonic()
        self.last_line_at = self.started
        self.progress = None
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("[bold]evaluate"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("tokens  ETA"), TimeRemainingColumn(), console=self.console,
                                     transient=True)
            self.task = self.progress.add_task("evaluate", total=total)
            self.progress.start()

    def __call__(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done)
            return
        now = time.monotonic()
        if now - self.last_line_at < self.every_s or done >= total:
            return
        self.last_line_at = now
        rate = done / max(now - self.started, 1e-9)
        from minigpt_tui.core.formatting import fmt_duration

        self.console.print(f"evaluate {done:,}/{total:,} tokens  {rate:,.0f} tok/s  "
                           f"ETA {fmt_duration((total - done) / max(rate, 1e-9))}", markup=False)
        self.console.file.flush()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
