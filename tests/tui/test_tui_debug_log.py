"""Errors are never swallowed: one the user can act on is a sentence on screen, and a bug's
traceback goes to the debug log in the data home (README, "Reporting bugs")."""

from __future__ import annotations

import logging

import pytest

from minigpt_tui.core import paths
from minigpt_tui.tui.app import MiniGPTApp
from minigpt_tui.tui.debug_log import LOGGER_NAME, setup_debug_log

from tui_helpers import wait_for, wait_loaded


@pytest.fixture
def debug_log():
    """The app's debug log set up as at start-up (in the test's data home), undone afterwards."""
    logger = logging.getLogger(LOGGER_NAME)
    before = (list(logger.handlers), logger.level, logger.propagate)
    path = setup_debug_log()
    yield path
    for handler in logger.handlers:
        if handler not in before[0]:
            handler.close()
    logger.handlers[:], logger.level, logger.propagate = before


def test_the_debug_log_lives_in_the_data_home(tui_home):
    assert paths.debug_log_file() == tui_home / "debug.log"


def test_a_log_that_cannot_be_opened_never_stops_the_app(tmp_path, capsys):
    logger = logging.getLogger(LOGGER_NAME)
    before = (list(logger.handlers), logger.level, logger.propagate)
    try:
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        assert setup_debug_log(blocker / "debug.log") is None  # its folder cannot be made
        logging.getLogger("minigpt_tui.tui.test").error("goes nowhere")
        assert capsys.readouterr().err == ""  # (not onto the terminal the TUI draws on)
    finally:
        logger.handlers[:], logger.level, logger.propagate = before


async def test_a_failing_generation_is_a_sentence_and_a_logged_traceback(debug_log, tiny_run):
    assert not debug_log.exists()  # opened at the first record, not at start-up
    app = MiniGPTApp(run=tiny_run, save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        gen = await wait_loaded(pilot, app)
        # The real model fails at its second decoding step: two tokens are made, then the error.
        model, steps = gen.session.model, []
        decode_step = model.decode_step

        def failing_step(token, state):
            steps.append(token)
            if len(steps) >= 2:
                raise RuntimeError("the model fell over")
            return decode_step(token, state)

        model.decode_step = failing_step  # (this app's own model, loaded for this test)
        gen.generate("And")
        assert await wait_for(pilot, lambda: not gen.generating and gen.last_count == 2)
        errors = [n.message for n in app._notifications if n.severity == "error"]
        assert errors == ["Generation failed (RuntimeError: the model fell over)."]
    logged = debug_log.read_text(encoding="utf-8")
    assert "Traceback" in logged and "RuntimeError: the model fell over" in logged
