"""The app's debug log: what it cannot usefully say in a sentence goes to a file.

An error the user can act on is a notification on screen. Everything else (the
traceback of a bug, a failure of something optional such as the prompt check) is
logged to `paths.debug_log_file()` through the "minigpt_tui" logger, so that a bug
report can include it. Modules log with `logging.getLogger(__name__)`.

Set up once when the app starts: the file is opened at the first record (nothing is
written, and nothing opened, in a session without trouble), capped in size, and a
log that cannot be written is dropped rather than printed over the TUI or stopping it.
"""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler
from pathlib import Path

LOGGER_NAME = "minigpt_tui"
MAX_BYTES = 512 * 1024  # one full file and one backup: enough for a bug report, never a disk hog
BACKUPS = 1


class _DebugLogHandler(RotatingFileHandler):
    def handleError(self, record: logging.LogRecord) -> None:
        # The default prints to stderr, which is the screen the TUI draws on; a log
        # that cannot be written (read-only home, full disk) is not worth that.
        pass


def setup_debug_log(path: Path | None = None) -> Path | None:
    """Send the "minigpt_tui" logger to the debug log file; the file, or None when it cannot be used.

    Calling it again replaces the previous file handler (tests, or a second app in one process).
    """
    from minigpt_tui.core.paths import debug_log_file

    logger = logging.getLogger(LOGGER_NAME)
    for old in [h for h in logger.handlers if isinstance(h, (_DebugLogHandler, logging.NullHandler))]:
        logger.removeHandler(old)
        old.close()
    logger.setLevel(logging.INFO)
    logger.propagate = False  # never onto the terminal, whatever the root logger does
    target = Path(path) if path is not None else debug_log_file()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = _DebugLogHandler(target, maxBytes=MAX_BYTES, backupCount=BACKUPS,
                                                    encoding="utf-8", delay=True)
    except OSError:
        # Without a handler, logging's last resort would print to stderr (the TUI's screen).
        logger.addHandler(logging.NullHandler())
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    return target
