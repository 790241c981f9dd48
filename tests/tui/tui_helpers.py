"""Helpers for the app's tests: waiting, and a run loaded into the Generate tab (tiny corpora,
configs and runs are in tests/kit.py; the tiny trained run is conftest's `tiny_run`)."""

from __future__ import annotations

import time


async def wait_for(pilot, condition, timeout: float = 20.0, step: float = 0.02) -> bool:
    """Let the app run until condition() holds (False on timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await pilot.pause(step)
    return bool(condition())


def focus_id(app) -> str | None:
    """The id of the focused widget (None when nothing has focus)."""
    return getattr(app.focused, "id", None)


async def wait_loaded(pilot, app, max_new_tokens: int | None = None, timeout: float = 30.0):
    """The Generate tab once its run has loaded (MiniGPTApp(run=tiny_run), or a load asked for):
    the real Sampler and ChatSession that production makes. `max_new_tokens` sets the reply
    length on the tab and its sampler (a large one keeps a reply streaming until Esc)."""
    gen = app.generate
    assert await wait_for(pilot, lambda: gen.sampler is not None and not gen.loading, timeout=timeout), \
        "the run did not load"
    if max_new_tokens is not None:
        gen.prefs.max_new_tokens = gen.sampler.settings.max_new_tokens = max_new_tokens
    return gen
