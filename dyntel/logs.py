"""dyntel's own log (the `dyntel.*` loggers: rule reloads, live source warnings, ETW sessions), configured once, by
`dyntel.cli.main`, from `--log-level`, else $DYNTEL_LOG_LEVEL, else the config file's `log.level`, else info.

Lines go to standard error as `dyntel.reload INFO: rules reloaded (...)`. The handler looks standard error up
when it writes (not when it is made), so a caller that swaps sys.stderr (tests, an in-process caller) gets them.
"""

from __future__ import annotations

import logging
import sys

LEVELS = ("debug", "info", "warning", "error")
DEFAULT_LEVEL = "info"
LOGGER = "dyntel"
FORMAT = "%(name)s %(levelname)s: %(message)s"


class _Stderr(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def check_level(text: str) -> str:
    level = text.strip().lower()
    if level not in LEVELS:
        raise ValueError(f"log level {text!r}: write one of {', '.join(LEVELS)}")
    return level


def configure(level: str = DEFAULT_LEVEL) -> None:
    """Show the dyntel loggers' records at `level` and above on standard error (again: replaces the handler)."""
    logger = logging.getLogger(LOGGER)
    for h in list(logger.handlers):
        if isinstance(h, _Stderr):
            logger.removeHandler(h)
    handler = _Stderr()
    handler.setFormatter(logging.Formatter(FORMAT))
    logger.addHandler(handler)
    logger.setLevel(check_level(level).upper())
