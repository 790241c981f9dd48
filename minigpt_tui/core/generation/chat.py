"""A chat: a conversation (core.generation.conversation), the session whose model has read it
(core.generation.session.Session: a ChatSession, or its proxy in the sampler process) and the
template that says how turns are joined (core.generation.chat_template).

The one implementation of say / regenerate / undo / flip that the app and the
`--chat` REPL share. The session's state follows the path shown through the marks
kept at turn boundaries; `sync()` brings it there, and every reply starts with it (so
undo and flip cost nothing until the next reply, which a caller runs in a worker):

    say(words)    the user turn (template text around the words) is read, a mark is
                  kept after it, then the reply streams as a model turn, and a mark is
                  kept after that;
    regenerate()  back to the mark after the user turn, a new reply: a sibling of the
                  last model turn, the old one kept;
    undo()        removes the last exchange (user turn and its replies), back to the
                  mark before it;
    flip(+-1)     shows another sibling of the last model turn, restoring its mark.

Where no mark exists (a reopened conversation, a model reloaded with new weights),
the nearest marked turn on the path is restored and the rest read from there, or
the whole path read once from the start.

In instruct mode (core.generation.instruct) what is read is the template's rendering of the
path, which need not extend the last one: the tokens to read are compared with those the
session has read, and it reads from where they part, restored first to the longest mark
whose tokens begin them (or started afresh when none does).

Torch-free itself: the session (core.generation.session.Session) does the model work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator

from minigpt_tui.core.generation import instruct
from minigpt_tui.core.generation.chat_template import ChatTemplate, instruct_problem
from minigpt_tui.core.generation.conversation import Conversation, Turn
from minigpt_tui.core.generation.session import Mark, Session

if TYPE_CHECKING:  # (sampling imports torch; the chat itself never does)
    from minigpt_tui.core.generation.sampling import TokenEvent


class ChatError(ValueError):
    """An action that does not apply now (nothing to undo, ...); str(err) is one sentence."""


class Chat:
    def __init__(self, session: Session, template: ChatTemplate | None = None,
                 conversation: Conversation | None = None, run: str = ""):
        self.session = session
        self.template = template or ChatTemplate()
        self.conversation = conversation or Conversation(run=run, mode=self.template.mode)
        self.marks: dict[int, Mark] = {}  # turn id -> the session's mark after that turn
        self.start_mark = session.mark() if conversation is None else None  # the empty conversation
        self.word_level = session.tokenizer.kind == "word"

    # ---- reading the path ------------------------------------------------------------------------
    @property
    def turns(self) -> list[Turn]:
        return self.conversation.path()

    @property
    def last_reply(self) -> Turn | None:
        path = self.turns
        return path[-1] if path and path[-1].role == "model" else None

    def siblings(self) -> tuple[int, int]:
        """(index, count) of the last reply among its siblings, (0, 0) without one."""
        last = self.last_reply
        return self.conversation.sibling_position(last) if last else (0, 0)

    def sync(self, open_turn: Turn | None = None) -> None:
        """Bring the session to the end of the path shown (see the module docstring); every turn
        read is marked, except `open_turn` (a reply about to stream: only its prefix is read yet)."""
        if self.template.mode == "instruct":
            self._sync_rendered(open_turn)
            return
        path = self.turns
        wanted = [i for t in path for i in t.ids]
        if list(self.session.ids) == wanted:
            return
        start = 0
        for k in range(len(path), 0, -1):
            mark = self.marks.get(path[k - 1].id)
            # (a mark made in another mode may hold other tokens for the same turns)
            if mark is not None and path[k - 1] is not open_turn and \
                    list(mark.ids) == wanted[:sum(len(t.ids) for t in path[:k])]:
                self.session.restore(mark)
                start = k
                break
        else:
            if self.start_mark is not None:
                self.session.restore(self.start_mark)
            else:
                self.session.reset()
        for turn in path[start:]:
            self.session.feed_ids(turn.ids)
            if turn is not open_turn:
                self.marks[turn.id] = self.session.mark()

    def _sync_rendered(self, open_turn: Turn | None) -> None:
        """Instruct mode's sync: read the path's rendering (see the module docstring)."""
        path = [t for t in self.turns if t is not open_turn]
        wanted = instruct.read_ids(self.session.tokenizer, path, self.template.system)
        session = self.session
        read = list(session.ids)
        if read != wanted:
            if read != wanted[:len(read)]:  # they part before the end of what was read
                fits = [m for m in (*self.marks.values(), self.start_mark) if m is not None and
                        len(m.ids) <= len(wanted) and list(m.ids) == wanted[:len(m.ids)]]
                if fits:
                    session.restore(max(fits, key=lambda m: len(m.ids)))
                else:
                    session.reset()
            session.feed_ids(wanted[len(session.ids):])
        mark = self.marks.get(path[-1].id) if path else None
        if path and (mark is None or list(mark.ids) != wanted):
            self.marks[path[-1].id] = session.mark()

    # ---- actions ---------------------------------------------------------------------------------------
    def say(self, words: str, cancel: Callable[[], bool] | None = None) -> Iterator[TokenEvent]:
        """The user's turn, then the model's reply streaming (TokenEvents). In co-write, empty
        words add no user turn: the model goes on writing where the document ends.

        The turns are added at once (a transcript can show them); the model reads the new
        text when the stream starts, so a caller may iterate it in a worker thread."""
        conv, t = self.conversation, self.template
        conv.mode = t.mode
        encode = self.session.tokenizer.encode
        parent = conv.current
        if t.mode == "instruct":
            return self._reply(self._instruct_turn(words), cancel)
        if words or t.mode == "dialogue":
            prefix, suffix = t.user_turn(conv.text(), words, self.word_level)
            turn = conv.add("user", words, parent=parent, prefix=prefix, suffix=suffix,
                            ids=encode(prefix + words + suffix), speaker=t.user if t.mode == "dialogue" else "")
            parent = turn.id
        return self._reply(parent, cancel)

    def _instruct_turn(self, words: str) -> int:
        """Add the user's message (instruct mode); its id. The template's text around it is
        kept for display (the model reads the whole rendering, see sync)."""
        tokenizer, conv = self.session.tokenizer, self.conversation
        problem = instruct_problem(tokenizer)
        if problem:
            raise ChatError(problem)
        parent = conv.current
        turn = conv.add("user", words, parent=parent)
        try:
            turn.prefix, turn.suffix = instruct.turn_text(tokenizer, self.turns, self.template.system)
        except ValueError:  # the template refused it (one sentence): the conversation is as it was
            conv.remove(turn.id)
            conv.current = parent
            raise
        turn.ids = tokenizer.encode(turn.full)
        return turn.id

    def regenerate(self, cancel: Callable[[], bool] | None = None) -> Iterator[TokenEvent]:
        """A new reply in place of the last one, which is kept as a sibling."""
        last = self.last_reply
        if last is None:
            raise ChatError("There is no reply to regenerate yet; say something first.")
        self.conversation.current = last.parent
        return self._reply(last.parent, cancel, prefix=last.prefix)

    def undo(self) -> Turn | None:
        """Remove the last exchange (the user turn and every reply to it); returns that user
        turn (its words can go back into the prompt), or None when the chat was a lone reply."""
        path = self.turns
        if not path:
            raise ChatError("Nothing to undo; the conversation is empty.")
        last = path[-1]
        user = last if last.role == "user" else None
        if last.role == "model" and last.parent is not None and self.conversation.turns[last.parent].role == "user":
            user = self.conversation.turns[last.parent]
        doomed = user or last
        self.conversation.remove(doomed.id)
        for turn_id in [i for i in self.marks if i not in self.conversation.turns]:
            del self.marks[turn_id]
        return user

    def flip(self, delta: int) -> tuple[int, int]:
        """Show the previous (-1) or next (+1) sibling of the last reply; returns (index, count)."""
        last = self.last_reply
        if last is None:
            raise ChatError("There is no reply to flip through yet.")
        sibs = self.conversation.siblings(last)
        if len(sibs) < 2:
            raise ChatError("This reply has no other versions; regenerate (r) makes one.")
        target = sibs[(sibs.index(last) + delta) % len(sibs)]
        self.conversation.current = self.conversation.latest_leaf(target).id
        return self.siblings()

    def new(self) -> None:
        """Start an empty conversation (the caller saves the old one)."""
        self.conversation = Conversation(run=self.conversation.run, mode=self.template.mode)
        self.marks.clear()
        self.session.reset()
        self.start_mark = self.session.mark()
        # A new conversation starts from the seed: same settings, same first reply.
        self.session.sampler.reseed()

    # ---- the reply -------------------------------------------------------------------------------------
    def _reply(self, parent: int | None, cancel, prefix: str | None = None) -> Iterator[TokenEvent]:
        conv, t = self.conversation, self.template
        if prefix is None:
            prefix = t.model_prefix(conv.text())
        ids = self.session.tokenizer.encode(prefix) if prefix else []
        if parent is None and not ids:  # an empty start: a new line, read as context (not text)
            ids = list(self.session.context_start())
        turn = conv.add("model", "", parent=parent, prefix=prefix, ids=ids,
                        speaker=t.model if t.mode == "dialogue" else "")
        return self._stream(turn, cancel)

    def _stream(self, turn: Turn, cancel) -> Iterator[TokenEvent]:
        read = None  # what the session had read when the reply started (its prefix included)
        written = len(turn.ids)
        try:
            self.sync(open_turn=turn)  # the new text (and anything not read yet) is read here
            read = list(self.session.ids)
            for event in self.session.reply(stops=self.template.reply_stops(), cancel=cancel):
                turn.text += event.text
                turn.ids.append(event.token_id)
                yield event
        finally:
            turn.finish = self.session.stats.finish_reason or "cancelled"
            if read is not None and list(self.session.ids) == read + turn.ids[written:]:
                self.marks[turn.id] = self.session.mark()
            self.conversation.updated = max(self.conversation.updated, turn.created)
