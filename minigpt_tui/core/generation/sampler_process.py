"""A conversation's model in a process of its own: what the app's Generate tab samples from.

Why. In one process the UI thread and the sampling thread share the GIL: every repaint, key
and timer of the app is time the sampler waits for, and the app streamed at about 0.7-0.8 of
the headless sampler's speed however its updates were batched. Here the model, its
ChatSession (core.generation.chat_session: the state between turns) and the Sampler live in a child
process; the app keeps proxies with the same interface (`SessionProxy`, a
core.generation.session.Session, for Chat; `SamplerProxy` for the keys), and only small
messages cross a pipe.

Protocol (tuples over a multiprocessing Pipe, parent -> child):
  ("feed", ids), ("reset",), ("mark", key), ("restore", key)   answered ("ok", None)
  ("reply", stops, max_new_tokens)   answered by ("events", [TokenEvent, ...]) messages, then
                                     ("done", (GenerationStats, ids))
  ("set", name, value), ("seed", seed), ("drop", key), ("cancel",)   never answered: read at
      once between calls, and between tokens while a reply streams (settings act from the next
      token, as in one process; a cancel stops before the next token)
  ("close",)
The child's first message is ("ready", Loaded): the checkpoint it loaded and its step; or
("user_error", (class name, sentence)) for a run that cannot be loaded (raised in the parent as
that core.errors class, so the app says the sentence and does not retry in a thread). And
("error", sentence) in place of any answer when the child's call failed. A reply's events
go out as soon as the first one exists, then at most every BATCH_S, so the parent's thread
wakes ~200 times a second rather than once per token. Marks (turn boundaries: a copy of the
KV cache or RNN state) stay in the child under keys the parent hands out; a mark the parent
no longer holds is dropped there too.

The child is a new Python (`python -m minigpt_tui.core.generation.sampler_process`; never a fork: the app
runs threads) that returns when the pipe closes, so a closed or killed app leaves no sampler
behind.
"""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from minigpt_tui.core import errors
from minigpt_tui.core.data.tokenizer import Tokenizer
from minigpt_tui.core.errors import USER_ERRORS, RunError
from minigpt_tui.core.generation.sampling_settings import SamplingSettings

if TYPE_CHECKING:  # (these import torch, which the app's side of the pipe never needs)
    from minigpt_tui.core.generation.chat_session import ChatSession, StateMark
    from minigpt_tui.core.generation.sampling import TokenEvent
    from minigpt_tui.core.runs.run_dir import LoadedRun

BATCH_S = 0.005  # a reply's events are sent at most this often (the first one at once)
CHECK_S = 0.002  # while replying, the child reads settings and cancels at most this often
CANCEL_POLL_S = 0.02  # the parent checks its cancel flag this often while waiting for events
START_TIMEOUT_S = 120.0


class SamplerProcessError(RuntimeError):
    """The sampler process failed or went away; str(err) is one sentence."""


@dataclass(frozen=True)
class Loaded:
    """Which weights a sampler holds: the checkpoint file, its step, its modification time (a
    newer file means a newer checkpoint to offer) and the model's parameter count. The child
    sends it when ready, so the app never loads the weights itself."""

    checkpoint: Path
    step: int
    mtime_ns: int
    params: int

    @classmethod
    def of(cls, run: LoadedRun) -> Loaded:
        from minigpt_tui.core.models import count_parameters

        path = Path(run.checkpoint)
        return cls(path, run.step, path.stat().st_mtime_ns, count_parameters(run.model))


# ---- the child -----------------------------------------------------------------------------------
def serve(conn, run_dir: str, checkpoint: str) -> None:
    """The child's main loop: load the run, then answer the parent until the pipe closes."""
    try:
        from minigpt_tui.core.generation.chat_session import ChatSession
        from minigpt_tui.core.generation.sampling import Sampler
        from minigpt_tui.core.runs.run_dir import RunDir

        run = RunDir(Path(run_dir)).load(checkpoint=checkpoint)
        sampler = Sampler(run.model, run.tokenizer, use_cache=True, banned=run.unseen)
        session = ChatSession(sampler)
    except USER_ERRORS as err:  # the run's own fault (no checkpoint, a damaged one): the parent says so
        conn.send(("user_error", (type(err).__name__, str(err))))
        return
    except Exception as err:
        conn.send(("error", f"{err}" if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"))
        return
    conn.send(("ready", Loaded.of(run)))
    marks: dict[int, StateMark] = {}

    def control(msg) -> bool:
        """Apply a message that needs no answer; False for a call."""
        kind = msg[0]
        if kind == "set":
            setattr(sampler.settings, msg[1], msg[2])
        elif kind == "seed":
            sampler.reseed(msg[1])
        elif kind == "drop":
            marks.pop(msg[1], None)
        elif kind != "cancel":  # (a cancel that arrives after its reply ended is moot)
            return False
        return True

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if control(msg):
            continue
        kind = msg[0]
        if kind == "close":
            return
        try:
            if kind == "reply":
                _reply(conn, session, control, msg[1], msg[2])
                continue
            if kind == "feed":
                session.feed_ids(msg[1])
            elif kind == "reset":
                session.reset()
            elif kind == "mark":
                marks[msg[1]] = session.mark()
            elif kind == "restore":
                session.restore(marks[msg[1]])
            else:
                raise ValueError(f"unknown request {kind!r}")
            conn.send(("ok", None))
        except (EOFError, OSError, BrokenPipeError):
            return
        except Exception as err:  # the parent raises it where the call was made
            conn.send(("error", f"{type(err).__name__}: {err}"))


def _reply(conn, session: ChatSession, control: Callable, stops, max_new_tokens) -> None:
    cancelled = False
    looked = 0.0

    def cancel() -> bool:
        """Read what the parent sent since the last look, at most every CHECK_S (a poll is a
        system call, and a token of a small model takes about half a millisecond)."""
        nonlocal cancelled, looked
        now = time.perf_counter()
        if now - looked < CHECK_S:
            return cancelled
        looked = now
        while not cancelled and conn.poll():
            msg = conn.recv()  # EOFError (the parent went away) ends the child through serve
            if msg[0] == "cancel":
                cancelled = True
            elif not control(msg):
                raise SamplerProcessError(f"request {msg[0]!r} arrived while a reply was streaming")
        return cancelled

    batch: list = []
    sent = 0.0
    try:
        for event in session.reply(stops=stops, max_new_tokens=max_new_tokens, cancel=cancel):
            batch.append(event)
            now = time.perf_counter()
            if now - sent >= BATCH_S:
                conn.send(("events", batch))
                batch, sent = [], now
    except (EOFError, OSError):  # the parent went away: serve ends the child
        raise
    except Exception as err:
        if batch:
            conn.send(("events", batch))
        conn.send(("error", f"{type(err).__name__}: {err}"))
        return
    if batch:
        conn.send(("events", batch))
    conn.send(("done", (session.stats, list(session.ids))))


# ---- the parent ----------------------------------------------------------------------------------
class SamplerProcess:
    """The child process and its pipe; `session` and `sampler` are what the app uses."""

    def __init__(self, run_dir: Path, checkpoint: str, tokenizer: Tokenizer):
        # A plain subprocess over a socket pair, not multiprocessing's spawn: that one needs the
        # parent's stderr as a file descriptor (the app's is a Textual capture object) and
        # re-imports the parent's main module. The child's output goes nowhere: it would be
        # drawn over the app; its errors come back through the pipe.
        ours, theirs = socket.socketpair()
        self._send_lock = threading.Lock()
        self.dropped: deque[int] = deque()  # marks gone here, to drop there (see RemoteMark)
        self.closed = False
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "minigpt_tui.core.generation.sampler_process", str(theirs.fileno()),
                 str(run_dir), checkpoint],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),), close_fds=True)
        except OSError as err:
            ours.close()
            raise SamplerProcessError(f"The sampler process could not start ({err.strerror or err}).") from None
        finally:
            theirs.close()  # (the child holds its copy; ours closing lets recv see the child's exit)
        self._conn = Connection(ours.detach())
        try:
            if not self._conn.poll(START_TIMEOUT_S):
                raise SamplerProcessError(f"The sampler process did not start within {START_TIMEOUT_S:.0f} s.")
            kind, payload = self._recv()
            if kind == "user_error":  # the run cannot be loaded, here or anywhere: no point in a thread
                name, sentence = payload
                raise getattr(errors, name, RunError)(sentence)
            if kind != "ready":
                raise SamplerProcessError(f"Unexpected first message {kind!r} from the sampler process.")
            self.loaded: Loaded = payload
        except BaseException:
            self.close()
            raise
        self.sampler = SamplerProxy(self, tokenizer)
        self.session = SessionProxy(self, tokenizer, self.sampler)

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, msg) -> None:
        """Any thread may send (a key changes a setting while the worker waits for tokens)."""
        with self._send_lock:
            try:
                self._conn.send(msg)
            except (OSError, ValueError):  # closed or gone: the next receive says so
                if not self.closed:
                    raise SamplerProcessError("The sampler process has stopped; load the run again.") from None

    def _recv(self):
        try:
            kind, payload = self._conn.recv()
        except (EOFError, OSError):
            raise SamplerProcessError("The sampler process has stopped; load the run again.") from None
        if kind == "error":
            raise SamplerProcessError(payload)
        return kind, payload

    def call(self, *msg) -> Any:
        """A request and its answer (one caller at a time, as with a ChatSession)."""
        self.call_streaming(*msg)
        return self._recv()[1]

    def call_streaming(self, *msg) -> None:
        """Send a request (after the marks dropped since the last one); the caller reads the answer."""
        while self.dropped:
            self.send(("drop", self.dropped.popleft()))
        self.send(msg)

    def poll(self, timeout: float) -> bool:
        try:
            return self._conn.poll(timeout)
        except (EOFError, OSError):
            return True  # the receive that follows raises

    def close(self) -> None:
        """Stop the child (it finishes the token it is on) and wait for it, briefly."""
        if self.closed:
            return
        self.closed = True
        try:
            with self._send_lock:
                self._conn.send(("close",))
        except (OSError, ValueError):
            pass
        try:
            self.process.wait(2.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(1.0)
        self._conn.close()


class SettingsProxy:
    """The sampler's settings as the app sees them: read here, and every change is also sent
    to the child, which applies it from its next token."""

    def __init__(self, settings: SamplingSettings, send: Callable[[Any], None]):
        object.__setattr__(self, "_settings", settings)
        object.__setattr__(self, "_send", send)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._settings, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._settings, name, value)
        self._send(("set", name, value))


class SamplerProxy:
    """What the app's keys touch on a Sampler: its settings and its seed."""

    def __init__(self, owner: SamplerProcess, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.settings = SettingsProxy(SamplingSettings(), owner.send)  # the child's Sampler starts from these too
        self._owner = owner

    def reseed(self, seed: int | None = None) -> None:
        if seed is not None:
            self.settings._settings.seed = seed
        self._owner.send(("seed", seed))


class RemoteMark:
    """A turn boundary (a session.Mark) kept in the child under `key`: a handle to the
    ChatSession's StateMark there, dropped there after this goes. The finalizer only queues
    the key (the next call sends it): it runs wherever garbage is collected, which may be
    inside a send that holds the pipe's lock."""

    _keys = itertools.count(1)

    def __init__(self, owner: SamplerProcess, ids: list[int]):
        self.key = next(RemoteMark._keys)
        self.ids = tuple(ids)
        weakref.finalize(self, owner.dropped.append, self.key)


class SessionProxy:
    """A core.generation.session.Session over the pipe, the ChatSession in the child doing the
    work. `ids` mirrors the child's; not thread-safe, one caller at a time, as a ChatSession."""

    def __init__(self, owner: SamplerProcess, tokenizer: Tokenizer, sampler: SamplerProxy):
        from minigpt_tui.core.generation.sampling import GenerationStats

        self._owner = owner
        self.tokenizer = tokenizer
        self.sampler = sampler
        self.ids: list[int] = []
        self.stats = GenerationStats()
        self._live: tuple[float, int] | None = None  # while a reply streams: (its start, tokens so far)

    @property
    def tokens_per_s(self) -> float:
        """The last reply's (the child's compute time); while one streams, its rate so far here."""
        live = self._live
        if live is not None:
            elapsed = time.perf_counter() - live[0]
            return live[1] / elapsed if elapsed > 0 else 0.0
        return self.stats.tokens_per_s

    def close(self) -> None:
        self._owner.close()

    def context_start(self) -> list[int]:
        from minigpt_tui.core.generation.sampling import start_ids

        return start_ids(self.tokenizer)

    def reset(self) -> None:
        self._owner.call("reset")
        self.ids = []

    def feed_ids(self, new: Iterable[int]) -> None:
        new = list(new)
        if new:
            self._owner.call("feed", new)
            self.ids.extend(new)

    def mark(self) -> RemoteMark:
        mark = RemoteMark(self._owner, self.ids)
        self._owner.call("mark", mark.key)
        return mark

    def restore(self, mark: RemoteMark) -> None:
        self._owner.call("restore", mark.key)
        self.ids = list(mark.ids)

    def reply(self, stops: Iterable[str] = (), max_new_tokens: int | None = None,
              cancel: Callable[[], bool] | None = None) -> Iterator[TokenEvent]:
        owner = self._owner
        owner.call_streaming("reply", [s for s in stops if s], max_new_tokens)
        self._live = (time.perf_counter(), 0)
        asked_to_stop = False
        finished = False  # the child's reply is over (done, or an error it reported)
        try:
            while True:
                if not asked_to_stop and cancel is not None and cancel():
                    owner.send(("cancel",))
                    asked_to_stop = True
                if not owner.poll(CANCEL_POLL_S):
                    continue
                try:
                    kind, payload = owner._recv()
                except SamplerProcessError:
                    finished = True
                    raise
                if kind == "events":
                    for event in payload:
                        self.ids.append(event.token_id)
                        self._live = (self._live[0], self._live[1] + 1)
                        yield event
                elif kind == "done":
                    self.stats, self.ids = payload
                    finished = True
                    return
        finally:
            self._live = None
            if not finished and not owner.closed:
                # The caller stopped iterating (or a receive failed): stop the child's reply and
                # read up to its end, so that the next call's answer is not one of its events.
                try:
                    owner.send(("cancel",))
                    while True:
                        kind, payload = owner._recv()
                        if kind == "done":
                            self.stats, self.ids = payload
                            break
                        self.ids.extend(e.token_id for e in payload)
                except SamplerProcessError:
                    pass


def main(argv: list[str]) -> int:
    """The child's entry point: FD RUN_DIR CHECKPOINT (the socket it inherited)."""
    fd, run_dir, checkpoint = argv
    serve(Connection(int(fd)), run_dir, checkpoint)
    return 0


if __name__ == "__main__":
    # Run as the module's importable self, not as __main__: what the child pickles (Loaded) must
    # name a module the parent can import.
    from minigpt_tui.core.generation.sampler_process import main as module_main

    sys.exit(module_main(sys.argv[1:]))
