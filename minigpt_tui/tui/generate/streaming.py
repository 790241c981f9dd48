"""Streaming a reply into the Generate tab's transcript: GenerationStream, a part of GeneratePane.

A turn is added to the conversation on the UI thread (core.generation.chat.Chat.say: the template
and the tokens, no model work), drawn at once, and its reply streams from a thread worker
that iterates the chat's stream: the model reads the new text there, then yields token
events, checking for cancellation before every token. Events go into a deque that a ~30 Hz
one-shot timer drains, appending only the new text to the transcript (the StreamView never
re-renders what it has). Kept apart from the pane's keys and layout, with which it shares
state: the pane's `chat`, `info`, `output`, `gen` and the `_render_*` methods.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from textual import work

from minigpt_tui.core.data.tokenizer import WikiTextJoins, unk_token_id

log = logging.getLogger(__name__)

DRAIN_HZ = 30  # the output takes new tokens 30 times a second...
FAST_DRAIN_HZ = 15  # ...or 15 when they pour in (>= FAST_BATCH per drain: a blur to a reader either way),
FAST_BATCH = 8  # since every repaint costs the UI thread time that the generation worker then waits for
# While tokens stream, the odds panel repaints at most twice a second and the settings
# line (live tokens/s) once: every repaint costs the UI thread time, and the generation
# worker waits for the UI thread (the GIL) meanwhile. Both show the final state at the end.
PANEL_INTERVAL = 0.5
STOP_WAIT_S = 1.0


@dataclass
class Generation:
    """One reply: the worker fills `buffer` and sets `done`; the drain empties it."""

    prompt: str
    stop: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)  # the worker let go of the chat
    buffer: deque = field(default_factory=deque)
    started: bool = False  # a worker iterates the stream
    done: bool = False
    error: str = ""
    count: int = 0
    unk: int = 0  # of them <unk>
    stream: Any = None  # the chat's reply iterator (core.generation.chat)
    turn: Any = None  # the model turn it fills
    pieces: list = field(default_factory=list)  # (display text, probability) as drawn


class GenerationStream:
    """Start, drain, finish and stop a reply (mixed into GeneratePane, a textual widget)."""

    def generate(self, prompt: str) -> None:
        """Send `prompt` as the user's turn and stream the reply (Enter in the prompt)."""
        if not self._ready():
            return
        self.stop_generation()
        warning = self._check_prompt(prompt)
        if warning:
            self.app.notify(warning, severity="warning", title="Prompt")
        self.last_prompt = prompt
        gen = Generation(prompt)
        try:
            gen.stream = self.chat.say(prompt, cancel=gen.stop.is_set)
        except ValueError as err:  # ChatError, a chat template that refuses the turn: one sentence
            self.app.notify(str(err), severity="error", title="Generate")
            if not self.prompt.value:
                self.prompt.value = prompt  # (to edit and send again)
            return
        self._start(gen)

    def regenerate(self) -> None:
        """A new version of the last reply (the old one is kept: flip with the arrow keys)."""
        if not self._ready():
            return
        self.stop_generation()
        from minigpt_tui.core.generation.chat import ChatError

        gen = Generation(self.last_prompt or "")
        try:
            gen.stream = self.chat.regenerate(cancel=gen.stop.is_set)
        except ChatError as err:
            self.app.notify(str(err), severity="warning")
            return
        self._start(gen)

    def _ready(self) -> bool:
        if self.sampler is not None and self.chat is not None:
            return True
        if self.loading:
            self.app.notify(f"Run {self.loading} is still loading.", severity="warning")
        else:
            self.app.notify(self.no_run_hint(), severity="warning")
        return False

    def _check_prompt(self, prompt: str) -> str | None:
        if self._prompt_check is None:  # no run loaded (nothing to check against)
            return None
        try:
            return self._prompt_check(prompt)
        except Exception:  # a nicety: a bug in it is logged, and the generation goes ahead
            log.exception("checking a prompt of %d characters", len(prompt))
            return None

    def _start(self, gen: Generation) -> None:
        gen.turn = self.chat.last_reply
        self.stopped = False
        self._joins = WikiTextJoins()
        self.gen = gen
        self.render_transcript()  # the user's turn and the reply's template text, before any token
        self._render_alternatives(None)
        self._render_status()
        self._render_turn_bar()
        self._arm_drain(1 / DRAIN_HZ)
        if self.app.focused is self.output:
            self.refresh_bindings()  # (otherwise the focus change refreshes them: one footer rebuild, not two)
        else:
            self.output.focus()
        # The worker starts once the UI has repainted for the new state (the footer rebuild takes
        # a few tens of ms of the UI thread, which would otherwise hold back the first tokens).
        self.call_after_refresh(self._start_worker, gen)

    def _start_worker(self, gen: Generation) -> None:
        if self.gen is gen and not gen.stop.is_set():
            gen.started = True
            self._generate_worker(gen)
        elif self.gen is gen:  # stopped before it started
            gen.done = True
            gen.finished.set()

    @work(thread=True, exclusive=True, group="generate", exit_on_error=False)
    def _generate_worker(self, gen: Generation) -> None:
        buffer = gen.buffer
        # One reply at a time touches the model state: a stopped reply finishes its last token
        # (a millisecond) before the next one starts reading.
        with self._chat_lock:
            try:
                for event in gen.stream:
                    buffer.append(event)
            except Exception as err:  # surfaced as a notification by the drain; the traceback is logged
                log.exception("generating a reply to a turn of %d characters", len(gen.prompt))
                gen.error = f"Generation failed ({type(err).__name__}: {err})."
            finally:
                gen.done = True
                gen.finished.set()

    def _arm_drain(self, delay: float) -> None:
        if self._drain_timer is not None:
            self._drain_timer.stop()
        self._drain_timer = self.set_timer(delay, self._drain)

    def _drain(self) -> None:
        """Move what the worker produced into the transcript (only the new text is appended)."""
        self._drain_timer = None
        gen = self.gen
        if gen is None:
            return
        buffer = gen.buffer
        n = len(buffer)
        if n:
            events = [buffer.popleft() for _ in range(n)]
            pieces = []
            for e in events:
                text = self._display(e.text)
                if text:
                    pieces.append((text, e.prob))
            self.output.append_many(pieces)
            gen.pieces += pieces
            gen.count += n
            unk_id = self._unk_id
            if unk_id is not None:
                gen.unk += sum(e.token_id == unk_id for e in events)
            now = time.monotonic()
            if now - self._panel_drawn >= PANEL_INTERVAL:  # nobody reads odds at 30 Hz
                self._panel_drawn = now
                self._render_alternatives(events[-1])
                self._panel_draws += 1
                if self._panel_draws % 2 == 1:
                    self._render_status()
            else:
                self._last_event = events[-1]
        if gen.done and not buffer:
            self._finish(gen)
        elif self.gen is gen:
            self._arm_drain(1 / (FAST_DRAIN_HZ if n >= FAST_BATCH else DRAIN_HZ))

    @property
    def _unk_id(self) -> int | None:
        """<unk>'s id in the loaded run's vocabulary (char and word runs), else None."""
        tokenizer = getattr(self.session, "tokenizer", None)
        return unk_token_id(tokenizer) if tokenizer is not None else None

    def _display(self, piece: str) -> str:
        """What a token adds on screen: WikiText's ' @-@ ' joins read back as '-' (as core prettify does)."""
        if self.info is not None and self.info.word_level:
            return self._joins.feed(piece)
        return piece

    def _finish(self, gen: Generation, announce: bool = True) -> None:
        held = self._joins.flush()  # the output ended on a join marker: shown as written
        if held:
            self.output.append(held, None)
            gen.pieces.append((held, None))
        if self._drain_timer is not None:
            self._drain_timer.stop()
            self._drain_timer = None
        if gen.turn is not None:
            self.turn_pieces[gen.turn.id] = gen.pieces  # confidence colours survive a redraw
        self.gen = None
        if gen.turn is not None and self.sibling_label(gen.turn):
            self.render_transcript()  # the version label goes after the text (before its newlines)
        self.output.settle()
        if self._last_event is not None:
            self._render_alternatives(None, keep=True)
        self.last_count = gen.count
        self.last_unk = gen.unk
        self.stopped = gen.stop.is_set()
        if self.session is not None and gen.count:
            self.last_tps = float(getattr(self.session, "tokens_per_s", 0.0) or 0.0)
        if gen.error:
            self.app.notify(gen.error, severity="error", title="Generate")
        elif self.stopped and announce:
            self.app.notify(f"Stopped after {gen.count:,} tokens.", timeout=2)
        self.autosave()
        self._render_status()
        self._render_turn_bar()
        self.refresh_bindings()

    def stop_generation(self) -> None:
        """Stop now and detach from the worker (it sees the flag before its next token)."""
        gen = self.gen
        if gen is None:
            return
        gen.stop.set()
        if self._drain_timer is not None:
            self._drain_timer.stop()
            self._drain_timer = None
        if gen.started:
            # The worker stops before its next token; wait that long (not a long paste's reading)
            # so that the conversation is not changed under it.
            gen.finished.wait(STOP_WAIT_S)
        self._drain()  # whatever is already buffered is still shown
        if self.gen is gen:
            self._finish(gen, announce=False)
