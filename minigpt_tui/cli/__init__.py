"""The command line: the app's entry point and its headless front ends.

    dispatch.py    the argparse parser and the dispatch: main(argv) -> exit status
    common.py      the exit codes, DEBUG_ENV, and the one reading of the sampling options
                   (--generate, --chat and the chat REPL's /temperature, /top-k, ... all use it)
    train.py       --train: the config from a recipe or a run to resume, the progress printers
    generate.py    --generate: a continuation streamed token by token, or as JSON lines
    chat.py        --chat: the conversation REPL
    evaluate.py    --evaluate: a full pass over a split
    corpus.py      --corpus list|fetch: the corpus catalogue
    list_runs.py   --list: the runs in the data home
    serve.py       --serve: the app as a web page (textual-serve), 127.0.0.1 unless --host

The rule: a front-end module imports `common` (and the core), never `dispatch` or another
front end. `dispatch` imports the front ends lazily, inside the dispatch, so `minigpt-tui`
starting the app stays light, and the headless paths never import textual (tests check both).
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """`minigpt-tui` (the console script `minigpt_tui.cli:main`, and `python -m minigpt_tui`)."""
    from minigpt_tui.cli.dispatch import main as dispatch

    return dispatch(argv)
