"""The standby trainer: a process that has done a run's imports before `s` (cli/standby.py), and
the Train tab keeping one, handing it the run, and ending it with the app."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from minigpt_tui.cli.common import USER_ERROR
from minigpt_tui.cli.standby import read_command
from minigpt_tui.tui.app import MiniGPTApp

from test_tui_train import tiny_form
from tui_helpers import wait_for

STANDBY = [sys.executable, "-m", "minigpt_tui.cli.standby"]


def test_a_standby_line_is_a_json_list_of_strings():
    assert read_command('["--train", "x.toml", "--events", "jsonl"]\n') == ["--train", "x.toml", "--events", "jsonl"]
    assert read_command("") is None and read_command("\n") is None
    for bad in ("--train x", '{"a": 1}', '["--train", 3]'):
        with pytest.raises(ValueError):
            read_command(bad)


def test_the_standby_becomes_the_command_it_is_given(tui_home):
    done = subprocess.run(STANDBY, input=json.dumps(["--list"]) + "\n", capture_output=True, text=True, timeout=120)
    listed = subprocess.run([sys.executable, "-m", "minigpt_tui", "--list"], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (listed.returncode, listed.stdout)


def test_a_standby_told_nothing_exits_quietly_and_a_bad_line_is_one_sentence():
    idle = subprocess.run(STANDBY, input="", capture_output=True, text=True, timeout=120)
    assert (idle.returncode, idle.stdout) == (0, "")
    bad = subprocess.run(STANDBY, input="--train\n", capture_output=True, text=True, timeout=120)
    assert bad.returncode == USER_ERROR and bad.stdout == ""
    assert bad.stderr.startswith("minigpt-tui: the standby trainer got a command line it cannot read")
    assert len(bad.stderr.strip().splitlines()) == 1


@pytest.fixture
def standby_on(monkeypatch):
    """The app's standby on (the suite keeps it off), started at once rather than after 1.5 s."""
    monkeypatch.setenv("MINIGPT_TUI_STANDBY", "1")
    monkeypatch.setattr("minigpt_tui.tui.train.runner.STANDBY_DELAY_S", 0.05)


async def start_tiny_run(pilot, app, corpus) -> None:
    tiny_form(app, corpus)
    await pilot.pause()
    await pilot.press("s")


async def stop_run(pilot, train) -> None:
    await pilot.press("x")
    assert await wait_for(pilot, lambda: not train.training, timeout=60)


@pytest.mark.slow
async def test_the_train_tab_trains_in_its_standby_and_keeps_a_new_one_for_the_next_run(tiny_corpus, standby_on):
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        train = app.train
        assert await wait_for(pilot, lambda: train.standby.ready)
        waiting = train.standby.process.pid
        await start_tiny_run(pilot, app, tiny_corpus)
        assert await wait_for(pilot, lambda: train.proc is not None and train.proc.pid is not None)
        assert train.proc.pid == waiting and not train.standby.ready  # the run went to the waiting process
        assert await wait_for(pilot, lambda: train.state.loss is not None and train.plot.val, timeout=60)
        await stop_run(pilot, train)
        assert train.state.status == "stopped"
        assert await wait_for(pilot, lambda: train.standby.ready)  # ready for the next start
        assert train.standby.process.pid != waiting
        standby = train.standby.process
    assert standby.returncode is not None  # the app's end ended it


@pytest.mark.slow
async def test_a_standby_that_died_is_replaced_by_a_fresh_trainer(tiny_corpus, standby_on):
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        train = app.train
        assert await wait_for(pilot, lambda: train.standby.ready)
        dead = train.standby.process
        dead.kill()
        await dead.wait()
        await start_tiny_run(pilot, app, tiny_corpus)
        assert await wait_for(pilot, lambda: train.state.loss is not None, timeout=60)
        assert train.proc.pid != dead.pid
        await stop_run(pilot, train)


@pytest.mark.slow
async def test_an_app_opened_to_chat_starts_no_standby_until_the_train_tab_is_shown(tiny_run, standby_on):
    app = MiniGPTApp(run=tiny_run, save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        train = app.train
        await pilot.pause(0.5)
        assert app.tabs.active == "generate" and train.standby.process is None
        app.tabs.active = "train"
        assert await wait_for(pilot, lambda: train.standby.ready)
        first = train.standby.process
        app.tabs.active = "generate"
        await pilot.pause()
        app.tabs.active = "train"  # shown again: the one that waits is kept, no second one
        await pilot.pause(0.3)
        assert train.standby.process is first
