"""One ETW event record as the ETL reader and the live ETW session hand it to `decode_etw_event`: extended data
items (the TraceLogging schema, provider traits, stacks, related activity) and the user data.

Input: pointer size (1 byte: 4 when odd, else 8), item count (1 byte), that many items of (uint16 type, uint16
size, bytes), then the user data. Documented outcomes: an Event that can be shown as JSON and forwarded as OTLP,
or DecodeError with an offset inside the user data.

    python -m fuzz.tracelogging [libFuzzer flags] [corpus dirs]     fuzz
    python -m fuzz.tracelogging --run FILE...                          run inputs once
"""

from __future__ import annotations

import struct
from typing import Any

from fuzz.common import Finding, entry

MODULES = ["dyntel.decoders.tracelogging", "dyntel.event_json", "dyntel.otel.otlp_events"]


def encode(header: Any, extended: Any, user_data: bytes, pointer_size: int) -> bytes:
    """The input that reproduces one call (the header is fixed by the harness; seeds keep the rest)."""
    out = bytes([1 if pointer_size == 4 else 0, len(extended)])
    for ext_type, data in extended:
        out += struct.pack("<HH", ext_type, len(data)) + bytes(data)
    return out + bytes(user_data)


def decode(data: bytes) -> tuple[list[tuple[int, bytes]], bytes, int] | None:
    if len(data) < 2:
        return None
    pointer_size = 4 if data[0] & 1 else 8
    pos = 2
    extended = []
    for _ in range(data[1]):
        if pos + 4 > len(data):
            return None
        ext_type, size = struct.unpack_from("<HH", data, pos)
        extended.append((ext_type, data[pos + 4 : pos + 4 + size]))
        pos += 4 + size
    return extended, data[pos:], pointer_size


def run(data: bytes) -> None:
    from dyntel.decoders.etw_header import EtwEventHeader
    from dyntel.decoders.tracelogging import TypeCache, decode_etw_event
    from dyntel.errors import DecodeError
    from dyntel.event_json import format_event
    from fuzz.eventheader import _forward

    parts = decode(data)
    if parts is None:
        return
    extended, user_data, pointer_size = parts
    header = EtwEventHeader(b"\x01" * 16, 7, 1, 11, 4, 0, 3, 0x10, 1_700_000_000_000_000_000, 10, 11, 0, b"\0" * 16,
                            0, 0)
    try:
        event = decode_etw_event(header, extended, user_data, pointer_size=pointer_size, types=TypeCache())
    except DecodeError as e:
        if e.offset is None or not 0 <= e.offset <= len(user_data):
            raise Finding(f"DecodeError at offset {e.offset}, outside the {len(user_data)}-byte user data: {e}") from e
        return
    event.fields  # noqa: B018 - building the mapping must not fail
    format_event(event)
    _forward(event)


def TestOneInput(data: bytes) -> None:
    run(data)


if __name__ == "__main__":
    entry(run, MODULES)
