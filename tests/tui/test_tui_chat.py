"""The Generate tab as a conversation: turns in each mode with the model's state carried, versions
of a reply, undo, a pasted multi-line prompt, prompt history, save/reopen/export, the focus rule
and the newer-checkpoint notice. Every reply comes from the tiny trained run (conftest's
`tiny_run`) through the Sampler and ChatSession that production makes."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from textual import events

from minigpt_tui.core.generation.conversation import list_conversations
from minigpt_tui.tui.app import MiniGPTApp
from minigpt_tui.tui.generate import chat_actions
from minigpt_tui.tui.generate.chat_screens import ConversationPickerScreen
from minigpt_tui.tui.screens import PromptScreen

from tui_helpers import focus_id, wait_for, wait_loaded


async def open_generate(pilot, app):
    await pilot.press("3")
    assert await wait_for(pilot, lambda: focus_id(app) == "prompt")


async def say(pilot, app, words: str):
    gen = app.generate
    replies = sum(1 for t in gen.chat.turns if t.role == "model") if gen.chat else 0
    await pilot.press("i")
    assert await wait_for(pilot, lambda: focus_id(app) == "prompt")
    gen.prompt.value = words
    await pilot.press("enter")
    assert await wait_for(pilot, lambda: not gen.generating and gen.chat is not None and
                          sum(1 for t in gen.chat.turns if t.role == "model") == replies + 1, timeout=30)


async def load_real(pilot, app):
    return await wait_loaded(pilot, app, max_new_tokens=20)


def labelled(reply: str, label: str) -> str:
    """A reply as drawn with its version label: after the text, before the newlines it ends with."""
    kept = reply.rstrip("\n")
    return kept + label + reply[len(kept):]


def read_path(gen) -> bool:
    """Whether the model's state has read exactly the conversation shown, template text included."""
    return list(gen.session.ids) == [i for t in gen.chat.turns for i in t.ids]


@pytest.mark.parametrize("mode", ["cowrite", "dialogue"])
async def test_three_turns_carry_the_models_state(tiny_run, mode):
    app = MiniGPTApp(run=tiny_run, save=False)
    async with app.run_test(size=(100, 30)) as pilot:
        gen = await load_real(pilot, app)
        if mode == "dialogue":
            await pilot.press("escape", "m")
        session = gen.session
        reads = []
        real_read = session._read
        session._read = lambda new: (reads.append(len(new)), real_read(new))[1]
        for words in ["And God said", "Let there be light", "and the earth"]:
            await say(pilot, app, words)
        chat = gen.chat
        turns = chat.turns
        assert [t.role for t in turns] == ["user", "model"] * 3
        # The model read each turn's new text once, never the transcript again.
        # (in dialogue, each user turn and then the reply's speaker tag)
        expected = [[len(u.ids), len(session.tokenizer.encode(m.prefix))] for u, m in zip(turns[::2], turns[1::2])]
        assert reads == [n for pair in expected for n in pair if n]
        assert session.ids == [i for t in turns for i in t.ids]
        # The transcript is the document the model read, template text included (and shown).
        assert gen.output.text == chat.conversation.text()
        status = gen.status_text()
        if mode == "dialogue":
            assert status.startswith("dialogue") and turns[0].prefix == "You: " and turns[1].prefix == "Model: "
            assert "You: And God said" in gen.output.rendered_text()
            assert "you are You, the model Model" in str(app.query_one("#gen-turn").render())
        else:
            assert status.startswith("co-write") and all(not t.prefix for t in turns)
        assert len(list_conversations(tiny_run)) == 1  # kept in the run folder as it goes


async def test_regenerate_makes_versions_and_arrows_flip_them(tiny_run):
    app = MiniGPTApp(run=tiny_run, save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        gen = await load_real(pilot, app)
        await say(pilot, app, "And God")
        versions = [gen.chat.last_reply.text]
        assert gen.output.text == "And God" + versions[0]
        for n in (2, 3):
            await pilot.press("r")
            assert await wait_for(pilot, lambda: not gen.generating and gen.chat.siblings() == (n, n))
            versions.append(gen.chat.last_reply.text)
        assert len(set(versions)) == 3  # (the seeded random stream goes on: each version differs)
        assert gen.output.text == "And God" + versions[2]
        assert gen.output.rendered_text() == "And God" + labelled(versions[2], " ‹3/3›")
        assert "version 3/3 (←/→)" in str(app.query_one("#gen-turn").render())
        await pilot.press("left")
        assert gen.output.rendered_text() == "And God" + labelled(versions[1], " ‹2/3›")
        await pilot.press("left", "left")
        assert gen.output.rendered_text() == "And God" + labelled(versions[2], " ‹3/3›")  # round the versions
        await pilot.press("right")
        assert gen.chat.siblings() == (1, 3)
        await say(pilot, app, " more")  # the conversation goes on from the version shown
        turns = gen.chat.turns
        assert [t.text for t in turns[:3]] == ["And God", versions[0], " more"]
        assert read_path(gen)  # the model read that version, not the last one made
        assert gen.output.text == "And God" + versions[0] + " more" + turns[3].text


async def test_undo_removes_the_last_exchange_and_restores_the_state(tiny_run):
    app = MiniGPTApp(run=tiny_run, save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        gen = await load_real(pilot, app)
        await say(pilot, app, "In the beginning")
        after_first = list(gen.session.ids)
        await say(pilot, app, " And the earth")
        session = gen.session
        reads = []
        real_read = session._read
        session._read = lambda new: (reads.append(len(new)), real_read(new))[1]
        await pilot.press("escape", "u")
        assert [t.text for t in gen.chat.turns if t.role == "user"] == ["In the beginning"]
        assert gen.prompt.value == " And the earth"  # back in the prompt, to edit and send again
        assert gen.output.text == gen.chat.conversation.text()
        gen.chat.sync()
        assert session.ids == after_first and reads == []  # the state came back from its mark
        await pilot.press("u", "u")
        assert not gen.chat.conversation.turns and gen.output.text == ""
        assert not app.screen.active_bindings["u"].enabled  # nothing left to undo: the key is dimmed


async def test_a_pasted_multiline_prompt_arrives_whole_and_newlines_can_be_typed(tiny_run):
    app = MiniGPTApp(run=tiny_run, save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        gen = await load_real(pilot, app)
        assert await wait_for(pilot, lambda: focus_id(app) == "prompt")
        pasted = "In the beginning\nGod created\n\nthe earth"
        app.post_message(events.Paste(pasted))  # as the terminal sends it
        assert await wait_for(pilot, lambda: gen.prompt.value == pasted)
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: not gen.generating and gen.chat.last_reply is not None)
        user = gen.chat.turns[0]
        assert user.text == pasted and user.ids == gen.session.tokenizer.encode(pasted)
        assert gen.session.ids[:len(user.ids)] == user.ids and read_path(gen)  # the model read it whole
        # ctrl+j types a newline (the line feed every terminal sends); so does a backslash before Enter.
        await pilot.press("i", "a", "ctrl+j", "b", "backslash", "enter", "c")
        assert gen.prompt.value == "a\nb\nc" and not gen.generating


async def test_prompt_history_is_recalled_with_up_and_kept_across_launches(tui_home, tiny_run):
    app = MiniGPTApp(run=tiny_run, save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot, app, max_new_tokens=5)
        for words in ["first", "second\nline"]:
            await say(pilot, app, words)
        await pilot.press("i", "d", "r", "a", "f", "t")
        await pilot.press("up")
        assert app.generate.prompt.value == "second\nline"
        await pilot.press("up")  # the cursor is on the recalled text's last line: Up moves within it first
        await pilot.press("up")
        assert app.generate.prompt.value == "first"
        await pilot.press("down", "down")
        assert app.generate.prompt.value == "draft"  # what was being typed comes back
    assert json.loads((tui_home / "prompt_history.json").read_text()) == ["first", "second\nline"]
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_generate(pilot, app)
        await pilot.press("up")
        assert app.generate.prompt.value == "second\nline"


async def test_conversations_are_saved_reopened_and_exported(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setattr(chat_actions, "CLIPBOARD_TOOLS", [])
    app = MiniGPTApp(run=tiny_run, save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        gen = await load_real(pilot, app)
        await say(pilot, app, "And God said")
        await pilot.press("r")
        assert await wait_for(pilot, lambda: not gen.generating and gen.chat.siblings() == (2, 2))
        first = gen.chat.conversation
        second_version = gen.chat.last_reply.text
        await pilot.press("n")  # a new conversation; the old one is kept
        await say(pilot, app, "In the beginning")
        saved = list_conversations(tiny_run)
        assert [c.title for c in saved] == ["In the beginning", "And God said"]
        await pilot.press("escape", "h")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ConversationPickerScreen))
        await pilot.press("down", "enter")
        assert await wait_for(pilot, lambda: gen.chat.conversation.id == first.id)
        assert gen.output.rendered_text() == "And God said" + labelled(second_version, " ‹2/2›")
        await say(pilot, app, " And")  # a reopened conversation goes on (read once from its tokens)
        assert read_path(gen) and gen.chat.turns[1].text == second_version
        await pilot.press("e")
        assert await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        target = tmp_path / "exported.md"
        app.screen.query_one("#prompt-input").value = str(target)
        await pilot.press("enter")
        assert await wait_for(pilot, target.exists)
        text = target.read_text()
        assert text.startswith("# And God said") and "version 2 of 2" in text
        assert second_version.strip("\n") in text
        assert await wait_for(pilot, lambda: any(f"Exported as markdown to {target}" in n.message
                                                 for n in app._notifications))


async def test_no_hint_names_a_single_key_that_the_focused_prompt_would_type(tui_home, trained_template):
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_generate(pilot, app)
        header = lambda: str(app.query_one("#gen-header").render())  # noqa: E731
        assert "Esc, then 1" in header() and "(1)" not in header()
        # The footer shows no key that the prompt would type (Textual drops those it consumes).
        shown = [b.binding for b in app.screen.active_bindings.values() if b.binding.show]
        assert shown and not [b.key for b in shown if len(app.get_key_display(b)) == 1], shown
        await pilot.press("enter")  # Enter with no run: the notification follows the same rule
        assert any("Esc, then 1" in n.message for n in app._notifications)
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: "1 to train one, o to open one" in header())
        await pilot.press("o")  # named on screen now, and it acts
        assert any("No run has a checkpoint" in n.message for n in app._notifications)
        # The versions hint of a reply follows the focus too (a run trained meanwhile, loaded).
        app.generate.load(shutil.copytree(trained_template, tui_home / "runs" / "tiny-run"))
        await load_real(pilot, app)
        await say(pilot, app, "And")
        await pilot.press("r")
        assert await wait_for(pilot, lambda: not app.generate.generating and app.generate.chat.siblings() == (2, 2))
        bar = lambda: str(app.query_one("#gen-turn").render())  # noqa: E731
        assert "(←/→)" in bar()
        await pilot.press("i")
        assert await wait_for(pilot, lambda: "(Esc, then ←/→)" in bar())


async def test_a_newer_checkpoint_is_announced_and_reload_keeps_the_conversation(tiny_run):
    app = MiniGPTApp(run=tiny_run, save=False)
    async with app.run_test(size=(100, 30)) as pilot:
        gen = await load_real(pilot, app)
        await say(pilot, app, "In the beginning")
        await pilot.press("i")
        header = lambda: str(app.query_one("#gen-header").render())  # noqa: E731
        assert "Newer" not in header()
        # The trainer writes a newer checkpoint (and its step) into the run folder.
        checkpoint = tiny_run / "checkpoints" / f"{gen.info.checkpoint}.pt"
        shutil.copy(checkpoint, checkpoint.with_suffix(".tmp"))
        os.replace(checkpoint.with_suffix(".tmp"), checkpoint)
        future = time.time() + 5
        os.utime(checkpoint, (future, future))
        meta = json.loads((tiny_run / "meta.json").read_text())
        meta["step"] = 40
        (tiny_run / "meta.json").write_text(json.dumps(meta))
        gen.check_newer()  # (the tab looks every few seconds)
        assert "Newer checkpoint (step 40): Esc, then l reloads" in header()
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: "Newer checkpoint (step 40): l reloads" in header())
        conversation = gen.chat.conversation
        await pilot.press("l")
        assert await wait_for(pilot, lambda: gen.newer_step is None and gen.sampler is not None, timeout=30)
        assert gen.chat.conversation is conversation and "Newer" not in header()
        await say(pilot, app, " and the earth")  # the new weights read the conversation once, then go on
        assert gen.session.ids == [i for t in gen.chat.turns for i in t.ids]
