"""TraceLogging events built by dyntel's encoder (from TraceLoggingDynamic.h's layout) come back from
decode_etw_event with the names and values that went in: every in-type, out-types that change a value's form,
variable and fixed arrays, structs (nested, and arrays of them), event and field tags, custom fields, and the
identity ETW gives in the EVENT_HEADER and extended items.

Values come back in the decoder's documented forms (dyntel.decoders.tracelogging_compile): GUIDs as 16 bytes in
registry order, FILETIME and SYSTEMTIME as ISO-8601 text, SIDs as "S-1-..." text, IPv4 as 4 bytes in network order.
"""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from dyntel.decoders.etw_header import (
    EVENT_HEADER_FLAG_32_BIT_HEADER,
    EVENT_HEADER_FLAG_64_BIT_HEADER,
    EVENT_HEADER_FLAG_EXTENDED_INFO,
    EXT_TYPE_RELATED_ACTIVITYID,
    EXT_TYPE_STACK_TRACE64,
    EtwEventHeader,
)
from dyntel.decoders.tracelogging import TypeCache, decode_etw_event
from dyntel.decoders.tracelogging_meta import parse_event_meta, parse_traits
from dyntel.encoders.tracelogging import (
    ARRAY_VARIABLE,
    Field,
    InType,
    OutType,
    encode_event,
    encode_tags,
    event_metadata,
    intptr_type,
    payload,
    pointer_type,
    provider_id,
    provider_traits,
    sid_bytes,
    uintptr_type,
)
from dyntel.errors import DecodeError
from dyntel.event import ArrayKind, Format

PROVIDER = "Dyntel.Test.RoundTrip"
ACTIVITY = uuid.UUID("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
RELATED = uuid.UUID("11223344-5566-7788-99aa-bbccddeeff00")
GROUP = uuid.UUID("4f50731a-89cf-4782-b3e0-dce8c90476ba")
TIME_NS = 1_700_000_000_123_456_700


def filetime(text: str) -> int:
    """100 ns ticks since 1601 of an ISO time with 7 fractional digits."""
    whole, frac = text.rstrip("Z").split(".")
    dt = datetime.fromisoformat(whole).replace(tzinfo=UTC)
    return int(dt.timestamp()) * 10_000_000 + int(frac) + 116_444_736_000_000_000


def header(provider: str = PROVIDER, *, flags: int = EVENT_HEADER_FLAG_EXTENDED_INFO | EVENT_HEADER_FLAG_64_BIT_HEADER,
           activity: uuid.UUID = ACTIVITY) -> EtwEventHeader:
    return EtwEventHeader(provider_id=provider_id(provider), event_id=7, version=2, channel=11, level=4, opcode=1,
                          task=0, keyword=0x8000_0000_0000_0010, time_ns=TIME_NS, pid=4242, tid=4343, processor=3,
                          activity_id=activity.bytes_le, flags=flags, event_property=0)


def roundtrip(fields: list[Field], values: list[Any], *, name: str = "Ev", tags: int = 0, pointer_size: int = 8,
              extra: list[tuple[int, bytes]] | None = None) -> Any:
    enc = encode_event(PROVIDER, name, fields, values, tags=tags, group=GROUP, pointer_size=pointer_size)
    flags = EVENT_HEADER_FLAG_EXTENDED_INFO | (
        EVENT_HEADER_FLAG_64_BIT_HEADER if pointer_size == 8 else EVENT_HEADER_FLAG_32_BIT_HEADER)
    # A cache of its own: a type compiled by an earlier test must not stand in for this one's metadata.
    return decode_etw_event(header(flags=flags), enc.extended + (extra or []), enc.payload,
                            pointer_size=pointer_size, types=TypeCache())


SID_TEXT = "S-1-5-21-1004336348-1177238915-682003330-512"
SOME_GUID = uuid.UUID("01234567-89ab-cdef-0123-456789abcdef")
FT_TEXT = "2024-01-02T03:04:05.1234567Z"

# (field, value written, value read back) for every in-type.
SCALARS: list[tuple[Field, Any, Any]] = [
    (Field("u16s", InType.UNICODESTRING), "wide é 𝄞", "wide é 𝄞"),
    (Field("u8s", InType.ANSISTRING), "narrow ü", "narrow ü"),
    (Field("i8", InType.INT8), -128, -128),
    (Field("u8", InType.UINT8), 255, 255),
    (Field("i16", InType.INT16), -32768, -32768),
    (Field("u16", InType.UINT16), 65535, 65535),
    (Field("i32", InType.INT32), -2_000_000_000, -2_000_000_000),
    (Field("u32", InType.UINT32), 4_000_000_000, 4_000_000_000),
    (Field("i64", InType.INT64), -(2**63), -(2**63)),
    (Field("u64", InType.UINT64), 2**64 - 1, 2**64 - 1),
    (Field("f32", InType.FLOAT), 1.5, 1.5),
    (Field("f64", InType.DOUBLE), 2.718281828459045, 2.718281828459045),
    (Field("b32", InType.BOOL32), True, 1),
    (Field("bin", InType.BINARY), b"\x00\x01\xfe\xff", b"\x00\x01\xfe\xff"),
    (Field("guid", InType.GUID), SOME_GUID, SOME_GUID.bytes),
    (Field("ft", InType.FILETIME), filetime(FT_TEXT), FT_TEXT),
    (Field("st", InType.SYSTEMTIME), (2024, 1, 2, 2, 3, 4, 5, 678), "2024-01-02T03:04:05.678"),
    (Field("sid", InType.SID), SID_TEXT, SID_TEXT),
    (Field("h32", InType.HEXINT32), 0xDEADBEEF, 0xDEADBEEF),
    (Field("h64", InType.HEXINT64), 0xFEEDFACECAFEBEEF, 0xFEEDFACECAFEBEEF),
    (Field("cs16", InType.COUNTEDSTRING), "counted wide", "counted wide"),
    (Field("cs8", InType.COUNTEDANSISTRING), "counted narrow", "counted narrow"),
    (Field("iptr", intptr_type(8)), -5, -5),
    (Field("uptr", uintptr_type(8)), 2**63, 2**63),
    (Field("ptr", pointer_type(8)), 0x7FF6_1234_5678, 0x7FF6_1234_5678),
]
COUNTED_BINARY: tuple[Field, Any, Any] = (Field("cbin", InType.COUNTEDBINARY), b"\x10\x20", b"\x10\x20")


def test_provider_guid_is_the_tracelogging_name_hash() -> None:
    # The example TraceLoggingProvider.h's documentation gives for TRACELOGGING_DEFINE_PROVIDER.
    assert uuid.UUID(bytes_le=provider_id("MyCompany.MyComponent")) == uuid.UUID("ce5fa4ea-ab00-5402-8b76-9f76ac858fb5")


def test_tags_are_chained_7_bits_at_a_time_from_the_top() -> None:
    assert encode_tags(0) == b"\x00"
    assert encode_tags(0x0FE00000) == b"\x7f"  # the top 7 bits alone: one byte
    assert encode_tags(1) == b"\x80\x80\x80\x01"
    assert encode_tags(0x0FFFFFFF) == b"\xff\xff\xff\x7f"
    with pytest.raises(ValueError):
        encode_tags(0x10000000)


def test_every_in_type_scalar_round_trips() -> None:
    fields = [f for f, _, _ in SCALARS]
    event = roundtrip(fields, [v for _, v, _ in SCALARS])
    assert event.provider == PROVIDER
    assert event.name == "Ev"
    assert list(event.fields) == [f.name for f in fields]
    for f, _, want in SCALARS:
        got = event.fields[f.name]
        assert got == want, f.name
        assert type(got) is type(want), f.name


@pytest.mark.parametrize(("f", "value", "want"), SCALARS, ids=[f.name for f, _, _ in SCALARS])
def test_each_in_type_alone(f: Field, value: Any, want: Any) -> None:
    # Alone, a field is both first and last: a decoder that reads past its end or misses it fails here.
    assert roundtrip([f], [value]).fields == {f.name: want}


def test_counted_binary() -> None:
    f, value, want = COUNTED_BINARY
    assert roundtrip([f, Field("after", InType.UINT8)], [value, 9]).fields == {f.name: want, "after": 9}


def test_pointer_in_type_follows_the_pointer_size() -> None:
    fields = [Field("p", InType.POINTER), Field("after", InType.UINT16)]
    assert roundtrip(fields, [0x1234_5678_9ABC, 7], pointer_size=8).fields == {"p": 0x1234_5678_9ABC, "after": 7}
    assert roundtrip(fields, [0x89AB_CDEF, 7], pointer_size=4).fields == {"p": 0x89AB_CDEF, "after": 7}
    # INTPTR and friends are the 32-bit in-types for a 32-bit writer.
    fields32 = [Field("i", intptr_type(4)), Field("u", uintptr_type(4)), Field("x", pointer_type(4))]
    assert roundtrip(fields32, [-1, 2**32 - 1, 0x1000], pointer_size=4).fields == {"i": -1, "u": 2**32 - 1,
                                                                                  "x": 0x1000}


def test_out_types_that_change_the_value() -> None:
    port = 8080
    ipv4 = bytes([192, 168, 1, 20])
    ipv6 = bytes.fromhex("fe800000000000000000000000000001")
    cases: list[tuple[Field, Any, Any]] = [
        (Field("ch8", InType.UINT8, OutType.STRING), ord("A"), "A"),
        (Field("ch16", InType.UINT16, OutType.STRING), 0x263A, "\u263a"),
        (Field("bool8", InType.UINT8, OutType.BOOLEAN), 1, 1),
        (Field("hex8", InType.UINT8, OutType.HEX), 0xAB, 0xAB),
        (Field("pid", InType.UINT32, OutType.PID), 4321, 4321),
        (Field("tid", InType.UINT32, OutType.TID), 8765, 8765),
        # A port and an IPv4 address are written in network byte order.
        (Field("port", InType.UINT16, OutType.PORT), struct.unpack("<H", port.to_bytes(2, "big"))[0], port),
        (Field("ipv4", InType.UINT32, OutType.IPV4), int.from_bytes(ipv4, "little"), ipv4),
        (Field("ipv6", InType.BINARY, OutType.IPV6), ipv6, ipv6),
        (Field("xml", InType.UNICODESTRING, OutType.XML), "<a>1</a>", "<a>1</a>"),
        (Field("json", InType.ANSISTRING, OutType.JSON), '{"a":1}', '{"a":1}'),
        (Field("utf8", InType.COUNTEDANSISTRING, OutType.UTF8), "ünï", "ünï"),
        (Field("hr", InType.INT32, OutType.HRESULT), -2147024891, 0x80070005),
        (Field("err", InType.UINT32, OutType.WIN32ERROR), 5, 5),
        (Field("nts", InType.UINT32, OutType.NTSTATUS), 0xC0000005, 0xC0000005),
        (Field("ftout", InType.FILETIME, OutType.DATETIME_UTC), filetime(FT_TEXT), FT_TEXT),
        (Field("noprint", InType.UINT32, OutType.NOPRINT), 3, 3),
    ]
    event = roundtrip([f for f, _, _ in cases], [v for _, v, _ in cases])
    for f, _, want in cases:
        assert event.fields[f.name] == want, f.name
    formats = {info.name: info.format for info in event.schema.fields}
    assert formats["hex8"] == Format.HEX_INT
    assert formats["pid"] == Format.PID
    assert formats["bool8"] == Format.BOOLEAN
    assert formats["xml"] == Format.STRING_XML
    assert formats["json"] == Format.STRING_JSON
    assert formats["port"] == Format.PORT


def test_variable_and_fixed_arrays_of_every_kind() -> None:
    cases: list[tuple[Field, Any, Any]] = [
        (Field("vi32", InType.INT32, array=ARRAY_VARIABLE), [1, -2, 3], [1, -2, 3]),
        (Field("fu16", InType.UINT16, array=3), [1, 2, 3], [1, 2, 3]),
        (Field("empty", InType.UINT64, array=ARRAY_VARIABLE), [], []),
        (Field("vf64", InType.DOUBLE, array=ARRAY_VARIABLE), [0.5, -0.25], [0.5, -0.25]),
        (Field("vs16", InType.UNICODESTRING, array=ARRAY_VARIABLE), ["a", "", "ccc"], ["a", "", "ccc"]),
        (Field("fs8", InType.ANSISTRING, array=2), ["x", "yz"], ["x", "yz"]),
        (Field("vcs", InType.COUNTEDSTRING, array=ARRAY_VARIABLE), ["p", "qq"], ["p", "qq"]),
        (Field("vcas", InType.COUNTEDANSISTRING, array=ARRAY_VARIABLE), ["r"], ["r"]),
        (Field("vguid", InType.GUID, array=ARRAY_VARIABLE), [SOME_GUID, ACTIVITY], [SOME_GUID.bytes, ACTIVITY.bytes]),
        (Field("fsid", InType.SID, array=2), [SID_TEXT, "S-1-5-18"], [SID_TEXT, "S-1-5-18"]),
        (Field("vft", InType.FILETIME, array=ARRAY_VARIABLE), [filetime(FT_TEXT)], [FT_TEXT]),
        (Field("fst", InType.SYSTEMTIME, array=1), [(1999, 12, 5, 31, 23, 59, 59, 999)], ["1999-12-31T23:59:59.999"]),
        (Field("vh64", InType.HEXINT64, array=ARRAY_VARIABLE), [0, 2**64 - 1], [0, 2**64 - 1]),
        (Field("vb32", InType.BOOL32, array=ARRAY_VARIABLE), [True, False], [1, 0]),
        (Field("vch8", InType.UINT8, OutType.STRING, array=ARRAY_VARIABLE), [ord("h"), ord("i")], ["h", "i"]),
        (Field("tail", InType.UINT8), 0x5A, 0x5A),
    ]
    event = roundtrip([f for f, _, _ in cases], [v for _, v, _ in cases])
    for f, _, want in cases:
        assert event.fields[f.name] == want, f.name
    arrays = {info.name: (info.array, info.fixed_count) for info in event.schema.fields}
    assert arrays["vi32"] == (ArrayKind.VARIABLE, 0)
    assert arrays["fu16"] == (ArrayKind.FIXED, 3)
    assert arrays["tail"] == (ArrayKind.NONE, 0)


def test_structs_nested_and_in_arrays() -> None:
    point = (Field("x", InType.INT32), Field("y", InType.INT32))
    fields = [
        Field("before", InType.UINT8),
        Field("outer", InType.STRUCT, fields=(
            Field("label", InType.ANSISTRING),
            Field("inner", InType.STRUCT, fields=(
                Field("deep", InType.UNICODESTRING),
                Field("nums", InType.UINT16, array=ARRAY_VARIABLE),
            )),
            Field("after_inner", InType.HEXINT32),
        )),
        Field("points", InType.STRUCT, array=ARRAY_VARIABLE, fields=point),
        Field("pair", InType.STRUCT, array=2, fields=point),
        Field("after", InType.UINT8),
    ]
    values = [1, ["L", ["deep text", [5, 6]], 0x10], [[1, 2], [3, 4], [5, 6]], [[-1, -2], [-3, -4]], 2]
    event = roundtrip(fields, values)
    assert event.fields == {
        "before": 1,
        "outer": {"label": "L", "inner": {"deep": "deep text", "nums": [5, 6]}, "after_inner": 0x10},
        "points": [{"x": 1, "y": 2}, {"x": 3, "y": 4}, {"x": 5, "y": 6}],
        "pair": [{"x": -1, "y": -2}, {"x": -3, "y": -4}],
        "after": 2,
    }


def test_event_and_field_tags() -> None:
    fields = [Field("tagged", InType.UINT32, tags=0x0ABCDEF), Field("tagged_out", InType.UINT32, OutType.HEX,
                                                                   tags=0x0FFFFFFF),
              Field("st", InType.STRUCT, tags=0x1234567, fields=(Field("m", InType.INT8, tags=1),)),
              Field("plain", InType.UINT32)]
    event = roundtrip(fields, [1, 2, [3], 4], tags=0x0F00001)
    assert event.tag == 0x0F00001
    assert event.fields == {"tagged": 1, "tagged_out": 2, "st": {"m": 3}, "plain": 4}
    tags = {info.name: info.tag for info in event.schema.fields}
    assert tags == {"tagged": 0x0ABCDEF, "tagged_out": 0x0FFFFFFF, "st": 0x1234567, "plain": 0}
    st = event.schema.fields[2]
    assert st.children is not None and st.children.fields[0].tag == 1
    assert event.schema.fields[1].format == Format.HEX_INT  # the out-type survives the chained tag bytes


def test_custom_field_is_opaque_bytes_and_its_schema_is_skipped() -> None:
    fields = [Field("custom", InType.BINARY, schema=b"\x01\x02\x03protobuf-schema"), Field("after", InType.INT16)]
    event = roundtrip(fields, [b"\x08\x96\x01", -3])
    assert event.fields == {"custom": b"\x08\x96\x01", "after": -3}


def test_metadata_layout_read_back_by_the_metadata_parser() -> None:
    fields = [Field("a", InType.UINT32, OutType.HEX, tags=5, array=4),
              Field("s", InType.STRUCT, array=ARRAY_VARIABLE, fields=(Field("b", InType.GUID),))]
    meta = parse_event_meta(event_metadata("Meta", fields, tags=0x3))
    assert (meta.name, meta.tags) == ("Meta", 0x3)
    a, st = meta.fields
    assert (a.name, a.in_type, a.out_type, a.tag, a.array, a.count) == ("a", 8, 4, 5, ArrayKind.FIXED, 4)
    assert (st.in_type, st.out_type, st.array) == (24, 1, ArrayKind.VARIABLE)
    assert st.children is not None and [c.name for c in st.children] == ["b"]
    traits = parse_traits(provider_traits(PROVIDER, GROUP))
    assert (traits.name, traits.group) == (PROVIDER, GROUP.bytes_le)


def test_exact_metadata_bytes() -> None:
    # Worked by hand from TraceLoggingDynamic.h: size, tags, name, then per field name, InMeta[, OutMeta[, tags]]
    # [, ccount]. A struct always chains its OutMeta, which holds its field count.
    fields = [Field("n", InType.UINT8), Field("h", InType.UINT32, OutType.HEX),
              Field("t", InType.INT32, tags=0x200000), Field("v", InType.INT16, array=ARRAY_VARIABLE),
              Field("c", InType.INT64, array=0x0102), Field("s", InType.STRUCT, fields=(Field("m", InType.UINT8),))]
    body = (b"\x00" + b"E\0" + b"n\0\x04" + b"h\0\x88\x04" + b"t\0\x87\x80\x01" + b"v\0\x45" + b"c\0\x29\x02\x01"
            + b"s\0\x98\x01" + b"m\0\x04")
    assert event_metadata("E", fields) == struct.pack("<H", len(body) + 2) + body
    assert provider_traits("P") == b"\x04\x00P\0"
    assert provider_traits("P", GROUP) == b"\x17\x00P\0" + b"\x13\x00\x01" + GROUP.bytes_le


def test_header_identity_and_extended_items() -> None:
    stack = struct.pack("<Q3Q", 99, 0x7FF6_0000_1000, 0x7FF6_0000_2000, 0xFFFFF800_0000_3000)
    event = roundtrip([Field("v", InType.UINT8)], [1], extra=[(EXT_TYPE_RELATED_ACTIVITYID, RELATED.bytes_le),
                                                              (EXT_TYPE_STACK_TRACE64, stack)])
    assert (event.provider, event.name, event.source) == (PROVIDER, "Ev", "etw")
    assert (event.level, event.keyword, event.opcode, event.id, event.version) == (4, 0x8000_0000_0000_0010, 1, 7, 2)
    assert (event.pid, event.tid, event.cpu, event.time) == (4242, 4343, 3, TIME_NS)
    assert event.activity == ACTIVITY.bytes
    assert event.related_activity == RELATED.bytes
    assert event.callchain == (0x7FF6_0000_1000, 0x7FF6_0000_2000, 0xFFFFF800_0000_3000)


def test_a_payload_shorter_than_its_metadata_is_a_decode_error() -> None:
    fields = [Field("a", InType.UINT32), Field("s", InType.UNICODESTRING)]
    enc = encode_event(PROVIDER, "Short", fields, [1, "abc"])
    for cut in range(len(enc.payload)):
        with pytest.raises(DecodeError):
            decode_etw_event(header(), enc.extended, enc.payload[:cut], types=TypeCache())


def test_encoder_refuses_what_the_layout_cannot_hold() -> None:
    with pytest.raises(ValueError):
        payload([Field("f", InType.UINT8, array=2)], [[1, 2, 3]])  # a fixed count of 2
    with pytest.raises(ValueError):
        event_metadata("E", [Field("s", InType.STRUCT)])  # a struct of no fields
    with pytest.raises(ValueError):
        event_metadata("E", [Field("a\0b", InType.UINT8)])  # a nul would end the name
    with pytest.raises(ValueError):
        payload([Field("sid", InType.SID)], [b"\x01\x02" + bytes(6)])  # 2 sub-authorities announced, 0 present
    assert sid_bytes("S-1-5-18") == b"\x01\x01\x00\x00\x00\x00\x00\x05\x12\x00\x00\x00"
