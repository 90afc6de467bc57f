"""The perf.data record stream below the record loop (sources.perf.data): a recording mapped whole, the header of a
record read with a sample's time, the search for the next record boundary after a bad header, and a pipe's window
refilled from the stream.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import os
import stat
import struct
from collections.abc import Callable
from typing import Any, BinaryIO

from dyntel.sources.perf import abi

MAX_RECORD = 0xFFFF  # perf_event_header.size is a u16


def whole_file(stream: BinaryIO, closers: list[Callable[[], None]]) -> Any:
    """The recording as one buffer when it can be had without reading a pipe: a mapped regular file, or the
    bytes of an in-memory stream. None for pipes (read as a stream instead)."""
    if isinstance(stream, io.BytesIO):
        return stream.getvalue()
    try:
        fd = stream.fileno()
        st = os.fstat(fd)
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    if st.st_size == 0:
        return b""
    try:
        mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        try:
            stream.seek(0)
            return stream.read()
        except OSError:
            return None
    closers.append(mm.close)
    with contextlib.suppress(AttributeError, OSError):  # a hint only, and not on every platform
        mm.madvise(mmap.MADV_SEQUENTIAL)
    return mm


def resync(buf: Any, pos: int, end: int, header: Callable[..., tuple[int, int]], eof: bool) -> int | None:
    """The next offset after a bad record header where two plausible records follow each other.

    A record is at most 64 KiB, so the search looks no further than that. In pipe mode, before the end of the
    stream, the window must hold the whole search range; otherwise None asks for more data first.
    """
    limit = pos + 8 + MAX_RECORD
    if not eof and end < limit + 16:
        return None
    known = abi.RECORD_NAMES
    stop = min(limit, end - 8)
    for cand in range(pos + 1, stop + 1):
        rtype, size = header(buf, cand)
        if rtype not in known or size < 8 or cand + size > end:
            continue
        after = cand + size
        if after == end:
            return cand
        if after + 8 <= end:
            t2, s2 = header(buf, after)
            if t2 in known and s2 >= 8 and after + s2 <= end:
                return cand
    return None


def refill(read: Callable[[int], bytes], tail: bytes, pos: int, header: Callable[..., tuple[int, int]],
           u32: Callable[..., tuple[int]], u64: Callable[..., tuple[int]], chunk: int) -> tuple[bytes, bool] | None:
    """`tail` followed by more of the stream: (buffer, stream ended), or None when the stream has ended already.

    Reads what the stream has now (up to `chunk` bytes) rather than waiting for a full chunk, so that a live
    `perf record -o -` is decoded as it comes. Two cases gather more before joining, so that the bytes copied stay
    proportional to the stream's size: a tail that is already large (a long round kept for sorting) grows at least
    twofold, and a record bigger than what is at hand (tracing data can be megabytes) is read whole.
    """
    first = read(chunk)
    if not first:
        return None
    pieces = [tail, first]
    have = len(tail) + len(first)
    want = 2 * len(tail) if len(tail) > chunk else 0
    head = (tail[pos : pos + 16] + first[:16])[:16]  # the first unread record's header
    want = max(want, pos + _record_size(head, header, u32, u64))
    eof = False
    while have < want:
        more = read(max(chunk, want - have))
        if not more:
            eof = True
            break
        pieces.append(more)
        have += len(more)
    return b"".join(pieces), eof


def _record_size(head: bytes, header: Callable[..., tuple[int, int]], u32: Callable[..., tuple[int]],
                 u64: Callable[..., tuple[int]]) -> int:
    """Bytes the record starting `head` needs, counting data that follows some records (8 without a header)."""
    if len(head) < 8:
        return 8
    rtype, size = header(head, 0)
    if rtype == abi.RECORD_HEADER_TRACING_DATA and size >= 12 and len(head) >= 12:
        return int(size + u32(head, 8)[0])
    if rtype == abi.RECORD_AUXTRACE and size >= 16 and len(head) >= 16:
        return int(size + u64(head, 8)[0])
    return max(size, 8)


def header_time(big_endian: int, time_off: int) -> Callable[[Any, int], tuple[int, int, int]]:
    """unpack_from for (type, size, u64 at time_off) of a record; the u64 is the time when the record is a sample."""
    at = max(time_off, 8)
    fmt = (">" if big_endian else "<") + f"I2xH{at - 8}xQ"
    unpack: Callable[[Any, int], tuple[int, int, int]] = struct.Struct(fmt).unpack_from
    return unpack
