"""A trainer started before it is needed: what the app's Train tab keeps waiting for `s`.

    python -m minigpt_tui.cli.standby      # imports what --train needs, then reads its command line

A fresh `minigpt-tui --train` spends most of its first seconds importing, not training: about
2 s for torch on a quiet 2-core machine, before it reads a byte of the corpus. The Train tab
starts one of these processes when it opens; it does those imports while the user fills in
the form, then waits. Pressing `s` hands it the command line, and the first step's loss comes
within about 1.5 s instead of 3-4 (benchmarks/first_step.py measures both).

Protocol: one line on stdin, a JSON list of the arguments `minigpt-tui` would get (the
app's TrainerProcess sends its own, `--events jsonl` included); the process then is that
command, exit status and all. End of stdin without a line (the app quit, or never
trained): it exits 0 having done nothing, so it never outlives the app that started it.

Like dispatch, and unlike the front ends, this module calls dispatch (test_layering).
"""

from __future__ import annotations

import json
import sys


def warm_up() -> None:
    """Import what a training run imports before its first step (torch with the trainer), and load
    the C kernels its step uses (compiling them the first time on a machine: about a second)."""
    import minigpt_tui.cli.dispatch  # noqa: F401
    import minigpt_tui.cli.train  # noqa: F401
    import minigpt_tui.core.training.trainer  # noqa: F401
    from minigpt_tui.core import native

    native.enabled()


def read_command(line: str) -> list[str] | None:
    """The argument list in a standby's line; None for an empty line (nothing to run)."""
    if not line.strip():
        return None
    argv = json.loads(line)  # ValueError: not JSON
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise ValueError("not a JSON list of strings")
    return argv


def main() -> int:
    warm_up()
    try:
        argv = read_command(sys.stdin.readline())
    except ValueError as err:
        from minigpt_tui.cli.common import USER_ERROR

        print(f"minigpt-tui: the standby trainer got a command line it cannot read ({err}).", file=sys.stderr)
        return USER_ERROR
    if argv is None:
        return 0
    from minigpt_tui.cli.dispatch import main as dispatch

    return dispatch(argv)


if __name__ == "__main__":
    raise SystemExit(main())
