"""Exceptions a person can act on. Each names the place: a byte offset in a recording, a line in a rule file."""

from __future__ import annotations


class DyntelError(Exception):
    """Base of every error dyntel reports to its user."""


class DecodeError(DyntelError):
    """Bytes that do not hold what their format says. `offset` is the byte offset in the recording."""

    def __init__(self, message: str, offset: int | None = None, path: str | None = None) -> None:
        self.message = message
        self.offset = offset
        self.path = path
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
        return DecodeError(self.message, offset if self.offset is None else offset + self.offset, path or self.path)


class UnsupportedFormat(DyntelError):
    """A file that no reader recognizes."""
