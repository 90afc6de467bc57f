"""The native EventHeader path (dyntel/_eventheader.c) against the Python decoder, which stays the reference.

Every event here goes through both: the values (type for type, NaN for NaN), the JSON members (byte for byte, with
and without field tags), and, where the Python decoder raises, the same error from the native decoder (it hands
such events to the Python decoder) and no JSON. Events come from the hand-built cases of test_eventheader (every
encoding and format, structs, arrays, tags), every truncation of them, both byte orders, and random metadata with
random payloads. Whole recordings are compared in test_decode_native.
"""

from __future__ import annotations

import math
import random
import struct
from typing import Any

import pytest
from support import native_module
from test_eventheader import CASES, STRUCT_CASES, event_bytes

from dyntel.decoders.eventheader import EventHeaderDecoder, TypeCache
from dyntel.decoders.eventheader_native import program
from dyntel.errors import DecodeError
from dyntel.event_json import values_writer
from dyntel.value_format import float32_text, float64_text

_eventheader = native_module("dyntel._eventheader")


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


def outcome(native: bool, data: bytes, end: int) -> tuple[str, Any]:
    decoder = EventHeaderDecoder(TypeCache(native=native))
    try:
        return "ok", decoder.decode("P_L5K1", data, 0, end)
    except DecodeError as e:
        return "error", (type(e).__name__, str(e), e.offset)


def compare(fields_meta: bytes, payload: bytes, big: bool, end: int | None = None) -> None:
    """Both paths on one event (cut at `end`): the same values or the same error, and the same JSON or none."""
    data = event_bytes(fields_meta, payload, big=big)
    end = len(data) if end is None else end
    native, python = outcome(True, data, end), outcome(False, data, end)
    assert native[0] == python[0], (native, python)
    if native[0] == "error":
        assert native[1] == python[1]
    else:
        assert same(list(native[1].values), list(python[1].values)), (native[1].values, python[1].values)
    start = len(data) - len(payload)
    for tags in (False, True):
        prog = program(b"E\0" + fields_meta, big, tags)
        if prog is None:
            continue
        members = _eventheader.Payload(prog, big, None).json(data, start, end)
        if python[0] == "ok":
            event = python[1]
            assert members == values_writer(event.schema, tags)(event.values).encode("utf-8", "surrogateescape")
        elif start <= end:
            assert members is None


ALL = CASES + STRUCT_CASES


@pytest.mark.parametrize("big", [False, True], ids=["le", "be"])
@pytest.mark.parametrize(("label", "meta", "payload"), ALL, ids=[c[0] for c in ALL])
def test_every_case_and_truncation_matches_the_python_decoder(label: str, meta: bytes, payload: bytes,
                                                               big: bool) -> None:
    fields = b"v\0" + meta if (label, meta, payload) in CASES else meta
    data_len = len(event_bytes(fields, payload, big=big))
    for end in range(data_len - len(payload), data_len + 1):
        compare(fields, payload, big, end)


def _random_field(rng: random.Random, depth: int) -> bytes:
    name = rng.choice([b"a", b"b;x=1", b"n\xc3\xa9", b'q"\\', b"\xff\xfe", b""])
    enc = rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, rng.randrange(32)])
    if enc == 1 and depth > 3:
        enc = 2
    array = rng.choice([0, 0, 0, 0x20, 0x40])
    out = name + b"\0"
    fmt = None
    if enc == 1:
        fmt = rng.randrange(4)
    elif rng.random() < 0.8:
        fmt = rng.choice([*range(19), rng.randrange(128)])
    tag = rng.choice([None, None, 0, 0x12, 0xBEEF]) if fmt is not None else None
    out += bytes([enc | array | (0x80 if fmt is not None else 0)])
    if fmt is not None:
        out += bytes([fmt | (0x80 if tag is not None else 0)])
        if tag is not None:
            out += struct.pack("<H", tag)
    if array == 0x20:
        out += struct.pack("<H", rng.choice([0, 1, 2, 3]))
    if enc == 1:
        for _ in range(fmt or 0):
            out += _random_field(rng, depth + 1)
    return out


def _random_payload(rng: random.Random) -> bytes:
    out = bytearray()
    for _ in range(rng.randrange(80)):
        r = rng.random()
        out.append(0 if r < 0.35 else rng.randrange(1, 4) if r < 0.5 else rng.randrange(0x20, 0x7F) if r < 0.7
                   else rng.randrange(256))
    return bytes(out)


@pytest.mark.parametrize("seed", range(8))
def test_random_events_match_the_python_decoder(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(400):
        meta = b"".join(_random_field(rng, 0) for _ in range(rng.randrange(1, 5)))
        compare(meta, _random_payload(rng), rng.random() < 0.3)


def _float_texts(code: str, enc: int, values: list[int]) -> bytes:
    """The native JSON of these float bit patterns, 1000 to an event (the reference's walk limit is 4096 steps)."""
    out = b""
    for i in range(0, len(values), 1000):
        chunk = values[i : i + 1000]
        prog = program(b"E\0v\0" + bytes([0x80 | 0x40 | enc, 8]), False)
        assert prog is not None
        data = struct.pack(f"<H{len(chunk)}{code}", len(chunk), *chunk)
        members = _eventheader.Payload(prog, False, None).json(data, 0, len(data))
        assert members is not None and members.startswith(b',"v":[')
        out += (b"," if out else b"") + members[6:-1]
    return out


def test_floats_print_as_the_python_writer_prints_them() -> None:
    rng = random.Random(3)
    specials = [0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 1, 0x7F7FFFFF, 0x00800000, 0x3F800000]
    bits32 = specials + [rng.getrandbits(32) for _ in range(4000)]
    bits32 += [rng.randrange(1, 1 << 23) | (e << 23) for e in range(255) for _ in range(4)]  # powers of two nearby
    bits32 += [e << 23 for e in range(255)]  # powers of two
    floats32 = struct.unpack(f"<{len(bits32)}f", struct.pack(f"<{len(bits32)}I", *bits32))
    assert _float_texts("I", 4, bits32) == ",".join(float32_text(x) for x in floats32).encode()

    bits64 = [0, 1 << 63, 0x7FF0 << 48, 0xFFF0 << 48, 0x7FF8 << 48, 1, (1 << 63) - 1 - (1 << 52)]
    bits64 += [rng.getrandbits(64) for _ in range(4000)] + [rng.getrandbits(52) | (e << 52) for e in range(0, 2047, 3)]
    bits64 += [e << 52 for e in range(2047)]  # powers of two
    bits64 += [struct.unpack("<Q", struct.pack("<d", float(v)))[0] for v in (1e22, 1e23, 123456789012345680.0, 0.1)]
    floats64 = struct.unpack(f"<{len(bits64)}d", struct.pack(f"<{len(bits64)}Q", *bits64))
    assert _float_texts("Q", 5, bits64) == ",".join(float64_text(x) for x in floats64).encode()


def test_the_native_decoder_is_the_default_and_can_be_turned_off() -> None:
    data = event_bytes(b"v\0\x02", b"\x07")
    for native, kind in ((True, _eventheader.Payload), (False, type(lambda: 0))):
        types = TypeCache(native=native)
        EventHeaderDecoder(types).decode("P_L5K1", data)
        [t] = types._types.values()
        assert type(t.decode) is kind
