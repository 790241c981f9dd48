"""`minigpt-tui --corpus list` and `minigpt-tui --corpus fetch NAME`: the corpus catalogue
(core/data/catalogue.py) on the command line.

fetch draws a progress bar on stderr when stderr is a terminal, and prints a plain line
every few seconds (and at each stage) when it is not (a log file, a pipe). Every failure ends
in one sentence on stderr and a non-zero exit status; Ctrl-C keeps the partial download,
which the next fetch resumes.
"""

from __future__ import annotations

import sys
import time

from minigpt_tui.cli.common import USER_ERROR
from minigpt_tui.core.data import catalogue
from minigpt_tui.core.errors import CorpusError
from minigpt_tui.core.formatting import fmt_bytes

PLAIN_EVERY_S = 5.0


def cmd_corpus(words: list[str]) -> int:
    """`words`: what followed --corpus (["list"] or ["fetch", NAME])."""
    action, rest = (words[0], words[1:]) if words else ("", [])
    if action == "list" and not rest:
        print(list_table(), end="")
        return 0
    if action == "fetch" and len(rest) == 1:
        return fetch(rest[0])
    print("minigpt-tui: --corpus takes `list` or `fetch NAME`, e.g. minigpt-tui --corpus fetch text8.",
          file=sys.stderr)
    return USER_ERROR


def list_table() -> str:
    """The catalogue as a table: name, what it is, download size, whether it is here."""
    rows = [("name", "what", "download", "here")]
    for entry in catalogue.ENTRIES.values():
        if entry.layout == "builtin":
            download, here = "-", "built in"
        else:
            download = fmt_bytes(entry.size) if entry.size is not None else "size unknown"
            local = catalogue.local_size(entry)
            here = f"yes, {fmt_bytes(local)}" if local is not None else "no"
        rows.append((entry.name, entry.description, download, here))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3] for row in rows]
    lines.append(f"Fetch one with: {catalogue.FETCH_COMMAND} NAME (into {catalogue.corpora_dir()}); "
                 "then train on it with --set data.path=NAME.")
    return "\n".join(lines) + "\n"


def fetch(name: str) -> int:
    try:
        entry = catalogue.get(name)
        if catalogue.is_present(entry):
            where = catalogue.local_path(entry) or "built in"
            print(f"{entry.name} is here already ({where}).", file=sys.stderr)
            return 0
        with _Progress(entry.name) as progress:
            path = catalogue.fetch(entry, progress)
    except CorpusError as err:
        print(f"minigpt-tui: {err}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print(f"minigpt-tui: Interrupted; run {catalogue.FETCH_COMMAND} {name.strip()} again to resume the "
              "download.", file=sys.stderr)
        return 130
    print(f"{entry.name} is ready in {path}; train on it with --set data.path={entry.name}", file=sys.stderr)
    return 0


class _Progress:
    """The fetch's progress on stderr: a rich bar on a terminal, plain lines otherwise."""

    def __init__(self, name: str):
        from rich.console import Console

        self.name = name
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.plain = not self.console.is_terminal
        self.stage = ""
        self.last_line_at = float("-inf")
        self.bar = None
        self.task = None

    def __enter__(self):
        if not self.plain:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                TransferSpeedColumn(), TimeRemainingColumn(), console=self.console)
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        label = f"{self.name}: {catalogue.STAGE_WORDS.get(stage, stage)}"
        if self.bar is not None:
            if stage != self.stage:
                self.task = self.bar.add_task(label, total=total)
            self.bar.update(self.task, completed=done, total=total)
            self.stage = stage
            return
        now = time.monotonic()
        finished = total is not None and done >= total
        if stage == self.stage and now - self.last_line_at < PLAIN_EVERY_S and not finished:
            return
        if stage == self.stage and finished and self.last_done == done:
            return
        self.stage, self.last_line_at, self.last_done = stage, now, done
        amount = f"{fmt_bytes(done)} of {fmt_bytes(total)}" if total else fmt_bytes(done)
        percent = f" ({100 * done / total:.0f}%)" if total else ""
        print(f"{label} {amount}{percent}" if done or total else label, file=sys.stderr, flush=True)

    last_done = -1
