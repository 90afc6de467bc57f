"""Plain LZ77 ("XPRESS", MS-XCA section 2.4) decompression, the format of the compressed buffers Windows writes in
ETL files (merged or relogged with compression: WMI_BUFFER_HEADER.BufferFlag 0x40).

Pure Python, so it works token by token rather than byte by byte: a run of literal flag bits is one slice copy, and
a match is one slice copy (or a repeated pattern when it overlaps its own output).
"""

from __future__ import annotations


class XpressError(ValueError):
    """Compressed bytes that do not decode; `pos` is the offset in the compressed input."""

    def __init__(self, pos: int, message: str) -> None:
        super().__init__(f"{message} (compressed byte {pos})")
        self.pos = pos


def decompress(data: bytes | memoryview, limit: int) -> bytes:
    """The decompressed bytes of `data`, at most `limit` of them (the buffer's uncompressed size)."""
    src = bytes(data)
    n = len(src)
    out = bytearray()
    pos = 0
    flags = 0
    count = 0
    half = 0  # position of the byte whose upper nibble the next 7-length match uses; 0 when none pending
    while len(out) < limit:
        if count == 0:
            if n - pos < 4:
                if pos >= n:
                    break
                raise XpressError(pos, "flag word cut short")
            flags = int.from_bytes(src[pos:pos + 4], "little")
            pos += 4
            count = 32
        # Copy the run of literals (zero flag bits) below the current bit in one go.
        remaining = flags & ((1 << count) - 1)
        literals = count - remaining.bit_length()
        if literals:
            take = min(literals, n - pos, limit - len(out))
            out += src[pos:pos + take]
            pos += take
            count -= literals
            if take < literals:
                break  # input (or output) ends among literals: the normal end of a buffer
            continue
        count -= 1
        if n - pos < 2:
            break  # a set flag bit with no input left is the end marker
        token = src[pos] | src[pos + 1] << 8
        pos += 2
        length = token & 7
        offset = (token >> 3) + 1
        if length == 7:
            if half == 0:
                if pos >= n:
                    raise XpressError(pos, "match length cut short")
                length = src[pos] & 15
                half = pos
                pos += 1
            else:
                length = src[half] >> 4
                half = 0
            if length == 15:
                if pos >= n:
                    raise XpressError(pos, "match length cut short")
                length = src[pos]
                pos += 1
                if length == 255:
                    if n - pos < 2:
                        raise XpressError(pos, "match length cut short")
                    length = src[pos] | src[pos + 1] << 8
                    pos += 2
                    if length == 0:
                        if n - pos < 4:
                            raise XpressError(pos, "match length cut short")
                        length = int.from_bytes(src[pos:pos + 4], "little")
                        pos += 4
                    if length < 22:
                        raise XpressError(pos, f"match length {length} below its minimum")
                    length -= 22
                length += 15
            length += 7
        length += 3
        start = len(out) - offset
        if start < 0:
            raise XpressError(pos - 2, f"match offset {offset} before the start of the output")
        if offset >= length:
            out += out[start:start + length]
        else:
            pattern = bytes(out[start:])
            out += (pattern * (length // offset + 1))[:length]
    if len(out) > limit:
        del out[limit:]
    return bytes(out)
