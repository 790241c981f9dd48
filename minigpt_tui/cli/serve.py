"""`minigpt-tui --serve [--host H] [--port P] [--run RUN]`: the app as a web page, through textual-serve.

Each browser tab that opens the page starts its own copy of the app (`python -m minigpt_tui`,
this Python, the same environment: MINIGPT_TUI_HOME and all), which draws into the page
instead of a terminal; training, watching and sampling run in that app's child processes
exactly as in a terminal. Closing the tab ends that app (a run it trains saves a checkpoint and stops,
as when a terminal closes); a run trained headless goes on and can be watched from the page.

The page has no login: whoever can open the URL uses the app, the data home and the machine's
GPU as the user who started it. So it binds to 127.0.0.1 unless --host says otherwise, and
the way to reach it from another machine is an SSH tunnel (`ssh -L 8000:127.0.0.1:8000 HOST`,
then http://127.0.0.1:8000 on your own machine).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import shlex
import signal
import sys

from minigpt_tui.cli.common import USER_ERROR

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
SHUTDOWN_S = 10.0  # on Ctrl+C: how long the open pages' apps get to quit
NO_LOGIN = ("the page has no login: anyone who can reach it uses the app, your runs and this machine "
            "as you. From another machine, keep the default host and use an SSH tunnel "
            f"(ssh -L {DEFAULT_PORT}:127.0.0.1:{DEFAULT_PORT} HOST, then open http://127.0.0.1:{DEFAULT_PORT}).")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {text!r}")
    return value


def add_arguments(parser, mode) -> None:
    """The --serve mode flag (in the mutually exclusive `mode` group) and its options."""
    mode.add_argument("--serve", action="store_true",
                      help=f"serve the app as a web page (textual-serve) at http://{DEFAULT_HOST}:{DEFAULT_PORT}; "
                           f"THE PAGE HAS NO LOGIN: from another machine use an SSH tunnel "
                           f"(ssh -L {DEFAULT_PORT}:127.0.0.1:{DEFAULT_PORT} HOST), not --host")
    s = parser.add_argument_group("serving (with --serve; also --run)")
    s.add_argument("--host", metavar="HOST",
                   help=f"the address to listen on (default {DEFAULT_HOST}, this machine only); any other "
                        "lets every machine that can reach it use the app, with no login")
    s.add_argument("--port", type=_port, metavar="PORT", help=f"the port to listen on (default {DEFAULT_PORT})")


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name other than localhost: it may be any address
        return False


def cmd_serve(args) -> int:
    host = args.host or DEFAULT_HOST
    port = args.port or DEFAULT_PORT
    try:
        from textual_serve.server import Server
    except ImportError:
        print("minigpt-tui: --serve needs textual-serve, which this installation lacks; "
              "`pip install -e .` (or `pip install textual-serve`) brings it.", file=sys.stderr)
        return USER_ERROR
    command = [sys.executable, "-m", "minigpt_tui"]
    if args.run:
        from minigpt_tui.core.runs.run_dir import RunDir

        command += ["--run", str(RunDir.resolve(args.run).path)]  # a bad name: an error now, not in the page

    from minigpt_tui.tui.served import SERVED_BY_ENV  # (torch- and textual-free)

    # Each app is this process's own child (exec: no shell between), told who serves it, so that
    # it ends with the server even when the server is killed (tui/served.py).
    os.environ[SERVED_BY_ENV] = str(os.getpid())
    server = _server_class(Server)("exec " + shlex.join(command), host=host, port=port, title="minigpt-tui")
    try:
        server.serve()
    except OSError as err:  # the port is taken, the address is not this machine's
        print(f"minigpt-tui: cannot listen on {host}:{port} ({err.strerror or err}); "
              "choose another with --port or --host.", file=sys.stderr)
        return USER_ERROR
    return 0


def _server_class(Server):
    """textual-serve's Server, saying the URL once it listens (in place of its banner) and making
    the page's links from the address the browser used."""

    class AppServer(Server):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.sessions: set[asyncio.Task] = set()  # the tasks serving open pages

        async def on_startup(self, app) -> None:
            pass  # (the library's banner: the URL is said once the port is bound, see serve)

        def announce(self) -> None:
            print(f"minigpt-tui: serving the app at {url_of(self.host, self.port)} (Ctrl+C stops)", flush=True)
            if not is_loopback(self.host):
                print(f"minigpt-tui: warning: listening on {self.host}, not on this machine only; {NO_LOGIN}",
                      file=sys.stderr, flush=True)

        def serve(self, debug: bool = False) -> None:
            """The library's serve, but the URL is printed only once the port is bound."""
            from aiohttp import web

            self.debug = debug
            self.initialize_logging()
            logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # (a line per file fetched)
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, self.request_exit)
                except (NotImplementedError, RuntimeError):
                    pass
            web.run_app(self._make_app(), host=self.host, port=self.port, handle_signals=False, loop=loop,
                        print=lambda *_: self.announce(), shutdown_timeout=SHUTDOWN_S)

        async def handle_websocket(self, request):
            task = asyncio.current_task()
            self.sessions.add(task)
            try:
                return await super().handle_websocket(request)
            finally:
                self.sessions.discard(task)

        async def on_shutdown(self, app) -> None:
            # Each open page's app is asked to quit (cancelling its handler does that) and waited
            # for; otherwise the server would wait for every browser tab to close first.
            sessions = list(self.sessions)
            for task in sessions:
                task.cancel()
            if sessions:
                await asyncio.wait(sessions, timeout=SHUTDOWN_S)

        async def handle_index(self, request):
            # The page's websocket and static URLs are made from the address the browser used (an
            # SSH tunnel's local port, the machine's name), not from the address listened on.
            self.public_url = f"{request.scheme}://{request.host}"
            return await super().handle_index(request)

    return AppServer
