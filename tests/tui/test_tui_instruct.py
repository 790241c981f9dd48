"""The Generate tab in instruct mode: an imported model with a chat template (a tiny random Llama
from tests/pretrained_kit.py) opens in it, reads each turn through the template, edits the
system prompt with `t`; `m` cycles through the modes, skipping instruct for a model without
a template."""

from __future__ import annotations

import json

import pytest

from minigpt_tui.core.generation import instruct
from minigpt_tui.tui.app import MiniGPTApp
from minigpt_tui.tui.generate.chat_screens import TemplateScreen

from pretrained_kit import gpt2_folder, import_folder, llama_folder
from tui_helpers import focus_id, wait_for, wait_loaded


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("instruct-models")
    return {"chatml": llama_folder(root / "chatml", context=256), "plain": gpt2_folder(root / "plain")}


async def modes_after_m(pilot, gen, presses: int) -> list[str]:
    seen = []
    for _ in range(presses):
        await pilot.press("m")
        seen.append(gen.chat.template.mode)
    return seen


async def test_a_chat_model_opens_in_instruct_mode_and_m_cycles_through_it(tui_home, folders):
    run = import_folder(folders["chatml"], tui_home / "runs", "chatml")
    app = MiniGPTApp(run=run, save=False)
    async with app.run_test(size=(100, 30)) as pilot:
        gen = await wait_loaded(pilot, app, max_new_tokens=4)
        assert gen.chat.template.mode == "instruct" and gen.status_text().startswith("instruct │")
        assert "instruct: the model's chat template, no system prompt" in str(app.query_one("#gen-turn").render())
        # t: the system prompt (instruct's one field), remembered for the run.
        await pilot.press("escape", "t")
        assert await wait_for(pilot, lambda: isinstance(app.screen, TemplateScreen))
        app.screen.query_one("#t-system").value = "Be brief."
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: not isinstance(app.screen, TemplateScreen))
        assert gen.chat.template.system == "Be brief."
        assert json.loads((run / "chat.json").read_text())["system"] == "Be brief."
        # A turn: the model reads the template's rendering, which the transcript shows.
        await pilot.press("i")
        assert await wait_for(pilot, lambda: focus_id(app) == "prompt")
        gen.prompt.value = "Hi there"
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: not gen.generating and gen.chat.last_reply is not None, timeout=30)
        turns = gen.chat.turns
        assert [t.role for t in turns] == ["user", "model"]
        assert turns[0].prefix == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"
        assert list(gen.session.ids) == instruct.read_ids(gen.session.tokenizer, turns, "Be brief.")
        assert gen.output.text == gen.chat.conversation.text()
        # m: instruct -> co-write -> dialogue -> instruct.
        await pilot.press("escape")
        assert await modes_after_m(pilot, gen, 3) == ["cowrite", "dialogue", "instruct"]


async def test_m_skips_instruct_for_a_model_without_a_chat_template(tui_home, folders):
    run = import_folder(folders["plain"], tui_home / "runs", "plain")
    app = MiniGPTApp(run=run, save=False)
    async with app.run_test(size=(100, 30)) as pilot:
        gen = await wait_loaded(pilot, app)
        assert gen.chat.template.mode == "cowrite"
        await pilot.press("escape")
        assert await modes_after_m(pilot, gen, 3) == ["dialogue", "cowrite", "dialogue"]
