"""Exceptions a person can act on. Each names the place: a byte offset in a recording, a line in a rule file."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Position:
    """Where something was written: file, 1-based line and column."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class DyntelError(Exception):
    """Base of every error dyntel reports to its user."""


class DecodeError(DyntelError):
    """Bytes that do not hold what their format says. `offset` is the byte offset in the recording; `reason`, where
    the decoder gives one, a short fixed label of what is wrong (counted by reason in the metrics)."""

    def __init__(self, message: str, offset: int | None = None, path: str | None = None, *,
                 reason: str | None = None) -> None:
        self.message = message
        self.offset = offset
        self.path = path
        self.reason = reason
        super().__init__(self._text())

    def _text(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path + ":"
        if self.offset is not None:
            where += f"byte {self.offset}:"
        return f"{where} {self.message}" if where else self.message

    def at(self, offset: int, path: str | None = None) -> DecodeError:
        """The same error placed at a recording offset (decoders know offsets within an event only)."""
        return DecodeError(self.message, offset if self.offset is None else offset + self.offset, path or self.path,
                           reason=self.reason)


class UnsupportedFormat(DyntelError):
    """A file that no reader recognizes."""


# The fuzz harnesses (fuzz/) set this: a decoder's catch-all for a defect (an IndexError or struct.error on bad
# bytes, counted as one bad record so that a live source keeps running) then re-raises it, so that the fuzzer
# reports the defect instead of counting it.
RAISE_DEFECTS = False


def defect(e: BaseException) -> None:
    """Called by a catch-all with the exception it caught: re-raises it under RAISE_DEFECTS, else nothing."""
    if RAISE_DEFECTS:
        raise e
