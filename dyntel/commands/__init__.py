"""The verbs of the `dyntel` command line, one module each.

A verb module has `register(subparsers)`, which adds its parser and sets `func` to a function taking the parsed
arguments and returning the exit status. Adding a verb is a new module and its name in `dyntel.cli.VERBS`.
"""

from __future__ import annotations

import io
import sys
from typing import TextIO


def utf8_out(path: str | None) -> TextIO:
    """Standard output (or a file) for event text: UTF-8, with undecodable bytes that events keep as surrogate
    escapes given back as the original bytes."""
    buffer = open(path, "wb") if path else sys.stdout.buffer  # noqa: SIM115 - the caller closes it
    return io.TextIOWrapper(buffer, encoding="utf-8", errors="surrogateescape", newline="\n",
                            write_through=False, line_buffering=False)
