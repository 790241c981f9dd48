"""The Generate tab: streaming, Esc, sampling keys mid-generation, the transcript view
(the conversation itself is tests/tui/test_tui_chat.py). Replies come from the tiny trained run
(conftest's `tiny_run`) through the Sampler and ChatSession that production makes; one that must
still be streaming when a key is pressed is given 100,000 tokens, and Esc ends it."""

from __future__ import annotations

import random

from minigpt_tui.core.data.tokenizer import WikiTextJoins, prettify
from minigpt_tui.tui.app import MiniGPTApp
from minigpt_tui.tui.generate.pane import LoadedInfo
from minigpt_tui.tui.widgets.odds_panel import token_label
from minigpt_tui.tui.widgets.stream_view import StreamView, wrap_rows

from tui_helpers import focus_id, wait_for, wait_loaded

ENDLESS = 100_000  # tokens: a reply that is still streaming when a key is pressed (Esc ends it)


async def open_generate(pilot, app):
    await pilot.press("3")
    assert await wait_for(pilot, lambda: focus_id(app) == "prompt")


async def submit(pilot, app, prompt: str):
    app.query_one("#prompt").value = prompt
    await pilot.press("enter")
    # Under load the Submitted message can still be on its way when press() returns.
    assert await wait_for(pilot, lambda: app.generate.gen is not None or app.generate.last_prompt == prompt)


async def test_generate_with_a_real_tiny_run(tiny_run):
    app = MiniGPTApp(run=tiny_run, save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        gen = app.generate
        assert await wait_for(pilot, lambda: gen.sampler is not None, timeout=30)
        gen.prefs.max_new_tokens = 60
        gen.sampler.settings.max_new_tokens = 60
        await submit(pilot, app, "And the")
        assert await wait_for(pilot, lambda: app.focused is gen.output)  # focus left the prompt: single keys act
        assert await wait_for(pilot, lambda: not gen.generating, timeout=30)
        text = gen.output.text
        assert text.startswith("And the") and len(text) > len("And the")
        assert gen.last_count == 60
        assert "tok/s" in gen.status_text()
        # Temperature keys change the shown value and the sampler's setting.
        await pilot.press("right_square_bracket")
        assert "temp 0.9" in gen.status_text() and gen.sampler.settings.temperature == 0.9
        await pilot.press("left_square_bracket", "left_square_bracket")
        assert "temp 0.7" in gen.status_text() and gen.sampler.settings.temperature == 0.7
        # Regenerate makes a second version of the reply; the first is kept.
        await pilot.press("r")
        assert await wait_for(pilot, lambda: not gen.generating and gen.chat.siblings() == (2, 2), timeout=30)
        assert gen.output.text.startswith("And the") and "‹2/2›" in gen.output.rendered_text()


async def test_escape_stops_at_once_and_shows_what_was_made(tiny_run):
    app = MiniGPTApp(run=tiny_run, save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        gen = await wait_loaded(pilot, app, max_new_tokens=ENDLESS)
        await submit(pilot, app, "And")
        assert await wait_for(pilot, lambda: len(gen.output.text) > 50)
        assert app.screen.active_bindings["escape"].binding.action == "stop"
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: not gen.generating, timeout=2)
        session = gen.session
        made = len(session.ids)
        await pilot.pause(0.1)
        assert len(session.ids) == made  # the worker stopped
        assert session.stats.finish_reason == "cancelled" and 0 < session.stats.new_tokens < ENDLESS
        assert gen.last_count == session.stats.new_tokens  # every token made is shown
        assert gen.output.text == "And" + gen.chat.last_reply.text
        assert gen.stopped and "stopped" in str(app.query_one("#gen-status").render())
        # Back to the prompt with one key; brackets can still be typed there.
        await pilot.press("i")
        assert await wait_for(pilot, lambda: focus_id(app) == "prompt")
        await pilot.press("left_square_bracket", "right_square_bracket")
        assert app.query_one("#prompt").value.endswith("[]")
        assert gen.prefs.temperature == 0.8


async def test_settings_keys_take_effect_mid_generation(tiny_run):
    app = MiniGPTApp(run=tiny_run, save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        gen = await wait_loaded(pilot, app, max_new_tokens=ENDLESS)
        sampler = gen.sampler
        # Spies on the real sampler: the temperature each token is picked at, and reseeds.
        seen_temperatures, reseeds = [], []
        pick, reseed = sampler.pick, sampler.reseed
        sampler.pick = lambda *args: (seen_temperatures.append(sampler.settings.temperature), pick(*args))[1]
        sampler.reseed = lambda seed=None: (reseeds.append(seed), reseed(seed))[1]
        await submit(pilot, app, "")
        assert await wait_for(pilot, lambda: len(seen_temperatures) > 5)
        await pilot.press("right_square_bracket")
        assert await wait_for(pilot, lambda: seen_temperatures[-1] == 0.9)
        assert seen_temperatures[0] == 0.8  # the change applied from a later token on
        gen.action_stop()
        assert await wait_for(pilot, lambda: not gen.generating)
        # (pressed while idle: pilot.press waits for an idle CPU, which a running generation never gives)
        await pilot.press("K")  # top-k: off -> stays off (most permissive)
        await pilot.press("k")
        assert sampler.settings.top_k == 100 and "top-k 100" in gen.status_text()
        await pilot.press("p")
        assert sampler.settings.top_p == 0.95 and "top-p 0.95" in gen.status_text()
        await pilot.press("s")
        assert reseeds == [gen.prefs.seed] and sampler.settings.seed == gen.prefs.seed
        await pilot.press("a")  # tokens the training text never held: allowed, then masked again
        assert sampler.settings.allow_unk and gen.prefs.allow_unk and "<unk> allowed" in gen.status_text()
        await pilot.press("a")
        assert not sampler.settings.allow_unk and "<unk>" not in gen.status_text()
        await pilot.press("minus")
        assert sampler.settings.max_new_tokens == 10_000
        gen.action_temperature(-2.5)
        await pilot.press("left_square_bracket", "left_square_bracket")
        assert gen.prefs.temperature == 0.0 and "temp 0.0 (greedy)" in gen.status_text()


async def test_streaming_2000_tokens_shows_exactly_the_generated_text(tiny_run, monkeypatch):
    from minigpt_tui.tui.generate import chat_actions

    monkeypatch.setattr(chat_actions, "CLIPBOARD_TOOLS", [])  # (never the developer's own clipboard)
    # Text the tiny model never writes is in the prompt: a tab, letters it does not know, a word
    # longer than a row (its characters are read as <unk>; the transcript shows them as typed).
    prompt = "Prompt:\t" + "x" * 300 + " ünïcode ΑΩ\n"
    app = MiniGPTApp(run=tiny_run, save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        gen = await wait_loaded(pilot, app, max_new_tokens=2000)
        await submit(pilot, app, prompt)
        assert await wait_for(pilot, lambda: not gen.generating and gen.chat.last_reply is not None, timeout=30)
        reply = gen.chat.last_reply.text
        expected = prompt + reply
        assert gen.last_count == 2000 and gen.session.stats.finish_reason == "length"
        assert len(reply) >= 1900 and reply.count("\n") > 5  # (many lines)
        assert gen.output.text == expected
        assert gen.output.rendered_text() == expected.replace("\t", " ")  # what the rows are drawn from
        assert gen.output.appends < 200  # drained in batches, not one repaint per token
        assert gen.last_tps > 0 and f"{gen.last_tps:,.0f} tok/s" in gen.status_text()
        assert_rows_fit(gen.output)
        # Copy (no clipboard program here: said so), and a new conversation clears the view.
        await pilot.press("c")
        assert app.clipboard == expected
        assert any("No clipboard program here" in n.message for n in app._notifications)
        await pilot.press("n")
        assert gen.output.text == "" and not gen.chat.conversation.turns


def assert_rows_fit(view) -> None:
    """Every row fits the view and the rows cover the text in order."""
    width = view.scrollable_content_region.width
    for line in view._lines:
        ends = line.rows[1:] + [len(line.text)]
        for a, b in zip(line.rows, ends):
            drawn = b - a - (1 if b < len(line.text) and line.text[b - 1] == " " else 0)  # a break space
            assert drawn <= width


async def test_the_view_wraps_any_piece_a_model_may_stream():
    """Pieces a word-level or BPE model writes and the tiny char model never does (a tab, letters
    beyond ASCII, a token longer than a row), appended in drain-sized batches as a reply streams."""
    rng = random.Random(7)
    words = ["In", "the", "beginning", "God", "created", "heaven", "earth", ",", ".", "\n", "\t", "ünïcode", "ΑΩ"]
    pieces = [(" " if rng.random() < 0.8 else "") + rng.choice(words) for _ in range(2000)]
    pieces[500] = "x" * 300
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_generate(pilot, app)
        view = app.generate.output
        for start in range(0, len(pieces), 37):
            view.append_many([(piece, 0.5) for piece in pieces[start:start + 37]])
            await pilot.pause()
        expected = "".join(pieces)
        assert view.text == expected and view.rendered_text() == expected.replace("\t", " ")
        assert_rows_fit(view)


async def test_output_follows_the_end_only_at_the_bottom():
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_generate(pilot, app)
        view = app.generate.output
        view.append_many([(f"line {i}\n", 0.5) for i in range(100)])
        await pilot.pause()
        assert view.scroll_offset.y == view._end_y() > 0  # the last row is at the bottom
        assert view.max_scroll_y > view._end_y()  # while streaming there is headroom below
        view.settle()
        await pilot.pause()
        assert view.scroll_offset.y == view.max_scroll_y == view._end_y()
        view.scroll_to(y=10, animate=False)
        await pilot.pause()
        view.append_many([(f"more {i}\n", 0.5) for i in range(20)])
        await pilot.pause()
        assert view.scroll_offset.y == 10  # the user scrolled up: stay put
        view.scroll_end(animate=False)
        await pilot.pause()
        view.append_many([("again\n", 0.5)])  # following again (the scroll may wait for the next append)
        view.settle()
        await pilot.pause()
        assert view.scroll_offset.y == view._end_y()


async def test_confidence_mode_and_alternatives_panel(tiny_run):
    app = MiniGPTApp(run=tiny_run, save=False)
    async with app.run_test(size=(100, 30)) as pilot:
        gen = await wait_loaded(pilot, app, max_new_tokens=50)
        events = []  # what the session yielded (a spy on the real one)
        reply = gen.session.reply
        gen.session.reply = lambda *args, **kwargs: (events.append(e) or e for e in reply(*args, **kwargs))
        await submit(pilot, app, "")
        assert await wait_for(pilot, lambda: not gen.generating and gen.chat.last_reply is not None)
        assert len(events) == 50
        last = events[-1]
        panel = str(app.query_one("#alternatives").render())
        assert f"Latest {token_label(last.text)} {last.prob:.0%}" in panel  # the last token and its odds
        for text, prob in last.top:
            assert f"{token_label(text):<8}{prob:4.0%}" in panel
        await pilot.press("v")
        assert app.generate.output.confidence
        assert "Colour = probability" in str(app.query_one("#alternatives").render())


async def test_generate_without_a_run_says_what_to_do():
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_generate(pilot, app)
        await pilot.press("enter")
        assert any("No run is loaded" in n.message for n in app._notifications)
        await pilot.press("escape", "o")
        assert any("No run has a checkpoint" in n.message for n in app._notifications)


def test_word_level_display_matches_prettify():
    from minigpt_tui.tui.generate.pane import GeneratePane

    pane = GeneratePane()
    pane.info = LoadedInfo("w", None, "best", 1, word_level=True)
    rng = random.Random(3)
    vocab = [" the", " @-@", " @.@", " @,@", " 3", " well", " known", "\n", "\n", " ="]
    for _ in range(50):
        tokens = [rng.choice(vocab) for _ in range(60)]
        pane._joins = WikiTextJoins()
        shown = "".join(pane._display(t) for t in tokens) + pane._joins.flush()
        assert shown == prettify("".join(tokens))


def test_wrapping_is_stable_under_appends():
    rng = random.Random(1)
    for width in (1, 5, 17, 40):
        text = ""
        rows = [0]
        for _ in range(300):
            text += rng.choice(["a", "bb ", " ", "ccc", "dddddddddd", "  "])
            keep = len(rows) - 1
            rows = rows[:keep] + wrap_rows(text, rows[keep], width)
            assert rows == wrap_rows(text, 0, width)


def test_wrapping_counts_terminal_cells_for_wide_characters():
    """CJK characters and emoji take two cells: a row never holds more cells than the view is wide."""
    from rich.cells import cell_len

    assert wrap_rows("中文中文中文", 0, 5) == [0, 2, 4]  # two wide characters (4 cells) a row, not five
    assert wrap_rows("ab 中文 🙂🙂", 0, 6) == [0, 3, 6]  # broken at the spaces, as narrow text is
    rng = random.Random(2)
    for width in (1, 2, 3, 5, 9, 17):
        text, rows = "", [0]
        for _ in range(200):
            text += rng.choice(["a", "bb ", " ", "中文", "🙂🙂 ", "字", "dddddddddd", "é", "👩‍👩‍👧 "])
            keep = len(rows) - 1
            rows = rows[:keep] + wrap_rows(text, rows[keep], width)
            assert rows == wrap_rows(text, 0, width)  # appending never moves an earlier row
        for r, (start, end) in enumerate(zip(rows, rows[1:] + [len(text)])):
            drawn = text[start:end]
            if r + 1 < len(rows) and drawn.endswith(" "):
                drawn = drawn[:-1]  # the space at a break is not drawn
            assert cell_len(drawn) <= width or (width == 1 and cell_len(drawn) == 2), (width, drawn)


async def test_stream_view_rewraps_on_resize():
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_generate(pilot, app)
        view: StreamView = app.generate.output
        view.append_many([("word " * 200, 0.9)])
        await pilot.pause()
        rows_wide = len(view._row_index)
        await pilot.resize_terminal(50, 24)
        await pilot.pause()
        assert len(view._row_index) > rows_wide
        assert view.rendered_text() == "word " * 200
