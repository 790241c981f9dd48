"""The errors a user can cause. Each carries one sentence meant for a person; the CLI
prints it as is and the app shows it as a notification. Anything else is a bug.

They live here, below every module that raises them, so that anything may import them
and this module imports nothing of the package (nor torch: the app imports it at start-up).
Errors only one subpackage raises and handles (a chat's, a template's) stay in their module.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A user-facing configuration problem; str(err) is one sentence.

    `field` is the config key the sentence is about ("train.max_steps"; a section's name
    for a problem with a whole section), or None when no one key is to blame (a file that
    is not TOML). A form shows the sentence next to that field without parsing it."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def __reduce__(self):
        # The default pickling rebuilds from args (the message) alone and would drop `field`.
        return type(self), (str(self), self.field)


class CorpusError(ValueError):
    """A user-facing corpus problem; str(err) is one sentence, err.summary a few words
    for a one-line hint ("binary file, not text")."""

    def __init__(self, sentence: str, summary: str = "not usable"):
        super().__init__(sentence)
        self.summary = summary


class DownloadError(CorpusError):
    """A download or an archive that failed; str() is one sentence."""

    def __init__(self, sentence: str, summary: str = "download failed"):
        super().__init__(sentence, summary)


class TokenizerError(ValueError):
    """A tokenizer file that cannot be used; str(err) is one sentence."""


class RunError(ValueError):
    """A run folder that cannot be used or found; str(err) is one sentence."""


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; str(err) is one sentence."""


class ImportModelError(ValueError):
    """A model that cannot be imported (no such folder or hub id, the hub unreachable or refusing
    it, a folder of an unsupported architecture or with damaged files); str(err) is one sentence."""


class ExportError(ValueError):
    """A run that cannot be exported in the format asked for, or an --out that cannot be written;
    str(err) is one sentence."""


class BatchError(ValueError):
    """The token stream is too short for the requested sequences."""


class TrainingError(RuntimeError):
    """Training cannot go on (NaN loss, a failed checkpoint write, no such device)."""


USER_ERRORS: tuple[type[Exception], ...] = (
    ConfigError, CorpusError, TokenizerError, RunError, CheckpointError, BatchError, TrainingError,
    ImportModelError, ExportError,
)
