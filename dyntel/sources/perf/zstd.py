"""zstd-compressed perf.data (`perf record -z`): PERF_RECORD_COMPRESSED records expanded back into the records perf
compressed, so that both record loops (the Python one and the native writer) read a plain record stream.

perf compresses what it copies out of each ring buffer into COMPRESSED records (type 81; COMPRESSED2, type 83, in
newer perf adds a u64 data size and pads the record), each holding zstd frames or parts of one. Decompressed, the
payloads of consecutive COMPRESSED records form one continuous stream of ordinary records (a record can start in one
COMPRESSED record and end in the next, where a ring buffer wrapped), and perf's own reader keeps one decompression
context for the whole file. So does this module: the expanded stream is every record as it is, except that each
COMPRESSED record is replaced by its decompressed bytes.

Offsets: a problem found later in the expanded stream is reported at the place it came from, a file offset, and for
a record that came out of zstd data, the offset of its COMPRESSED record and the byte within the decompressed stream
(`Expansion.locate`). A COMPRESSED record that does not decompress is a counted problem at its offset; the
decompressor starts afresh at the next one.

Uses the `zstandard` package (a dependency of dyntel).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

from dyntel.sources.perf import abi

RECORD_COMPRESSED2 = 83  # perf 6.x: header, u64 data_size, zstd data, padding to 8 bytes

COMPRESSED_TYPES = frozenset({abi.RECORD_COMPRESSED, RECORD_COMPRESSED2})

Problem = Callable[[int, str], None]


class Expansion:
    """Where each part of the expanded stream came from, and the zstd context carried across records."""

    def __init__(self, big_endian: bool, problem: Problem) -> None:
        self._problem = problem
        self._u64 = abi.U64[int(big_endian)].unpack_from
        self._decompressor: Any = None
        self._failed = False
        # Parallel lists, one entry per change of origin: where in the output it starts, the file offset of the
        # first byte (plain) or of its COMPRESSED record, and for zstd data the decompressed stream's byte there.
        self._out: list[int] = [0]
        self._file: list[int] = [0]
        self._dec: list[int] = [-1]  # -1: plain bytes
        self.decompressed = 0  # bytes the zstd stream gave so far
        self.records = 0  # COMPRESSED records read

    def plain(self, out_pos: int, file_pos: int) -> None:
        """Plain records start at `out_pos` of the output, copied from `file_pos`."""
        if self._dec[-1] == -1 and self._file[-1] + (out_pos - self._out[-1]) == file_pos:
            return  # continues the plain run before it
        self._mark(out_pos, file_pos, -1)

    def _mark(self, out_pos: int, file_pos: int, dec: int) -> None:
        if self._out[-1] == out_pos:
            self._out.pop()
            self._file.pop()
            self._dec.pop()
        self._out.append(out_pos)
        self._file.append(file_pos)
        self._dec.append(dec)

    def compressed(self, record: Any, rtype: int, out_pos: int, file_pos: int) -> bytes:
        """The decompressed bytes of one COMPRESSED record (`record`: the whole record, header included), which
        go to the output at `out_pos`. b"" (and a counted problem) when it does not decompress."""
        self.records += 1
        size = len(record)
        if rtype == RECORD_COMPRESSED2:
            if size < 16:
                self._problem(file_pos, f"COMPRESSED2 record of {size} bytes has no room for its data size; skipped")
                return b""
            data_size = self._u64(record, 8)[0]
            if data_size > size - 16:
                self._problem(file_pos, f"COMPRESSED2 record says {data_size} bytes of zstd data but holds "
                                        f"{size - 16}; skipped")
                return b""
            payload = bytes(record[16 : 16 + data_size])
        else:
            payload = bytes(record[8:])
        try:
            import zstandard
        except ImportError:
            if not self._failed:
                self._problem(file_pos, "the recording is zstd-compressed (perf record -z) and the zstandard "
                                        "package is not installed (pip install zstandard); its compressed records "
                                        "are skipped")
            self._failed = True
            return b""
        if self._decompressor is None:
            self._decompressor = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
        try:
            plain: bytes = self._decompressor.decompress(payload)
        except zstandard.ZstdError as e:
            self._problem(file_pos, f"COMPRESSED record of {size} bytes: its zstd data does not decompress ({e}); "
                                    "the records in it are lost")
            self._decompressor = None  # the next record starts afresh (perf writes whole frames per ring copy)
            return b""
        if plain:
            self._mark(out_pos, file_pos, self.decompressed)
            self.decompressed += len(plain)
        return plain

    def locate(self, out_pos: int) -> tuple[int, str]:
        """The file offset of output byte `out_pos`, and for zstd data a note saying where in it."""
        i = bisect.bisect_right(self._out, out_pos) - 1
        dec = self._dec[i]
        if dec == -1:
            return self._file[i] + out_pos - self._out[i], ""
        return self._file[i], (f" (in the zstd data of the COMPRESSED record at byte {self._file[i]}: "
                               f"decompressed byte {dec + out_pos - self._out[i]})")


def record_extent(buf: Any, pos: int, end: int, header: Callable[..., tuple[int, int]],
                  u32: Callable[..., tuple[int]], u64: Callable[..., tuple[int]]) -> int:
    """Bytes of the record at `pos` with the data that follows some records (tracing data, AUX data); 0 when its
    header is unreadable (under 8 bytes left, or a size under 8)."""
    if end - pos < 8:
        return 0
    rtype, size = header(buf, pos)
    if size < 8:
        return 0
    if rtype == abi.RECORD_HEADER_TRACING_DATA and size >= 12 and end - pos >= 12:
        return int(size + u32(buf, pos + 8)[0])
    if rtype == abi.RECORD_AUXTRACE and size >= 16 and end - pos >= 16:
        return int(size + u64(buf, pos + 8)[0])
    return int(size)


def expand_buffer(buf: Any, start: int, end: int, big_endian: bool, problem: Problem,
                  out_base: int = 0) -> tuple[bytes, Expansion]:
    """The records of buf[start:end] with every COMPRESSED record replaced by its records, to be read at offset
    `out_base` of the reader's buffer.

    Plain runs are copied as they are; where a record's header cannot be read, the rest is copied as it is, for the
    record loop to report and resynchronise as it does for any file."""
    be = int(big_endian)
    header = abi.RECORD_HEADER[be].unpack_from
    u32 = abi.U32[be].unpack_from
    u64 = abi.U64[be].unpack_from
    exp = Expansion(big_endian, problem)
    pieces: list[bytes] = []
    out = out_base
    run = start  # start of the plain run not yet copied
    pos = start
    while pos < end:
        n = record_extent(buf, pos, end, header, u32, u64)
        if n == 0 or pos + n > end:
            break
        rtype = header(buf, pos)[0]
        if rtype in COMPRESSED_TYPES:
            if run < pos:
                exp.plain(out, run)
                pieces.append(bytes(buf[run:pos]))
                out += pos - run
            plain = exp.compressed(buf[pos : pos + n], rtype, out, pos)
            pieces.append(plain)
            out += len(plain)
            run = pos + n
        pos += n
    if run < end:
        exp.plain(out, run)
        pieces.append(bytes(buf[run:end]))
    return b"".join(pieces), exp


def announces_compression(buf: Any, pos: int, end: int, big_endian: bool) -> bool | None:
    """Pipe mode: whether the metadata records at the front (before FINISHED_INIT or the first sample) include the
    HEADER_COMPRESSED feature, as perf writes it with -z; None when buf[pos:end] ends before that is known."""
    be = int(big_endian)
    header = abi.RECORD_HEADER[be].unpack_from
    u32 = abi.U32[be].unpack_from
    u64 = abi.U64[be].unpack_from
    while True:
        n = record_extent(buf, pos, end, header, u32, u64)
        if n == 0:
            return False if end - pos >= 8 else None  # a bad size: the loop reports it; nothing announced
        rtype = header(buf, pos)[0]
        if rtype == abi.RECORD_HEADER_FEATURE and end - pos >= 16 and u64(buf, pos + 8)[0] == abi.HEADER_COMPRESSED:
            return True
        if rtype in COMPRESSED_TYPES:
            return True
        if rtype in (abi.RECORD_SAMPLE, abi.RECORD_FINISHED_INIT, abi.RECORD_FINISHED_ROUND):
            return False
        if pos + n >= end:
            return None
        pos += n


class ExpandingReader:
    """A pipe-mode stream (after its 16-byte header) read as `read(n)`, with COMPRESSED records expanded.

    Returns whole records as soon as the stream has them (a live `perf record -z -o -` decodes as it comes), and
    b"" only at the end of the stream; a trailing partial record is passed on as it is for the record loop to
    report as truncated."""

    def __init__(self, read: Callable[[int], bytes], big_endian: bool, problem: Problem, first_offset: int,
                 chunk: int) -> None:
        be = int(big_endian)
        self._header = abi.RECORD_HEADER[be].unpack_from
        self._u32 = abi.U32[be].unpack_from
        self._u64 = abi.U64[be].unpack_from
        self._read = read
        self._chunk = chunk
        self._pending = b""
        self._file_pos = first_offset  # file offset of _pending[0]
        self._out_pos = first_offset  # output offset of the next byte returned (the loop's offsets)
        self._eof = False
        self._big_endian = big_endian
        self._expanding: bool | None = None  # None until the stream's metadata says whether it is compressed
        self.expansion = Expansion(big_endian, problem)

    def read(self, n: int) -> bytes:
        if self._expanding is False:
            return self._read(n)  # not compressed: the stream as it is
        if self._expanding is None:
            while (known := announces_compression(self._pending, 0, len(self._pending), self._big_endian)) is None:
                more = self._read(max(n, self._chunk))
                if not more:
                    known = False
                    break
                self._pending += more
            self._expanding = known
            if not known:
                out, self._pending = self._pending, b""
                return out if out else self._read(n)
        while True:
            out = self._take()
            if out or self._eof:
                return out
            more = self._read(max(n, self._chunk))
            if not more:
                self._eof = True
                out = self._pending  # a partial record: the loop reports the truncation
                self._pending = b""
                if out:
                    self.expansion.plain(self._out_pos, self._file_pos)
                    self._out_pos += len(out)
                return out
            self._pending = self._pending + more if self._pending else more

    def _take(self) -> bytes:
        """The complete records at the front of what was read, expanded."""
        buf = self._pending
        end = len(buf)
        pieces: list[bytes] = []
        pos = run = 0
        while pos < end:
            n = record_extent(buf, pos, end, self._header, self._u32, self._u64)
            if n == 0:
                if end - pos >= 8:  # a size under 8: passed on for the loop to report and resynchronise
                    pos = end
                break
            if pos + n > end:
                break
            rtype = self._header(buf, pos)[0]
            if rtype in COMPRESSED_TYPES:
                if run < pos:
                    self._plain(pieces, buf, run, pos)
                plain = self.expansion.compressed(buf[pos : pos + n], rtype, self._out_pos, self._file_pos + pos)
                pieces.append(plain)
                self._out_pos += len(plain)
                run = pos + n
            pos += n
        if run < pos:
            self._plain(pieces, buf, run, pos)
        self._pending = buf[pos:]
        self._file_pos += pos
        return b"".join(pieces)

    def _plain(self, pieces: list[bytes], buf: bytes, start: int, stop: int) -> None:
        self.expansion.plain(self._out_pos, self._file_pos + start)
        pieces.append(buf[start:stop])
        self._out_pos += stop - start
