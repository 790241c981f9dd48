"""Instruct mode: a conversation read through the model's own chat template, with tiny random
Llamas made by transformers (tests/pretrained_kit.py) and imported as runs. The rendering is
transformers' apply_chat_template to the character; the state carried across turns equals one
pass over the final rendering, also for templates whose next turn does not extend the last;
`--chat --mode instruct` takes /system; a run without a template refuses the mode."""

from __future__ import annotations

import io
import json
import sys
from types import SimpleNamespace

import pytest
import torch

from minigpt_tui.core.data.hf_chat_template import ChatTemplateError, render, special_tokens
from minigpt_tui.core.generation import instruct
from minigpt_tui.core.generation.chat import Chat, ChatError
from minigpt_tui.core.generation.chat_session import ChatSession
from minigpt_tui.core.generation.chat_template import ChatTemplate, RunChat
from minigpt_tui.core.generation.conversation import Turn, list_conversations, load_conversation
from minigpt_tui.core.generation.sampling import Sampler, SamplingSettings
from minigpt_tui.core.runs.run_dir import RunDir

from pretrained_kit import CHATML, ZEPHYR, gpt2_folder, import_folder, llama_folder

# ChatML that marks the last message: every turn renders the one before it differently, so no
# mark begins the next rendering and the session reads it afresh.
LAST_MARKED = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + (' (last)' if loop.last else '') + "
               "'\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}"
               "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
# ChatML that keeps two characters of earlier replies (as reasoning models drop their thinking):
# the next rendering parts from what was read inside the last reply, after the user turn's mark.
TRIMMED = ("{% for message in messages %}{% set content = message['content'] %}"
           "{% if message['role'] == 'assistant' %}{% set content = content[:2] %}{% endif %}"
           "{{ '<|im_start|>' + message['role'] + '\n' + content + '<|im_end|>\n' }}{% endfor %}"
           "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
TEMPLATES = {"chatml": CHATML, "zephyr": ZEPHYR, "marked": LAST_MARKED, "trimmed": TRIMMED}
TURNS = ["Hi there", "Tell me a {{ story }} about <b>cats</b>", "héllo ✓ again", "ok", "bye now"]
REPLIES = ["Hello! How can I help?", "Once upon a time.", "  spaced  ", "", "Bye."]


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """A data home whose runs are the tiny models imported, one per template (and the model
    folders they came from, by the same names)."""
    root = tmp_path_factory.mktemp("instruct")
    folders = {name: llama_folder(root / name, template=t, context=512) for name, t in TEMPLATES.items()}
    folders["plain"] = gpt2_folder(root / "plain")  # no chat template
    for name, folder in folders.items():
        import_folder(folder, root / "home" / "runs", name)
    return SimpleNamespace(home=root / "home", runs=root / "home" / "runs", folders=folders)


def path_of(texts: list[str]) -> list[Turn]:
    return [Turn(k + 1, "user" if k % 2 == 0 else "model", text) for k, text in enumerate(texts)]


@pytest.mark.parametrize("name", ["chatml", "zephyr"])
def test_the_rendering_is_transformers_apply_chat_template(kit, name):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(kit.folders[name])
    tok = RunDir(kit.runs / name).tokenizer()
    assert special_tokens(tok) == hf.special_tokens_map
    for system in ("", "You are terse.\nAnswer in one line."):
        for n in range(1, 6):  # 1 to 5 user turns, and the replies between them
            for texts, prompt in ((interleave(n, with_reply=False), True), (interleave(n, with_reply=True), False)):
                messages = instruct.messages(path_of(texts), system)
                text = render(tok.chat_template, messages, add_generation_prompt=prompt, special_tokens=special_tokens(tok))
                assert text == hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)
                ids = hf.apply_chat_template(messages, tokenize=True, add_generation_prompt=prompt)["input_ids"]
                assert instruct.rendered_ids(tok, text) == ids  # (these models want no BOS of their own)
    # The template's end of turn ends a reply (here it is the eos token, <|im_end|>).
    assert tok.end_ids == {hf.convert_tokens_to_ids("<|im_end|>")}


def interleave(n: int, with_reply: bool) -> list[str]:
    out = []
    for k in range(n):
        out.append(TURNS[k])
        if k < n - 1 or with_reply:
            out.append(REPLIES[k])
    return out


def test_template_errors_are_one_sentence(kit):
    with pytest.raises(ChatTemplateError) as err:
        render("{% if messages|length > 1 %}{{ raise_exception('Roles must alternate.') }}{% endif %}",
               [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    assert str(err.value) == "The model's chat template refused this conversation: Roles must alternate."
    with pytest.raises(ChatTemplateError, match=r"^The model's chat template is not valid Jinja \(line 1\): .*\.$"):
        render("{% for m in messages %}", [])
    with pytest.raises(ChatTemplateError, match="refused"):  # the sandbox holds
        render("{{ messages.__class__.__mro__ }}", [])
    # A refused turn leaves the conversation as it was.
    loaded = RunDir(kit.runs / "chatml").load()
    loaded.tokenizer.chat_template = "{{ raise_exception('No.') }}"
    chat = Chat(ChatSession(Sampler(loaded.model, loaded.tokenizer)), ChatTemplate(mode="instruct"))
    with pytest.raises(ChatTemplateError, match="No."):
        chat.say("hello")
    assert chat.conversation.turns == {}
    plain = RunDir(kit.runs / "plain").load()
    chat = Chat(ChatSession(Sampler(plain.model, plain.tokenizer)))
    chat.template.mode = "instruct"
    with pytest.raises(ChatError, match="^This run's model has no chat template, so instruct mode is not available"):
        chat.say("hello")


class Spy:
    """Counts how the session was brought to each turn: restored marks (their length), resets."""

    def __init__(self, session):
        self.restored: list[int] = []
        self.resets = 0
        restore, reset = session.restore, session.reset
        session.restore = lambda mark: (self.restored.append(len(mark.ids)), restore(mark))[1]
        session.reset = lambda: (setattr(self, "resets", self.resets + 1), reset())[1]


@pytest.mark.parametrize("name", ["chatml", "zephyr", "marked", "trimmed"])
def test_five_turns_with_carried_state_equal_one_pass_over_the_rendering(kit, name):
    from transformers import AutoTokenizer

    run = RunDir(kit.runs / name)
    loaded = run.load()
    tok, model = loaded.tokenizer, loaded.model
    session = ChatSession(Sampler(model, tok, SamplingSettings(temperature=0, max_new_tokens=6)), record=True)
    run_chat = RunChat(run.path, tok)
    assert run_chat.template.mode == "instruct"  # a model with a chat template chats in its format
    run_chat.template.system = "You are terse."
    chat = Chat(session, run_chat.template, run=name)
    spy = Spy(session)
    for words in TURNS:
        reply = "".join(e.text for e in chat.say(words))
        assert reply == chat.turns[-1].text
    path = chat.turns
    assert [t.role for t in path] == ["user", "model"] * 5
    # What the session read: the final rendering (tokenized as transformers does), then the reply.
    messages = instruct.messages(path[:-1], "You are terse.")
    hf = AutoTokenizer.from_pretrained(kit.folders[name])
    rendered = hf.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)["input_ids"]
    ids = list(session.ids)
    assert ids == rendered + path[-1].ids
    with torch.inference_mode():
        full = model(torch.tensor([ids]))[0][0]  # one pass over it all
    assert torch.allclose(session.logits, full[-1], atol=1e-4, rtol=0)
    assert sorted(session.recorded) == list(range(len(ids)))  # every position the session read or wrote
    for position, logits in session.recorded.items():
        assert torch.allclose(logits, full[position], atol=1e-4, rtol=0), position
    # How it got there: never from the start again where the rendering extends the last one (a
    # reply that re-tokenizes differently goes back to the mark after its user turn); from the
    # start each turn where the last message is marked; from the user turn's mark where earlier
    # replies are trimmed.
    assert spy.resets == 0
    if name == "marked":
        assert spy.restored == [0] * 4
    elif name == "trimmed":
        assert len(spy.restored) == 4 and all(n > 0 for n in spy.restored)
    else:
        assert all(n > 0 for n in spy.restored)
    # The turns show the template's text around the words, and regenerating reads nothing new.
    first = path[0]
    if name == "chatml":
        assert (first.prefix, first.suffix) == ("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\n",
                                                "<|im_end|>\n<|im_start|>assistant\n")
        assert path[2].prefix == "<|im_end|>\n<|im_start|>user\n"
    before = len(spy.restored)
    reads = []
    real_read = session._read
    session._read = lambda new: (reads.append(len(new)), real_read(new))[1]
    again = "".join(e.text for e in chat.regenerate())
    assert again == path[-1].text and chat.siblings() == (2, 2)  # greedy: the same reply
    assert reads == [] and spy.restored[before:] and spy.restored[-1] == len(rendered)


def chat_cli(kit, monkeypatch, capsys, lines: list[str], *args: str) -> tuple[int, str, str]:
    """`minigpt-tui --chat ...` in this process, its stdin scripted."""
    from minigpt_tui.cli import main

    monkeypatch.setenv("MINIGPT_TUI_HOME", str(kit.home))
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(line + "\n" for line in lines)))
    code = main(["--chat", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_chat_cli_in_instruct_mode_takes_a_system_prompt(kit, monkeypatch, capsys):
    run = kit.runs / "chatml"
    lines = ["/system", "/system You're terse; \"really\".", "/system", "Hi there", "How are you?", "/show", "/save",
             "/mode instruct", "/system -", "/system"]
    code, out, err = chat_cli(kit, monkeypatch, capsys, lines, "chatml", "--mode", "instruct",
                              "--temperature", "0", "--max-new-tokens", "5")
    assert code == 0 and "Traceback" not in err
    said = err.splitlines()
    assert said[:3] == ["No system prompt; /system TEXT sets one.", 'System prompt: "You\'re terse; "really"."',
                        'System prompt: "You\'re terse; "really"."']
    assert said[-2:] == ["No system prompt; /system TEXT sets one."] * 2
    assert said[3].startswith("you: '<|im_start|>system\\nYou\\'re terse; \"really\".<|im_end|>\\n<|im_start|>user")
    assert len(out.splitlines()) == 2  # one reply a line
    conv = load_conversation(list_conversations(run)[0].path)
    assert conv.mode == "instruct" and [t.text for t in conv.path()[::2]] == ["Hi there", "How are you?"]
    assert conv.path()[0].prefix == "<|im_start|>system\nYou're terse; \"really\".<|im_end|>\n<|im_start|>user\n"
    saved = json.loads((run / "chat.json").read_text())
    assert saved["mode"] == "instruct" and saved["system"] == ""  # remembered for the run (removed last)
    # A run without a chat template refuses the mode in one sentence, on the command line and in /mode.
    code, out, err = chat_cli(kit, monkeypatch, capsys, [], "plain", "--mode", "instruct")
    assert code == 2 and err == ("minigpt-tui: This run's model has no chat template, so instruct mode is not "
                                 "available; use cowrite or dialogue.\n")
    code, out, err = chat_cli(kit, monkeypatch, capsys, ["/mode instruct"], "plain")
    assert code == 0 and err.strip() == ("This run's model has no chat template, so instruct mode is not available; "
                                         "use cowrite or dialogue.")
