"""The errors a user can cause. Each carries one sentence meant for a person; the CLI
prints it as is and the app shows it as a notification. Anything else is a bug.
(This module stays free of torch so the app can import it at start-up.)"""

from minigpt_tui.core.checkpoint import CheckpointError
from minigpt_tui.core.config import ConfigError
from minigpt_tui.core.corpus import CorpusError
from minigpt_tui.core.runs import RunError
from minigpt_tui.core.tokenizer import TokenizerError


class BatchError(ValueError):
    """The token stream is too short for the requested sequences."""


class TrainingError(RuntimeError):
    """Training cannot go on (NaN loss, a failed checkpoint write, no such device)."""


USER_ERRORS: tuple[type[Exception], ...] = (
    ConfigError, CorpusError, TokenizerError, RunError, CheckpointError, BatchError, TrainingError,
)
