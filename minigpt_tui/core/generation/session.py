"""Session, what a Chat (core.generation.chat) talks to: a model that has read a conversation
and replies to it. Two implement it: ChatSession (chat_session.py: the model state in this
process) and SessionProxy (sampler_process.py: the same, kept in a child process).

Also the two small protocols a session is made of: the Mark it keeps at a turn boundary and
the SamplerControls its settings and seed are reached through. Torch-free (torch only for
annotations), so the app and the chat can name these types at no cost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Protocol, runtime_checkable

from minigpt_tui.core.data.tokenizer import Tokenizer
from minigpt_tui.core.generation.sampling_settings import SamplingSettings

if TYPE_CHECKING:
    from minigpt_tui.core.generation.sampling import GenerationStats, TokenEvent


@runtime_checkable
class Mark(Protocol):
    """A session at a turn boundary, to go back to with Session.restore: only the session
    that made it can use it (a copy of its model state, or a handle to one it keeps)."""

    ids: tuple[int, ...]  # the tokens the session had read


@runtime_checkable
class SamplerControls(Protocol):
    """What a session's sampler offers its users (the app's keys, the REPL's commands): the
    settings it re-reads at every token, and restarting its random stream. A Sampler
    (core.generation.sampling) or the proxy of one in the sampler process."""

    settings: SamplingSettings

    def reseed(self, seed: int | None = None) -> None:
        """Restart the random stream (from `seed`, or the settings' seed) at the next token."""


@runtime_checkable
class Session(Protocol):
    """A conversation's model state: what has been read (`ids`), reading more, replying, and
    marks at turn boundaries to go back to. One caller at a time (not thread-safe).

    Invariant between calls: the model has read exactly `ids`; a reply leaves it having read
    the reply too, ready for the next turn."""

    tokenizer: Tokenizer
    sampler: SamplerControls
    ids: list[int]
    stats: GenerationStats  # of the last (or current) reply; finish_reason says how it ended

    @property
    def tokens_per_s(self) -> float:
        """New tokens per second of the last reply (of the current one while it streams)."""

    def context_start(self) -> list[int]:
        """What an empty conversation starts from (read as context, not text)."""

    def reset(self) -> None:
        """Forget everything read (a new conversation)."""

    def feed_ids(self, new: Iterable[int]) -> None:
        """Read these tokens after `ids`."""

    def reply(self, stops: Iterable[str] = (), max_new_tokens: int | None = None,
              cancel: Callable[[], bool] | None = None) -> Iterator[TokenEvent]:
        """The model's next tokens until the length (default: the settings'), a stop string (these
        and the settings' own; the stop text is part of the reply) or cancel()."""

    def mark(self) -> Mark:
        """The session as it is now, to restore later (undo, another version of a reply)."""

    def restore(self, mark: Mark) -> None:
        """Go back (or across, to another branch) to a mark this session made; it stays usable."""
