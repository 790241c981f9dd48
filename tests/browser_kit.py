"""A headless Chromium driven over the Chrome DevTools protocol, just enough to open a page and
read what it shows (test_serve.py). No Playwright or Selenium: the browser is Debian's
`chromium` package, the protocol is JSON over a websocket, and the websocket client is
aiohttp's (textual-serve brings aiohttp).

The page `minigpt-tui --serve` serves draws the app with xterm.js into a canvas, so the text is
not in the DOM by itself. A script run before the page's own (`CAPTURE_TERMINAL`) catches the
xterm Terminal the page makes (the first object to set a `terminal` property) and turns on
xterm's screen-reader mode, which mirrors every row of the screen into the DOM as text
(`.xterm-accessibility-tree`); that is what `screen_text` reads.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

CAPTURE_TERMINAL = """
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  set(value) {
    Object.defineProperty(this, "terminal", {value, writable: true, configurable: true, enumerable: true});
    if (value && value.options && !window.__terminal) {
      window.__terminal = value;
      value.options.screenReaderMode = true;
    }
  },
});
"""
SCREEN_TEXT = """
(() => {
  const tree = document.querySelector(".xterm-accessibility-tree");
  return tree ? tree.innerText : "";
})()
"""


def find_browser() -> str | None:
    """The Chromium to use: $MINIGPT_TEST_BROWSER, else the first of BROWSERS on PATH."""
    named = os.environ.get("MINIGPT_TEST_BROWSER")
    if named:
        return shutil.which(named) or (named if Path(named).is_file() else None)
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def no_browser_reason() -> str:
    """Why find_browser found none, in one sentence (a test's skip reason)."""
    named = os.environ.get("MINIGPT_TEST_BROWSER")
    if named:
        return f"MINIGPT_TEST_BROWSER={named!r} names no browser binary"
    return (f"no Chromium to drive: none of {', '.join(BROWSERS)} is on PATH (Debian: apt-get install "
            "chromium, which .ci/run does where it runs as root; or set MINIGPT_TEST_BROWSER)")


class Browser:
    """A headless Chromium with one page, on a DevTools port of its own; a context manager."""

    def __init__(self, binary: str, width: int = 1200, height: int = 800):
        self.profile = tempfile.TemporaryDirectory(prefix="minigpt-chromium-")
        argv = [binary, "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--mute-audio",
                f"--window-size={width},{height}", f"--user-data-dir={self.profile.name}",
                "--remote-debugging-port=0", "about:blank"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            argv.insert(1, "--no-sandbox")  # Chromium will not start its sandbox as root
        # In a session of its own, so that close() ends Chromium's helper processes too (its crash
        # handler, its zygote): one that outlives the main process can still be writing into the
        # profile while it is removed ("Directory not empty", seen in CI).
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        self.loop = asyncio.new_event_loop()
        self.session = self.ws = None
        self._ids = 0

    def __enter__(self) -> Browser:
        try:
            self.loop.run_until_complete(self._connect())
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    async def _connect(self, timeout: float = 15.0) -> None:
        import aiohttp

        port_file = Path(self.profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.is_file() and port_file.read_text().strip()):
            if self.process.poll() is not None:
                raise RuntimeError(f"the browser exited at start (status {self.process.returncode})")
            if time.monotonic() > deadline:
                raise RuntimeError("the browser did not open its DevTools port in time")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
            targets = json.load(answer)
        page = next(t for t in targets if t.get("type") == "page")
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)

    async def _call(self, method: str, **params):
        self._ids += 1
        call_id = self._ids
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = json.loads((await self.ws.receive()).data)
            if message.get("id") == call_id:  # (events, which have no id, are passed over)
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def call(self, method: str, **params):
        return self.loop.run_until_complete(asyncio.wait_for(self._call(method, **params), 30))

    def open(self, url: str) -> None:
        self.call("Page.enable")
        self.call("Page.addScriptToEvaluateOnNewDocument", source=CAPTURE_TERMINAL)
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def screen_text(self) -> str:
        return self.evaluate(SCREEN_TEXT) or ""

    def wait_for_text(self, words: list[str], timeout: float) -> str:
        """The screen's text once it holds every one of `words` (or, at the timeout, as it is)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen_text()
            if all(w in text for w in words) or time.monotonic() > deadline:
                return text
            time.sleep(0.2)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        if self.ws is not None:
            self.loop.run_until_complete(self.ws.close())
        if self.session is not None:
            self.loop.run_until_complete(self.session.close())
        self.loop.close()
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._signal_group(signal.SIGKILL)  # whatever of the group is left
        self.process.wait(5)
        for _ in range(20):  # a helper killed a moment ago may still have a file open
            try:
                self.profile.cleanup()
                return
            except OSError:
                time.sleep(0.1)
        self.profile.cleanup()

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:  # the group is gone already
            pass
