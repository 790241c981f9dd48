"""Conversations that keep the sampler's state: exactness against one pass over the whole
conversation, branches and undo without re-reading, templates, files and exports."""

from __future__ import annotations

import json

import pytest
import torch

from minigpt_tui.core.config import ModelConfig
from minigpt_tui.core.data.bpe_tokenizer import BPETokenizer
from minigpt_tui.core.data.tokenizer import CharTokenizer, WordTokenizer
from minigpt_tui.core.generation.chat import Chat, ChatError
from minigpt_tui.core.generation.chat_session import ChatSession
from minigpt_tui.core.generation.chat_template import (
    ChatTemplate,
    RunChat,
    TemplateError,
    default_template,
    find_speakers,
    missing,
    spellable,
)
from minigpt_tui.core.generation.conversation import (
    Conversation,
    ConversationError,
    export_conversation,
    list_conversations,
    load_conversation,
    save_conversation,
)
from minigpt_tui.core.generation.sampling import Sampler, SamplingSettings
from minigpt_tui.core.models import build_model

from kit import TINY_TEXT

PLAY = "".join(f"{who}:\nThe cat sat on the mat, said {who.lower()}.\n\n" for who in ["ROMEO", "JULIET", "NURSE"] * 5)
CHAR = CharTokenizer.train(TINY_TEXT + PLAY)
# Byte-level BPE: a turn's tokens end where its text ends (each turn is encoded on its own).
BPE = BPETokenizer.train(TINY_TEXT + PLAY, 300)


def tiny_model(family: str, seed: int = 0, tokenizer=CHAR, **model):
    torch.manual_seed(seed)
    fields = {"family": family, "n_layer": 2, "n_head": 2, "n_embd": 16, "context_length": 8, **model}
    m = build_model(ModelConfig(**fields), tokenizer.vocab_size)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.4)  # peaked distributions: a wrong position or a stale state shows at once
    return m.eval()


def chat_for(family: str, record: bool = True, mode: str = "cowrite", tokenizer=CHAR, **settings) -> Chat:
    s = SamplingSettings(**{"temperature": 1.0, "max_new_tokens": 12, "seed": 3, **settings})
    session = ChatSession(Sampler(tiny_model(family, tokenizer=tokenizer), tokenizer, s), record=record)
    template = default_template(["ROMEO", "JULIET"], "block")
    template.mode = mode
    return Chat(session, template, run="tiny")


def run(stream) -> str:
    return "".join(e.text for e in stream)


def assert_exact(chat: Chat, first_turn: int = 0) -> None:
    """Every logit the session used equals one pass of the model over the whole conversation
    (replies from `first_turn` on were made by this session: their logits must all be there)."""
    session = chat.session
    ids = list(session.ids)
    assert ids == [i for t in chat.turns for i in t.ids]
    model, tok = session.model, session.tokenizer
    with torch.inference_mode():
        full = model(torch.tensor([ids]))[0][0]  # one pass; a Transformer past its window uses the banded mask
        naive = Sampler(model, tok, use_cache=False)  # the exact recompute path of --no-kv-cache
        assert session.recorded, "nothing was recorded"
        for position, logits in session.recorded.items():
            assert position < len(ids)
            assert torch.allclose(logits, full[position], atol=1e-4, rtol=0), position
            if model.receptive_field is not None:
                assert torch.allclose(logits, naive._recompute(ids[: position + 1]), atol=1e-4, rtol=0), position
        # every logit a reply sampled from was recorded, and so checked
        used, position = set(), 0
        for k, turn in enumerate(chat.turns):
            start = position + (len(tok.encode(turn.prefix)) if turn.role == "model" else len(turn.ids))
            position += len(turn.ids)
            if k >= first_turn:
                used |= set(range(start - 1, position - 1))
        assert used and used <= set(session.recorded)


@pytest.mark.parametrize("family, mode, tokenizer", [
    *[(family, mode, CHAR) for family in ("gru", "lstm", "transformer", "cnn") for mode in ("cowrite", "dialogue")],
    ("transformer", "dialogue", BPE), ("gru", "cowrite", BPE),  # (the model side is the same as for CHAR)
], ids=lambda v: getattr(v, "kind", v))
def test_turn_by_turn_logits_equal_one_pass_over_the_conversation(family, mode, tokenizer):
    chat = chat_for(family, mode=mode, tokenizer=tokenizer)
    for words in ["the cat", " sat on the mat. the dog sat on the log.\n", "a cat", "and a dog sat on a mat"]:
        run(chat.say(words))
    assert len(chat.session.ids) > 4 * 15  # far past the Transformer's window (8) and receptive field (15)
    assert_exact(chat)
    # Branches and undo keep it exact: regenerate, flip back, undo, say more.
    run(chat.regenerate())
    assert chat.siblings() == (2, 2)
    chat.flip(-1)
    chat.sync()
    assert_exact(chat)
    chat.undo()
    run(chat.say("the log"))
    assert_exact(chat)
    assert tokenizer.decode(chat.session.ids) == chat.conversation.text()  # the document is what the model read


@pytest.mark.parametrize("family", ["gru", "transformer", "cnn"])
def test_a_long_paste_mid_conversation_stays_exact(family):
    chat = chat_for(family)
    run(chat.say("the cat"))
    run(chat.say(TINY_TEXT[:200]))  # more than the receptive field: read a window at a time / afresh
    run(chat.say("a dog"))
    assert_exact(chat)


class Spy:
    """Counts the tokens a session reads in one go (a re-read transcript would show as a big read)."""

    def __init__(self, session: ChatSession):
        self.reads: list[int] = []
        real = session._read
        session._read = lambda new: (self.reads.append(len(new)), real(new))[1]


def test_undo_regenerate_and_flip_never_reread_the_transcript():
    chat = chat_for("transformer", mode="dialogue")
    for words in ["the cat sat", "on the mat", "and the dog"]:
        run(chat.say(words))
    spy = Spy(chat.session)
    before = list(chat.session.ids)
    run(chat.regenerate())
    assert spy.reads == [len(CHAR.encode("JULIET:\n"))]  # only the model's speaker tag is read again
    assert chat.siblings() == (2, 2)
    chat.flip(1)
    chat.sync()
    assert chat.session.ids == before and chat.siblings() == (1, 2)
    removed = chat.undo()
    chat.sync()
    assert removed.text == "and the dog" and spy.reads == [8]
    assert chat.session.ids == [i for t in chat.turns for i in t.ids]
    assert_exact(chat)


def test_replies_stop_at_the_template_stops_and_undo_on_empty_is_a_sentence():
    chat = chat_for("gru", mode="dialogue", max_new_tokens=200, temperature=1.5)
    run(chat.say("the cat"))
    reply = chat.last_reply
    assert reply.finish in ("stop", "length")
    if reply.finish == "stop":
        assert reply.text.endswith("\n\n") or reply.text.endswith("\nROMEO:")
    assert chat.turns[0].prefix == "ROMEO:\n" and chat.turns[0].suffix == "\n\n" and reply.prefix == "JULIET:\n"
    chat.undo()
    with pytest.raises(ChatError, match="Nothing to undo"):
        chat.undo()
    with pytest.raises(ChatError, match="no reply"):
        chat.regenerate()


def test_templates_join_turns_in_the_corpus_format():
    t = default_template(["ROMEO", "JULIET"], "block")
    t.mode = "dialogue"
    assert t.user_turn("", "Hello") == ("ROMEO:\n", "\n\n")
    assert t.model_prefix("ROMEO:\nHello\n\n") == "JULIET:\n"
    assert t.user_turn("JULIET:\nHi.\n\n", "Bye")[0] == "ROMEO:\n"  # the reply ended on a blank line
    assert t.user_turn("JULIET:\nHi.", "Bye")[0] == "\n\nROMEO:\n"  # it ran out of length
    assert t.user_turn("JULIET:\nHi.\nROMEO:", "Bye")[0] == "\n"  # it stopped at the user's tag
    assert t.reply_stops() == ["\n\n", "\nROMEO:"]
    inline = default_template([], "")
    inline.mode = "dialogue"
    assert inline.user_turn("", "hi") == ("You: ", "\n") and inline.model_prefix("You: hi\n") == "Model: "
    cowrite = ChatTemplate()
    assert cowrite.user_turn("a", "b") == ("", "") and cowrite.user_turn("a", "b", word_level=True) == (" ", "")
    assert cowrite.reply_stops() == [] and cowrite.describe().startswith("co-write")
    assert missing("abc\n", "\n\nX") == "\nX"
    t.set("stops", ["\\n\\n"])
    assert t.stops == ["\n\n"]
    for name, value, words in [("mode", "chat", "mode must be"), ("user", "A:B", "speaker name"),
                               ("colour", "x", "no field")]:
        with pytest.raises(TemplateError, match=words):
            t.set(name, value)


def test_speakers_are_found_in_the_corpus_and_must_be_spellable(tmp_path):
    names, style = find_speakers(PLAY)
    assert names[:3] == ["JULIET", "NURSE", "ROMEO"] or set(names) == {"ROMEO", "JULIET", "NURSE"}
    assert style == "block"
    assert find_speakers("ROMEO: hi\nJULIET: ho\n" * 3)[1] == "inline"
    assert find_speakers("Genesis 1:1 In the beginning\n" * 10) == ([], "")
    assert spellable(["ROMEO", "ZÖE"], CHAR) == ["ROMEO"]
    word = WordTokenizer.train(PLAY)
    assert spellable(["ROMEO", "BOB"], word) == ["ROMEO"]
    # A run's template: found speakers by default, remembered once changed.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    corpus = tmp_path / "play.txt"
    corpus.write_text(PLAY)
    (run_dir / "config.toml").write_text(f'[data]\npath = "{corpus}"\n')
    rc = RunChat(run_dir, CHAR)
    assert set(rc.speakers) == {"ROMEO", "JULIET", "NURSE"} and rc.template.user_tag == "{user}:\n"
    rc.template.set("mode", "dialogue")
    rc.template.set("user", "NURSE")
    rc.save()
    again = RunChat(run_dir, CHAR)
    assert again.template.mode == "dialogue" and again.template.user == "NURSE"
    (run_dir / "chat.json").write_text("{ damaged")
    assert RunChat(run_dir, CHAR).template.mode == "cowrite"  # the defaults, not an error


def test_conversations_save_list_reopen_and_continue_exactly(tmp_path):
    chat = chat_for("transformer", mode="dialogue")
    run(chat.say("the cat"))
    run(chat.regenerate())
    run(chat.say("the dog"))
    path = save_conversation(chat.conversation, tmp_path)
    assert path.parent == tmp_path / "conversations" and not list(path.parent.glob(".*.tmp"))
    listed = list_conversations(tmp_path)
    assert [c.id for c in listed] == [chat.conversation.id] and listed[0].title == "the cat" and listed[0].turns == 5
    reopened = load_conversation(path)
    assert reopened.text() == chat.conversation.text() and reopened.current == chat.conversation.current
    # A new session reads the reopened path once, then goes on exactly.
    again = Chat(ChatSession(chat.session.sampler, record=True), chat.template, reopened)
    run(again.say("a mat"))
    assert_exact(again, first_turn=5)
    first = again.conversation.path()[1]
    assert again.conversation.sibling_position(first) == (2, 2)
    (tmp_path / "conversations" / "bad.json").write_text("[1, 2")
    assert len(list_conversations(tmp_path)) == 1  # a damaged file is skipped
    with pytest.raises(ConversationError, match="damaged"):
        load_conversation(tmp_path / "conversations" / "bad.json")


def test_exports_are_markdown_or_the_plain_document(tmp_path):
    conv = Conversation(run="tiny", mode="dialogue")
    conv.add("user", "Hello", prefix="ROMEO:\n", suffix="\n\n", speaker="ROMEO")
    first = conv.add("model", "Hi ```there```.\n\n", prefix="JULIET:\n", speaker="JULIET")
    conv.add("model", "Good day.\n\n", parent=first.parent, prefix="JULIET:\n", speaker="JULIET")
    assert export_conversation(conv, tmp_path / "chat.md") == "markdown"
    md = (tmp_path / "chat.md").read_text()
    assert md.startswith("# Hello") and "**ROMEO**" in md and "**JULIET** (model) — version 2 of 2" in md
    assert "Good day." in md and "there" not in md  # only the path shown is exported
    assert export_conversation(conv, tmp_path / "chat.txt") == "text"
    assert (tmp_path / "chat.txt").read_text() == "ROMEO:\nHello\n\nJULIET:\nGood day.\n\n"
    with pytest.raises(ConversationError, match="does not exist"):
        export_conversation(conv, tmp_path / "nope" / "chat.md")
    with pytest.raises(ConversationError, match="is a folder"):
        export_conversation(conv, tmp_path)
    assert json.loads(conv.to_json())["title"] == "Hello"
