"""The file a capture writes through: it enforces the action's deadline and byte budget on every write.

Dump writers plan their size so as to stay under the budget; this is the backstop that makes "never more than
max_size, never past the timeout" hold whatever a writer does. A write past the deadline raises TimeoutError,
which unwinds the writer out of its `frozen()` block, so the target is released at once.
"""

from __future__ import annotations

import io
import time
from typing import BinaryIO, cast

from dyntel.capture.errors import CaptureError


class BudgetExceeded(CaptureError):
    pass


class _Guard(io.RawIOBase):
    def __init__(self, raw: io.RawIOBase, deadline: float | None, limit: int | None) -> None:
        self._raw = raw
        self._deadline = deadline
        self._limit = limit
        self.high = 0  # the furthest byte written

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise TimeoutError("the capture ran past its timeout and was stopped; the target was released")
        view = memoryview(cast(bytes, b))
        pos = self._raw.tell()
        if self._limit is not None and pos + view.nbytes > self._limit:
            raise BudgetExceeded(f"the capture would pass its size budget of {self._limit} bytes")
        n = self._raw.write(view)
        if n is None:
            n = 0
        self.high = max(self.high, pos + n)
        return n

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def close(self) -> None:  # the owner of the raw file closes it
        super().close()


def guarded(file: BinaryIO, *, deadline: float | None, limit: int | None) -> BinaryIO:
    """A buffered writer over `file`'s descriptor that checks `deadline` and `limit` (bytes) on every flush."""
    raw = getattr(file, "raw", None)
    if not isinstance(raw, io.RawIOBase):
        raise TypeError("guarded() needs a file opened in binary buffered mode")
    file.flush()
    return cast(BinaryIO, io.BufferedWriter(_Guard(raw, deadline, limit), buffer_size=1 << 20))
