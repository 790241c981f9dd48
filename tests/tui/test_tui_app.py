"""The app as a whole: tabs by key, help, command palette, quitting, settings, start-up."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from textual.binding import Binding
from textual.widgets import Input

from minigpt_tui.tui.app import NOT_IN_PALETTE, MiniGPTApp
from minigpt_tui.tui.checkpoints.pane import CheckpointsPane
from minigpt_tui.tui.generate.pane import GeneratePane
from minigpt_tui.tui.screens import ConfirmScreen, HelpScreen
from minigpt_tui.tui.settings import AppSettings, load_settings, save_settings
from minigpt_tui.tui.train.pane import TrainPane

from tui_helpers import focus_id, wait_for

ALL_BINDINGS = [
    b for cls in (MiniGPTApp, TrainPane, CheckpointsPane, GeneratePane) for b in Binding.make_bindings(cls.BINDINGS)
]


def test_every_binding_has_an_id_and_no_fragile_keys():
    for binding in ALL_BINDINGS:
        assert binding.id, binding
        for key in binding.key.split(","):
            assert key not in ("ctrl+enter", "shift+enter", "ctrl+tab"), binding


async def test_first_launch_opens_train_ready_to_start():
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.tabs.active == "train"
        assert await wait_for(pilot, lambda: focus_id(app) == "start")
        train = app.train
        assert train.recipe == "kjv-char-transformer"
        assert train.config is not None  # the default recipe and the built-in corpus validate
        assert train.query_one("#f-data-path", Input).value == ""
        assert app.screen.active_bindings["s"].enabled  # one key starts a run
        assert not app.screen.active_bindings["x"].enabled  # Stop is dimmed


async def test_switching_tabs_by_key():
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        assert app.tabs.active == "checkpoints"
        assert await wait_for(pilot, lambda: focus_id(app) == "runs-table")
        await pilot.press("3")
        assert app.tabs.active == "generate"
        assert await wait_for(pilot, lambda: focus_id(app) == "prompt")  # the prompt has focus when the tab opens
        await pilot.press("1")  # typed into the prompt, not a tab switch
        assert app.tabs.active == "generate"
        assert app.query_one("#prompt").value == "1"
        await pilot.press("escape")  # leaves the prompt; single keys act again
        await pilot.press("1")
        assert app.tabs.active == "train"
        await pilot.press("2")
        assert app.tabs.active == "checkpoints"


async def test_help_screen_lists_every_key():
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = "\n".join(what for _, rows in app.screen.sections for _, what in rows)
        for binding in ALL_BINDINGS:
            assert (binding.tooltip or binding.description) in text, binding
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("f1")
        assert not isinstance(app.screen, HelpScreen)


async def test_command_palette_lists_every_action():
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for cls, tab in ((TrainPane, "Train"), (CheckpointsPane, "Checkpoints"), (GeneratePane, "Generate")):
            for binding in Binding.make_bindings(cls.BINDINGS):
                if binding.action not in NOT_IN_PALETTE:
                    assert f"{tab}: {binding.description}" in titles
        assert "Go to Generate" in titles and "Help: keys" in titles and "Quit" in titles
        # Running one from the palette switches to its tab and does it.
        command = next(c for c in app.get_system_commands(app.screen) if c.title == "Generate: Temp +0.1")
        command.callback()
        assert await wait_for(pilot, lambda: app.generate.prefs.temperature == 0.9)
        assert app.tabs.active == "generate"


async def test_quitting_while_training_asks_first():
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app.train.proc = object()  # pretend a trainer is running
        await pilot.press("ctrl+q")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmScreen)
        assert app.is_running
        app.train.proc = None
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert app.return_code == 0


async def test_settings_are_remembered(tui_home):
    app = MiniGPTApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3", "escape", "right_square_bracket", "right_square_bracket", "K", "v")
        assert "temp 1.0" in app.generate.status_text()
    saved, warning = load_settings()
    assert warning is None
    assert saved.sampling.temperature == 1.0 and saved.sampling.top_k == 0 and saved.confidence
    app = MiniGPTApp()
    async with app.run_test(size=(80, 24)) as pilot:
        assert "temp 1.0" in app.generate.status_text()
        assert app.generate.output.confidence


async def test_broken_settings_file_gives_defaults_and_a_notice(tui_home):
    (tui_home / "config.toml").write_text("this is [not toml")
    settings, warning = load_settings()
    assert settings == AppSettings() and "not valid TOML" in warning
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert any("not valid TOML" in n.message for n in app._notifications)


def test_settings_round_trip_and_clamping(tui_home):
    settings = AppSettings(last_run="r1", checkpoint="last", confidence=True, recipe="x")
    settings.sampling.temperature = 1.3
    settings.sampling.allow_unk = True
    settings.keymap = {"generate.temp_up": "plus"}
    assert save_settings(settings) is None
    loaded, warning = load_settings()
    assert loaded == settings and warning is None
    (tui_home / "config.toml").write_text('checkpoint = "worst"\n[sampling]\ntemperature = -4\ntop_k = "many"\n')
    loaded, _ = load_settings()
    assert loaded.checkpoint == "best" and loaded.sampling.temperature == 0.0 and loaded.sampling.top_k == 0


async def test_keymap_from_settings_rebinds_a_key():
    settings = AppSettings(keymap={"generate.temp_up": "t"})
    app = MiniGPTApp(settings=settings, save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3", "escape", "t")
        assert app.generate.prefs.temperature == 0.9


async def test_usable_at_80x24_and_when_resized():
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        for size, tab in (((60, 20), "2"), ((200, 60), "3"), ((80, 24), "1")):
            await pilot.resize_terminal(*size)
            await pilot.press("escape", tab)
            assert app.tabs.active == {"1": "train", "2": "checkpoints", "3": "generate"}[tab]
            assert app.screen.query_one("Footer").region.bottom == size[1]
            pane = app.pane(app.tabs.active)
            assert pane.region.right <= size[0] and pane.region.height > 5


def test_startup_imports_no_torch_and_is_fast():
    """The first frame comes without importing torch (a subprocess, so other tests' imports don't count)."""
    code = textwrap.dedent("""
        import asyncio, sys, time
        t0 = time.perf_counter()
        from minigpt_tui.tui.app import NOT_IN_PALETTE, MiniGPTApp
        async def main():
            app = MiniGPTApp(save=False)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.pause()
                print(f"ready {time.perf_counter() - t0:.3f}")
                print("torch" in sys.modules)
        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    seconds, torch_loaded = out.stdout.split()[-2:]
    assert torch_loaded == "False"
    assert float(seconds) < 5.0


async def test_app_opens_on_generate_with_run(tiny_run):
    app = MiniGPTApp(run=tiny_run, save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.tabs.active == "generate"
        assert await wait_for(pilot, lambda: app.generate.sampler is not None)
        assert app.generate.info.run_name == "tiny-run"


async def test_a_renamed_run_is_followed_by_generate_and_the_remembered_last_run(tiny_run):
    """Renaming the loaded run in Checkpoints must not leave Generate (and the settings file)
    pointing at a folder that no longer exists."""
    from minigpt_tui.core.runs.run_dir import RunDir
    from minigpt_tui.tui.checkpoints.pane import CheckpointsPane

    app = MiniGPTApp(run=tiny_run, save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_for(pilot, lambda: app.generate.sampler is not None)
        app.settings.last_run = "tiny-run"
        new = RunDir(tiny_run).rename("tiny-renamed").path
        app.checkpoints.post_message(CheckpointsPane.RunRenamed(tiny_run, new))
        assert await wait_for(pilot, lambda: app.generate.info.run_name == "tiny-renamed")
        assert app.generate.info.run_dir == new and app.settings.last_run == "tiny-renamed"
