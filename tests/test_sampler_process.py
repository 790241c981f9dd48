"""The sampler process (core.generation.sampler_process): a conversation sampled in a child process gives
exactly what the same conversation gives in this one, settings and seeds reach it between
tokens, a cancel stops it, failures are one sentence, and closing leaves no process behind."""

from __future__ import annotations

import pytest

from minigpt_tui.core.generation.chat import Chat
from minigpt_tui.core.generation.chat_session import ChatSession
from minigpt_tui.core.generation.sampler_process import SamplerProcess, SamplerProcessError
from minigpt_tui.core.generation.sampling import Sampler
from minigpt_tui.core.runs.run_dir import RunDir

from kit import tiny_recipe_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sampler-process")
    return tiny_recipe_run(folder, folder / "runs", max_steps=20)


@pytest.fixture(scope="module")
def remote(run_dir):
    """One child for the module (each start imports torch: about a second)."""
    run = RunDir(run_dir).load("last")
    process = SamplerProcess(run_dir, "last", run.tokenizer)
    yield process
    process.close()


def local_chat(run_dir, **settings) -> Chat:
    run = RunDir(run_dir).load("last")
    sampler = Sampler(run.model, run.tokenizer, use_cache=True, banned=run.unseen)  # as the child's
    for name, value in settings.items():
        setattr(sampler.settings, name, value)
    return Chat(ChatSession(sampler))


def remote_chat(remote, **settings) -> Chat:
    for name, value in {"temperature": 0.8, "max_new_tokens": 40, "top_k": 0, **settings}.items():
        setattr(remote.sampler.settings, name, value)
    remote.sampler.reseed(0)
    return Chat(remote.session)


def texts(chat: Chat, *turns: str) -> list[str]:
    return ["".join(e.text for e in chat.say(words)) for words in turns]


def test_a_conversation_in_the_child_is_the_conversation_in_this_process(run_dir, remote):
    here = local_chat(run_dir, temperature=0.8, max_new_tokens=40, top_k=0, seed=0)
    there = remote_chat(remote, seed=0)
    assert texts(there, "the cat", "and the dog") == texts(here, "the cat", "and the dog")
    assert there.session.ids == here.session.ids
    assert there.session.stats.finish_reason == here.session.stats.finish_reason == "length"
    assert there.session.tokens_per_s > 0
    # undo goes back to a mark kept in the child; the next reply continues from there
    here.undo(), there.undo()
    assert texts(there, "a bird") == texts(here, "a bird")


def test_a_setting_changed_mid_reply_acts_from_a_later_token(run_dir, remote):
    # Long enough that the change lands mid-reply: the child decodes a token of this model in tens of
    # µs, and the parent reads the 5th event only after the first batch crosses the pipe.
    chat = remote_chat(remote, temperature=1.5, max_new_tokens=4000)
    events = []
    for event in chat.say("the"):
        events.append(event)
        if len(events) == 5:
            remote.sampler.settings.temperature = 0.0  # greedy from a later token on
    ids = remote.session.ids
    # The last 60 tokens are the greedy continuation of what came before them.
    here = local_chat(run_dir, temperature=0.0, max_new_tokens=60)
    here.session.feed_ids(ids[:-60])
    assert [e.token_id for e in here.session.reply()] == ids[-60:]
    # ...and the first ones were not: at temperature 1.5 they differ from greedy ones.
    greedy = local_chat(run_dir, temperature=0.0, max_new_tokens=200)
    assert [e.token_id for e in greedy.say("the")] != [e.token_id for e in events[:200]]


def test_cancel_stops_the_reply_and_the_session_stays_usable(remote):
    chat = remote_chat(remote, max_new_tokens=5000)
    stop = {"now": False}
    count = 0
    for _ in chat.session.reply(cancel=lambda: stop["now"]):
        count += 1
        if count == 3:
            stop["now"] = True
    assert count < 5000
    assert chat.session.stats.finish_reason == "cancelled"
    assert len(texts(remote_chat(remote, max_new_tokens=10), "again")[0]) > 0


def test_closing_the_iterator_early_leaves_the_pipe_in_step(remote):
    chat = remote_chat(remote, max_new_tokens=5000)
    stream = chat.say("the")
    next(stream)
    stream.close()
    remote.session.reset()  # answered by its own "ok", not by a stray event
    assert remote.session.ids == []
    assert texts(remote_chat(remote, max_new_tokens=5), "x")[0]


def test_a_run_that_cannot_load_is_one_sentence_of_its_own_error_class(tmp_path):
    """The run's fault (here: no run at all) comes back as the core.errors class the child met, so
    the app says it as it says any user error (and does not try again in a thread)."""
    from minigpt_tui.core.data.tokenizer import CharTokenizer
    from minigpt_tui.core.errors import USER_ERRORS, RunError

    with pytest.raises(USER_ERRORS) as err:
        SamplerProcess(tmp_path / "no-such-run", "last", CharTokenizer(["<unk>", "a"]))
    assert isinstance(err.value, RunError)
    assert "no-such-run" in str(err.value) and "\n" not in str(err.value)


def test_close_ends_the_child_and_later_calls_say_so(run_dir):
    run = RunDir(run_dir).load("last")
    process = SamplerProcess(run_dir, "last", run.tokenizer)
    process.close()
    assert not process.alive()
    with pytest.raises(SamplerProcessError, match="stopped"):
        process.session.reset()


def test_marks_let_go_here_are_dropped_in_the_child(remote):
    import gc

    chat = remote_chat(remote, max_new_tokens=5)
    texts(chat, "one", "two")
    kept = len(chat.marks)
    assert kept >= 2
    chat.marks.clear()
    chat.start_mark = None
    gc.collect()
    assert len(remote.dropped) >= kept  # queued by the finalizers...
    remote.session.reset()
    assert not remote.dropped  # ...and sent with the next call


def test_the_live_rate_while_streaming_and_the_childs_after(remote):
    chat = remote_chat(remote, max_new_tokens=50)
    rates = [remote.session.tokens_per_s for _ in chat.say("the")]
    assert rates[-1] > 0
    assert remote.session.tokens_per_s == remote.session.stats.tokens_per_s > 0
