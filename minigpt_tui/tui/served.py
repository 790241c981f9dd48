"""The app as a web page (`minigpt-tui --serve`, cli/serve.py): textual-serve starts one app per
browser tab, which draws into the page through its stdin and stdout. Such an app must end when
its server does: the server asks it to on a clean stop, but a server that is killed leaves it
reading a closed pipe, on and on. So the served app watches its server (named by SERVED_BY_ENV)
and exits once it is gone; a run it was training then saves a checkpoint and stops, as it does
when the app is closed."""

from __future__ import annotations

import os
import threading
import time

SERVED_BY_ENV = "MINIGPT_TUI_SERVED_BY"  # the pid of the `minigpt-tui --serve` that started this app
CHECK_S = 1.0


def watch_server(app, check_s: float = CHECK_S) -> threading.Thread | None:
    """When this process was started by `minigpt-tui --serve`, a daemon thread that exits `app`
    once the server is gone; None otherwise."""
    value = os.environ.pop(SERVED_BY_ENV, "")  # (not passed on to the app's own children)
    if not value.isdigit():
        return None
    server = int(value)
    direct = os.getppid() == server  # (the server starts `exec python -m minigpt_tui`: its child)

    def gone() -> bool:
        if direct:
            return os.getppid() != server  # an orphan is adopted by another process at once
        try:
            os.kill(server, 0)
        except ProcessLookupError:
            return True
        except OSError:
            pass
        return False

    def watch() -> None:
        while not gone():
            time.sleep(check_s)
        for _ in range(100):  # (the app may not be running yet)
            try:
                app.call_from_thread(app.exit, 0)
                return
            except RuntimeError:
                time.sleep(0.1)
            except Exception:
                return

    thread = threading.Thread(target=watch, name="served-by", daemon=True)
    thread.start()
    return thread
