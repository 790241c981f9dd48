"""Which run the Generate tab shows, and what loading one costs the app: runs are listed by a
worker (never on the UI thread), the last used run is offered first, `o` picks another, the
weights are loaded once, by the sampler process, not also by the app, and a run that process
cannot load is one sentence, not a second try in a thread."""

from __future__ import annotations

import shutil
import threading
import time

import pytest

from minigpt_tui.core.runs import run_dir as run_dir_module
from minigpt_tui.tui.app import MiniGPTApp
from minigpt_tui.tui.generate.run_loading import RunLoading
from minigpt_tui.tui.settings import AppSettings

from tui_helpers import wait_for


def record_listing_threads(monkeypatch) -> list[str]:
    """The name of the thread each list_runs call ran on."""
    threads: list[str] = []
    real = run_dir_module.list_runs

    def listing(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(run_dir_module, "list_runs", listing)
    return threads


async def test_generate_offers_the_last_used_run_listing_runs_in_a_worker(tiny_run, monkeypatch):
    other = shutil.copytree(tiny_run, tiny_run.with_name("other-run"))  # the newer of the two
    threads = record_listing_threads(monkeypatch)
    app = MiniGPTApp(settings=AppSettings(last_run="tiny-run"), save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        gen = app.generate
        assert await wait_for(pilot, lambda: gen.info is not None, timeout=60)
        assert gen.info.run_dir == tiny_run and other.is_dir()
        assert threads and threading.main_thread().name not in threads


async def test_the_run_picker_lists_runs_in_a_worker_and_opens_the_one_chosen(tiny_run, monkeypatch):
    shutil.copytree(tiny_run, tiny_run.with_name("other-run"))
    app = MiniGPTApp(run=tiny_run, save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        gen = app.generate
        assert await wait_for(pilot, lambda: gen.info is not None, timeout=60)
        threads = record_listing_threads(monkeypatch)
        await pilot.press("escape", "o")  # (in the prompt, o is a letter)
        assert await wait_for(pilot, lambda: app.screen.id != "main" and app.screen.query("OptionList"))
        assert threads and threading.main_thread().name not in threads
        picker = app.screen.query_one("OptionList")
        names = [str(picker.get_option_at_index(i).id) for i in range(picker.option_count)]
        assert sorted(names) == ["other-run", "tiny-run"]
        picker.highlighted = names.index("other-run")
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: gen.info is not None and gen.info.run_name == "other-run", timeout=60)


async def test_the_app_never_loads_weights_the_sampler_process_loads(tiny_run, monkeypatch):
    """The header's facts come from the run's small files and the child's ready message."""
    monkeypatch.setenv("MINIGPT_TUI_SAMPLER", "process")
    best = tiny_run / "checkpoints" / "best.pt"
    step = run_dir_module.load_checkpoint(best)["step"]

    def no_weights_here(*args, **kwargs):
        raise AssertionError("the app process loaded the weights")

    monkeypatch.setattr(run_dir_module, "load_checkpoint", no_weights_here)
    meta = run_dir_module.RunDir(tiny_run).read_meta()
    app = MiniGPTApp(run=tiny_run, save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        gen = app.generate
        assert await wait_for(pilot, lambda: gen.info is not None or not gen.loading, timeout=60)
        assert gen.info is not None, "the run did not load"
        assert gen.info.params == meta.params > 0
        assert gen.info.step == step and gen.info.checkpoint == "best"
        assert gen.loaded_mtime == best.stat().st_mtime_ns


async def test_opening_the_picker_while_the_offer_lists_runs_cancels_neither(tiny_run, monkeypatch):
    """A slow disk: the offer is still listing when `o` asks for the picker; Esc on the picker
    still leaves the offered run loaded."""
    real = run_dir_module.list_runs

    def slow_listing(*args, **kwargs):
        time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(run_dir_module, "list_runs", slow_listing)
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        gen = app.generate
        await pilot.press("3", "escape", "o")
        assert await wait_for(pilot, lambda: bool(app.screen.query("OptionList")))
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: gen.info is not None, timeout=60)
        assert gen.info.run_dir == tiny_run


async def test_a_run_the_sampler_process_cannot_load_is_one_sentence_without_a_retry(tiny_run, monkeypatch):
    """A checkpoint that does not match the run's config fails in the child: the app says why
    and does not load the weights again in a thread."""
    monkeypatch.setenv("MINIGPT_TUI_SAMPLER", "process")
    config = tiny_run / "config.toml"
    config.write_text(config.read_text().replace("n_embd = 16", "n_embd = 24"))
    monkeypatch.setattr(RunLoading, "_load_here", lambda *a: pytest.fail("retried in a thread"))
    app = MiniGPTApp(run=tiny_run, save=False)
    messages = []
    async with app.run_test(size=(80, 24)) as pilot:
        monkeypatch.setattr(app, "notify", lambda message, **kw: messages.append(message))
        gen = app.generate
        assert await wait_for(pilot, lambda: bool(messages) and not gen.loading, timeout=60)
        assert gen.info is None
        assert messages == [f"Checkpoint file {tiny_run / 'checkpoints' / 'best.pt'} does not match the run's "
                            "config.toml and tokenizer.json."]


async def test_a_run_with_an_unreadable_meta_json_loads_and_counts_its_parameters(tiny_run):
    params = run_dir_module.RunDir(tiny_run).read_meta().params
    (tiny_run / "meta.json").write_text("{ not json")
    app = MiniGPTApp(run=tiny_run, save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        gen = app.generate
        assert await wait_for(pilot, lambda: gen.info is not None, timeout=60)
        assert gen.info.params == params > 0
