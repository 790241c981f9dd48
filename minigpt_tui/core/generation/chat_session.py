"""A conversation's model state: feed new text, stream a reply, keep and restore turn boundaries.

A ChatSession sits on a Sampler (core.generation.sampling: settings, seeded generator, token
picking) and keeps what a stateless `generate()` throws away: the model's state
after everything said so far. The RNN keeps its hidden state of every layer, the
Transformer its ring-buffer KV cache, the CNN each layer's queue of its last inputs. A new
turn feeds only the new tokens:

* an RNN reads them in one call from its state, and so does a CNN (its queues give the
  convolutions the inputs before the new tokens: exactly one pass over the whole conversation);
* a Transformer reads them a window at a time against the ring
  (transformer_decode.extend), with the same sliding-window attention as one pass
  over the whole conversation, so the logits are those of that pass (to float
  rounding) at a cost that does not grow with the conversation.

Invariant between calls: the state has read every token of `ids`, and `logits` are
the next-token logits after them. `reply()` feeds each token it picks before
picking the next (and the last one before it returns), so a reply leaves the state
ready for the next turn.

A ChatSession is a core.generation.session.Session (what core.generation.chat.Chat talks to).

`mark()` keeps the state at a turn boundary, a StateMark: a copy of the RNN state (its
tensors are never written in place, so the list is copied, not the tensors), of the KV
cache (the ring is written in place: its tensors are cloned, ~0.5 MB for the
default recipe) or of a CNN's queues (written in place too: cloned). `restore(mark)` goes back to it, for undo and for branches,
without reading the transcript again.

Reading limits, as for a prompt: the first text read into a fresh state is cropped
like one (a Transformer's or CNN's receptive field is exact; an RNN reads at most
RNN_CONTEXT_WINDOWS x context_length tokens of it); later turns are read whole. A
Transformer or CNN given more new tokens than its receptive field starts afresh from the
last receptive_field of them, which is exact too.

`record=True` keeps the logits used at every position (tests compare them with one
pass over the whole conversation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import torch

from minigpt_tui.core.generation.sampling import (
    RNN_CONTEXT_WINDOWS,
    GenerationStats,
    ReplyText,
    Sampler,
    TokenEvent,
    start_ids,
)
from minigpt_tui.core.models import LanguageModel


def copy_state(state: Any) -> Any:
    """A copy of a model state that later reads cannot change (see the module docstring)."""
    if state is None:
        return None
    # a KVCache clones its ring, a ConvState its queues; a list (RNN layers) copies shallowly
    copy = getattr(state, "copy", None)
    return copy() if callable(copy) else state


@dataclass(frozen=True)
class StateMark:
    """The session at a turn boundary (a session.Mark): the tokens read, the state after them,
    the next logits."""

    ids: tuple[int, ...]
    state: Any
    logits: torch.Tensor | None
    recorded: dict | None = None  # with record=True: the logits used up to here (tests)


class ChatSession:
    """Stateful reading and replying for one conversation (not thread-safe: one caller at a time)."""

    def __init__(self, sampler: Sampler, record: bool = False):
        self.sampler = sampler
        self.model: LanguageModel = sampler.model
        self.tokenizer = sampler.tokenizer
        self.ids: list[int] = []
        self.state: Any = None
        self.logits: torch.Tensor | None = None
        self.stats = GenerationStats()
        self.recorded: dict[int, torch.Tensor] | None = {} if record else None

    @property
    def tokens_per_s(self) -> float:
        return self.stats.tokens_per_s

    def context_start(self) -> list[int]:
        """What an empty conversation starts from (read as context, not text): a new line."""
        return start_ids(self.tokenizer)

    def reset(self) -> None:
        """Forget everything read (a new conversation)."""
        self.ids, self.state, self.logits = [], None, None
        if self.recorded is not None:
            self.recorded.clear()

    # ---- reading ------------------------------------------------------------------------------
    def feed(self, text: str) -> list[int]:
        """Read `text` (advancing the state); returns its tokens."""
        ids = self.tokenizer.encode(text)
        self.feed_ids(ids)
        return ids

    def feed_ids(self, new: Iterable[int]) -> None:
        new = list(new)
        if not new:
            return
        with self.sampler.compute():
            self._read(new)

    def _read(self, new: list[int]) -> None:
        model = self.model
        window = model.receptive_field
        fresh = self.logits is None or (window is not None and len(new) >= window)
        if fresh:  # nothing read yet (or a Transformer's whole view replaced): crop as a prompt
            limit = window if window is not None else RNN_CONTEXT_WINDOWS * model.config.context_length
            context = new[-limit:] if self.logits is None or window is not None else new
            state = model.new_state()
        else:
            context, state = new, self.state
        logits, state = model(torch.tensor([context], dtype=torch.long, device=self.sampler.device), state,
                              last=self.recorded is None)  # (the reply needs the last position's only)
        if self.recorded is not None:
            # After a crop, or a fresh start mid-conversation, only the last position has its whole
            # context (the one the reply uses; the cache itself is exact for everything after it).
            first = len(self.ids) + len(new) - len(context)
            whole = first == len(self.ids) and (not fresh or self.logits is None)
            for j in range(0 if whole else len(context) - 1, len(context)):
                self.recorded[first + j] = logits[0, j].float().cpu()
        self.state, self.logits = state, logits[0, -1]
        self.ids.extend(new)

    def _advance(self, token: int) -> None:
        """Read one token the reply picked (already in ids): the decode hot path."""
        self.logits, self.state = self.model.decode_step(token, self.state)
        self.logits = self.logits[0]
        if self.recorded is not None:
            self.recorded[len(self.ids) - 1] = self.logits.float().cpu()

    # ---- replying -----------------------------------------------------------------------------
    def reply(self, stops: Iterable[str] = (), max_new_tokens: int | None = None,
              cancel: Callable[[], bool] | None = None) -> Iterator[TokenEvent]:
        """Yield the model's next tokens until the length (default: the settings'), a stop string
        (these and the settings' own; the stop text is part of the reply) or cancel(). Settings are
        re-read at every token. Afterwards the state has read the whole reply."""
        sampler, tok = self.sampler, self.tokenizer
        if self.logits is None:  # an empty conversation starts from a new line, read as context
            self.feed_ids(start_ids(tok))
        stats = self.stats = GenerationStats(prompt_tokens=len(self.ids))
        extra = [s for s in stops if s]
        decoder = tok.stream_decoder(self.ids[-1] if self.ids else None)  # as in Sampler.generate
        length = (lambda: max_new_tokens) if max_new_tokens is not None else (lambda: sampler.settings.max_new_tokens)
        reply = ReplyText(decoder, stats, tok.end_ids)
        pending: int | None = None  # picked and yielded, not yet read
        try:
            while stats.new_tokens < length():
                if cancel is not None and cancel():
                    stats.finish_reason = "cancelled"
                    return
                started = time.perf_counter()
                with sampler.compute():
                    if pending is not None:
                        self._advance(pending)
                        pending = None
                    next_id, prob, top = sampler.pick(self.logits, self.ids)
                self.ids.append(next_id)
                pending = next_id
                event, stopped = reply.event(next_id, prob, top, time.perf_counter() - started,
                                             extra + list(sampler.settings.stop),
                                             last=stats.new_tokens + 1 >= length())
                if stopped:
                    stats.finish_reason = "stop"
                    yield event
                    return
                yield event
            stats.finish_reason = "length"
        except GeneratorExit:
            stats.finish_reason = stats.finish_reason or "closed"
            raise
        finally:
            if pending is not None:  # read the last token, so the next turn continues after it
                with sampler.compute():
                    self._advance(pending)

    # ---- turn boundaries ----------------------------------------------------------------------
    def mark(self) -> StateMark:
        recorded = dict(self.recorded) if self.recorded is not None else None
        return StateMark(tuple(self.ids), copy_state(self.state), self.logits, recorded)

    def restore(self, mark: StateMark) -> None:
        """Go back (or across, to another branch) to a mark; the mark stays usable."""
        self.ids = list(mark.ids)
        self.state = copy_state(mark.state)
        self.logits = mark.logits
        if self.recorded is not None:
            self.recorded = dict(mark.recorded or {})
