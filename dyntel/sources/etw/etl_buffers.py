"""Walking the buffers of an ETL file.

An ETL file is a sequence of buffers, each a 72-byte WMI_BUFFER_HEADER and then records up to the buffer's filled
size. In a plain file every buffer has the session's buffer size (BufferSize) and its records end at SavedOffset;
in a compressed one (BufferFlag 0x40, written by a merge or relog with compression) BufferSize is the buffer's size
on disk, header included, and SavedOffset the size of the buffer once its plain-LZ77 payload is decompressed.

A damaged header ends the walk (nothing says where the next buffer starts); a buffer cut short by the end of the
file gives its records that are whole. Both are problems with the byte offset of the buffer.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from dyntel.sources import SourceStats
from dyntel.sources.etw.etl_xpress import XpressError, decompress

HEADER_SIZE = 72
FLAG_PROC_INDEX = 0x20
FLAG_COMPRESSED = 0x40
MAX_DECOMPRESSED = 64 << 20  # ETW buffers are at most 16 MB; anything larger is a damaged header

# BufferSize, SavedOffset, CurrentOffset, ReferenceCount, TimeStamp, SequenceNumber, Clock/Frequency,
# ClientContext (ProcessorNumber, Alignment, LoggerId), State, Offset, BufferFlag, BufferType
_HEADER = struct.Struct("<IIIiqqQBBHIIHH")


@dataclass(slots=True)
class Buffer:
    """The records of one buffer: `data[start:end]`. For a plain buffer `data` is the whole file, so a record's
    position is its file offset; for a compressed one it is the decompressed buffer and positions are relative."""

    file_offset: int
    data: bytes
    start: int
    end: int
    processor: int
    compressed: bool
    buffer_type: int

    def where(self, pos: int) -> tuple[int, str]:
        """A record's file offset and, for a compressed buffer, where it sits once decompressed."""
        if self.compressed:
            return self.file_offset, f" (decompressed buffer offset {pos + HEADER_SIZE})"
        return pos, ""


def walk_buffers(data: bytes, stats: SourceStats) -> Iterator[Buffer]:
    size = len(data)
    pos = 0
    while pos < size:
        if size - pos < HEADER_SIZE:
            stats.problem(pos, f"{size - pos} bytes after the last buffer, too few for a buffer header")
            return
        (buffer_size, saved, _cur, _ref, _ts, _seq, _clock, proc_lo, proc_hi, _logger, _state, _offset, flags,
         buffer_type) = _HEADER.unpack_from(data, pos)
        processor = proc_lo | proc_hi << 8 if flags & FLAG_PROC_INDEX else proc_lo
        if buffer_size < HEADER_SIZE:
            stats.problem(pos, f"buffer size {buffer_size} is smaller than its header; the rest of the file is "
                               "not read")
            return
        stop = pos + buffer_size
        if stop > size:
            stats.problem(pos, f"buffer of {buffer_size} bytes runs past the end of the file ({size - pos} bytes "
                               "left); reading the records that are whole")
            stop = size
        if flags & FLAG_COMPRESSED:
            if not HEADER_SIZE <= saved <= MAX_DECOMPRESSED:
                stats.problem(pos, f"compressed buffer with an uncompressed size of {saved} bytes; skipped")
                stats.skip("damaged buffer")
            else:
                try:
                    plain = decompress(data[pos + HEADER_SIZE:stop], saved - HEADER_SIZE)
                except XpressError as e:
                    stats.problem(pos, f"compressed buffer does not decompress: {e}; skipped")
                    stats.skip("damaged buffer")
                else:
                    if len(plain) < saved - HEADER_SIZE:
                        stats.problem(pos, f"compressed buffer decompresses to {len(plain) + HEADER_SIZE} bytes, "
                                           f"{saved} expected; reading the records that are whole")
                    yield Buffer(pos, plain, 0, len(plain), processor, True, buffer_type)
        else:
            end = pos + saved
            if saved < HEADER_SIZE or end > pos + buffer_size:
                stats.problem(pos, f"buffer filled to {saved} bytes of {buffer_size}; reading to its end")
                end = pos + buffer_size
            yield Buffer(pos, data, pos + HEADER_SIZE, min(end, stop), processor, False, buffer_type)
        pos += buffer_size
