"""The app's default: replies sampled in a process of their own (core.generation.sampler_process). The
same conversation gives the same text as the in-app thread does, keys reach the child while a
reply streams, Esc stops it, and the child goes with the run (and with the app)."""

from __future__ import annotations

from minigpt_tui.core.generation.sampler_process import SessionProxy
from minigpt_tui.tui.app import MiniGPTApp

from tui_helpers import wait_for


async def converse(tiny_run, turns: list[str]) -> tuple[list[str], object]:
    """Each turn's reply text from the Generate tab, and the session the tab used."""
    app = MiniGPTApp(run=tiny_run, save=False)
    replies = []
    async with app.run_test(size=(80, 24)) as pilot:
        gen = app.generate
        await pilot.press("3")
        assert await wait_for(pilot, lambda: gen.sampler is not None, timeout=60)
        gen.prefs.max_new_tokens = gen.sampler.settings.max_new_tokens = 40
        gen.sampler.reseed(7)
        for words in turns:
            await pilot.press("i")
            app.query_one("#prompt").value = words
            await pilot.press("enter")
            assert await wait_for(pilot, lambda: gen.gen is not None or not gen.generating)
            assert await wait_for(pilot, lambda: not gen.generating, timeout=60)
            replies.append(gen.chat.last_reply.text)
        session = gen.session
    return replies, session


async def test_the_process_and_the_thread_write_the_same_replies(tiny_run, monkeypatch):
    thread, _ = await converse(tiny_run, ["And the", "Let there be"])
    monkeypatch.setenv("MINIGPT_TUI_SAMPLER", "process")
    process, session = await converse(tiny_run, ["And the", "Let there be"])
    assert isinstance(session, SessionProxy)
    assert process == thread and all(process)
    assert not session._owner.alive()  # the app closed: its sampler went with it


async def test_keys_reach_the_child_mid_reply_and_escape_stops_it(tiny_run, monkeypatch):
    monkeypatch.setenv("MINIGPT_TUI_SAMPLER", "process")
    app = MiniGPTApp(run=tiny_run, save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        gen = app.generate
        await pilot.press("3")
        assert await wait_for(pilot, lambda: gen.sampler is not None, timeout=60)
        child = gen.session._owner
        gen.prefs.max_new_tokens = gen.sampler.settings.max_new_tokens = 100_000
        await pilot.press("i")
        app.query_one("#prompt").value = "And"
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: len(gen.output.text) > 20, timeout=30)
        await pilot.press("right_square_bracket")
        assert gen.sampler.settings.temperature == 0.9 and "temp 0.9" in gen.status_text()
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: not gen.generating, timeout=5)
        assert gen.stopped and gen.session.stats.finish_reason == "cancelled"
        assert gen.last_count < 100_000
        # The conversation goes on after a stop, in the same child.
        await pilot.press("i")
        gen.prefs.max_new_tokens = gen.sampler.settings.max_new_tokens = 10
        app.query_one("#prompt").value = "God"
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: gen.gen is not None or not gen.generating)
        assert await wait_for(pilot, lambda: not gen.generating, timeout=30)
        assert gen.last_count == 10 and gen.session._owner is child and child.alive()
        gen.unload()
        assert not child.alive()


async def test_a_sampler_process_that_cannot_start_falls_back_to_a_thread(tiny_run, monkeypatch):
    from minigpt_tui.core.generation import sampler_process

    def refuse(*args, **kwargs):
        raise sampler_process.SamplerProcessError("The sampler process could not start (no more processes).")

    monkeypatch.setenv("MINIGPT_TUI_SAMPLER", "process")
    monkeypatch.setattr(sampler_process, "SamplerProcess", refuse)
    replies, session = await converse(tiny_run, ["And the"])
    assert not isinstance(session, SessionProxy) and replies[0]
