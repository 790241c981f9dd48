"""What every front end of the command line shares: the exit codes, and the one reading of the
sampling options.

The sampling options (--temperature, --top-k, ...) are read as text and checked here, against
core.generation.sampling_settings.LIMITS, by `sampling_value`: --generate and --chat call it through
`settings_from(args)`, and the chat REPL's slash commands (/temperature 0.9, /top-k 40, ...) call it
for one value at a time, so a bad value is the same sentence wherever it was typed (only the
option's name differs). Light on purpose: `minigpt-tui` starting the app imports this module.
"""

from __future__ import annotations

import math

from minigpt_tui.core.generation.sampling_settings import FLOAT_SETTINGS, LIMITS, SamplingSettings, option

USER_ERROR = 2  # the user can fix it: a bad flag or value, a missing run, a damaged file
RUN_ERROR = 1  # an unexpected error, or a training run that failed after its folder was made
DEBUG_ENV = "MINIGPT_TUI_DEBUG"  # set to 1 to see tracebacks of unexpected errors


def sampling_value(setting: str, text: str, name: str | None = None) -> int | float:
    """`text` read as the sampling setting `setting` (a field of SamplingSettings, e.g. "top_k"),
    checked against its limits; ValueError with one sentence naming `name` (the option or
    command the user typed; default the setting's option, e.g. --top-k) if it is not valid.

    The floats are those in FLOAT_SETTINGS; every other setting is a whole number."""
    name = name or option(setting)
    kind = float if setting in FLOAT_SETTINGS else int
    try:
        value = kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"{name} must be {what}, got {text!r}.") from None
    limit = LIMITS.get(setting)
    if limit is not None and not limit.contains(value):  # (NaN too: no comparison holds for it)
        hint = f" ({limit.hint})" if limit.hint else ""
        raise ValueError(f"{name} must be {limit.describe()}{hint}, got {text}.")
    if kind is float and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {text}.")
    return value


def settings_from(args) -> SamplingSettings:
    """The sampling options of --generate and --chat as settings; ValueError, one sentence, if one is bad.
    (Options are checked in the order --help lists them; --stop last.)"""
    settings = SamplingSettings(
        **{setting: sampling_value(setting, getattr(args, setting)) for setting in (
            "temperature", "top_k", "top_p", "min_p", "repetition_penalty", "repetition_window", "seed",
            "max_new_tokens")},
        # A shell passes "\n" literally; most people mean a newline.
        stop=[stop.replace("\\n", "\n").replace("\\t", "\t") for stop in args.stop],
        allow_unk=bool(getattr(args, "allow_unk", False)),
    )
    settings.validate()  # (what is left to check: an empty --stop)
    return settings


def checkpoint_kind(text: str) -> str:
    """--checkpoint's value (--generate, --chat, --evaluate): best or last; ValueError, one
    sentence, otherwise."""
    from minigpt_tui.core.runs.checkpoint import CHECKPOINT_KINDS

    if text not in CHECKPOINT_KINDS:
        raise ValueError(f"--checkpoint must be best or last, got {text!r}.")
    return text
