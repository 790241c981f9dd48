"""`minigpt-tui --serve`: the app as a web page, answered over HTTP and shown in a real browser.

The browser test needs a Chromium (Debian's `chromium`; .ci/run installs it where it can) and
says why it skips where there is none (browser_kit.find_browser)."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from browser_kit import Browser, find_browser, no_browser_reason
from minigpt_tui.cli.dispatch import build_parser, main

TAB_NAMES = ["Train", "Checkpoints", "Generate"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_line(stream, timeout: float) -> str:
    """The next line of a child's pipe, or "" if none comes in time."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return stream.readline()


@contextlib.contextmanager
def serving(*args: str):
    """`minigpt-tui --serve ARGS` in a child process: (the process, its first line of stdout, the port).
    Stopped with Ctrl+C (SIGINT) afterwards, its pipes closed."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "minigpt_tui", "--serve", "--port", str(port), *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = read_line(proc.stdout, 30)
        assert line, f"no URL printed; stderr: {proc.stderr.read() if proc.poll() is not None else '(running)'}"
        yield proc, line, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        proc.stdout.close()
        proc.stderr.close()


def get(url: str, host: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status, answer.read().decode("utf-8")


def test_help_says_the_page_has_no_login():
    text = " ".join(build_parser().format_help().split())
    assert "--serve" in text and "NO LOGIN" in text and "SSH tunnel" in text


def test_host_and_port_need_serve(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--host", "0.0.0.0"])
    assert exit_.value.code == 2 and "go with --serve" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_binds_loopback_prints_its_url_and_answers():
    with serving() as (proc, line, port):
        assert f"http://127.0.0.1:{port}" in line
        status, page = get(f"http://127.0.0.1:{port}/")
        assert status == 200 and f'data-session-websocket-url="ws://127.0.0.1:{port}/ws"' in page
        # Through an SSH tunnel the browser's address differs: the page's links follow it.
        _, tunnelled = get(f"http://127.0.0.1:{port}/", host="localhost:9000")
        assert 'data-session-websocket-url="ws://localhost:9000/ws"' in tunnelled
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
        assert "warning" not in proc.stderr.read()


@pytest.mark.slow
def test_serving_beyond_this_machine_says_there_is_no_login():
    with serving("--host", "0.0.0.0") as (proc, line, port):
        assert f"http://0.0.0.0:{port}" in line
        assert get(f"http://127.0.0.1:{port}/")[0] == 200  # (the test only ever calls loopback)
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
        err = proc.stderr.read()
    assert "no login" in err and "SSH tunnel" in err


@pytest.mark.slow
def test_the_page_shows_the_app_in_headless_chromium(tmp_path):
    browser = find_browser()
    if browser is None:
        pytest.skip(no_browser_reason())
    with serving() as (proc, line, port):
        with Browser(browser) as page:
            page.open(f"http://127.0.0.1:{port}/")
            text = page.wait_for_text(TAB_NAMES, timeout=40)
            if not all(name in text for name in TAB_NAMES):
                shot = page.screenshot(tmp_path / "page.png")
                pytest.fail(f"the app's tabs did not appear in the page (screenshot {shot}); its text: {text!r}")
            assert "recipe" in text  # the Train tab's form: the app itself, not only its tab bar
            assert _children(proc.pid), "the page's app is no child of the server"
        # The page closed: the server asks its app to quit, and none is left behind.
        deadline = time.monotonic() + 15
        while _children(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _children(proc.pid)


def _children(pid: int) -> list[int]:
    """The pids whose parent is `pid` (Linux's /proc; empty elsewhere)."""
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                with contextlib.suppress(OSError), open(f"/proc/{entry.name}/stat") as stat:
                    if int(stat.read().rpartition(")")[2].split()[1]) == pid:
                        found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_a_port_in_use_is_one_sentence():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "minigpt_tui", "--serve", "--port", str(port)],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"minigpt-tui: cannot listen on 127.0.0.1:{port} (") and result.stderr.count("\n") == 1
