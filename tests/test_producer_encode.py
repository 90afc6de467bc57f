"""The producer's events, captured as written (one SOCK_SEQPACKET message per writev) and read back by dyntel's own
EventHeader decoder: every field type, arrays, structs, activity ids, the enable bit, the no-op writer and the
error without user_events."""

from __future__ import annotations

import errno
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dyntel.decoders.eventheader import EventHeaderDecoder
from dyntel.event import Encoding, Format
from dyntel.producer import (
    BINARY,
    BOOL8,
    BOOL32,
    CSTR8,
    CSTR16,
    CSTR32,
    ERRNO,
    F32,
    F64,
    GUID,
    HEX32,
    HEX64,
    I8,
    I16,
    I32,
    I64,
    PID,
    PORT,
    STR8,
    STR16,
    STR32,
    TIME64,
    U8,
    U16,
    U32,
    U64,
    CaptureSink,
    EventTooLarge,
    Field,
    Provider,
    UserEventsUnavailable,
    array,
    capture_pair,
    struct_of,
)

G = uuid.UUID("12345678-9abc-def0-1234-56789abcdef0")


@pytest.fixture
def capture() -> Iterator[tuple[CaptureSink, socket.socket]]:
    sink, reader = capture_pair()
    yield sink, reader
    os.close(sink.fd)
    reader.close()


def test_every_field_type_round_trips_through_the_decoder(capture: tuple[CaptureSink, socket.socket]) -> None:
    sink, reader = capture
    fields = [
        Field("u8", U8), Field("u16", U16), Field("u32", U32), Field("u64", U64),
        Field("i8", I8), Field("i16", I16), Field("i32", I32), Field("i64", I64),
        Field("h32", HEX32), Field("h64", HEX64), Field("errno", ERRNO), Field("pid", PID), Field("t", TIME64),
        Field("f32", F32), Field("f64", F64), Field("b8", BOOL8), Field("b32", BOOL32), Field("port", PORT),
        Field("guid", GUID), Field("s8", STR8), Field("s16", STR16), Field("s32", STR32),
        Field("z8", CSTR8), Field("z16", CSTR16), Field("z32", CSTR32), Field("bin", BINARY),
        Field("ints", array(I32)), Field("names", array(STR8)), Field("tagged", U16, tag=0x1234),
        Field("point", struct_of(Field("x", I16), Field("label", STR8), Field("inner", struct_of(Field("y", U8))))),
        Field("points", array(struct_of(Field("x", U8), Field("s", CSTR8)))),
    ]
    values = [
        255, 65535, 2**32 - 1, 2**64 - 1, -128, -32768, -(2**31), -(2**63),
        0xDEADBEEF, 0x0123456789ABCDEF, 2, 4242, 1_700_000_000,
        1.5, -2.25, 1, 0, 8080,
        G, "héllo", "wïde \U0001f600", "ü32 \U0001f600", "zé", "z16", "z32", b"\x00\x01\xff",
        [1, -2, 3], ["a", "", "ç"], 7,
        (-5, "lbl", (9,)),
        [(1, "one"), (2, "two")],
    ]
    with Provider("EncProv", sink=sink) as provider:
        event = provider.event("AllTypes", fields, level=5, keyword=0x10, id=3, version=2, tag=0x55, opcode=1)
        assert event.write(values)
        [(name, raw)] = sink.receive(reader)
    assert name == "EncProv_L5K10"
    e = EventHeaderDecoder().decode(name, raw)
    assert (e.provider, e.name, e.level, e.keyword, e.id, e.version, e.tag, e.opcode) == (
        "EncProv", "AllTypes", 5, 0x10, 3, 2, 0x55, 1)
    f = e.fields
    assert [f[n] for n in ("u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64")] == values[:8]
    assert (f["h32"], f["h64"], f["errno"], f["pid"], f["t"]) == (0xDEADBEEF, 0x0123456789ABCDEF, 2, 4242,
                                                                  1_700_000_000)
    assert (f["f32"], f["f64"], f["b8"], f["b32"], f["port"]) == (1.5, -2.25, 1, 0, 8080)
    assert f["guid"] == G.bytes
    assert (f["s8"], f["s16"], f["s32"]) == ("héllo", "wïde \U0001f600", "ü32 \U0001f600")
    assert (f["z8"], f["z16"], f["z32"], f["bin"]) == ("zé", "z16", "z32", b"\x00\x01\xff")
    assert (f["ints"], f["names"], f["tagged"]) == ([1, -2, 3], ["a", "", "ç"], 7)
    assert f["point"] == {"x": -5, "label": "lbl", "inner": {"y": 9}}
    assert f["points"] == [{"x": 1, "s": "one"}, {"x": 2, "s": "two"}]
    info = {i.name: i for i in e.schema.fields}
    assert (info["b8"].format, info["guid"].format, info["port"].format) == (Format.BOOLEAN, Format.UUID, Format.PORT)
    assert info["s16"].encoding == Encoding.STRING_LENGTH16_CHAR16 and info["tagged"].tag == 0x1234


def test_values_by_name_and_activity_ids(capture: tuple[CaptureSink, socket.socket]) -> None:
    sink, reader = capture
    provider = Provider("ActProv", sink=sink)
    event = provider.event("A", [Field("n", U32), Field("s", STR8)])
    related = uuid.uuid4()
    assert event.write({"s": "x", "n": 1}, activity_id=G)
    assert event.write((2, "y"), activity_id=G.bytes, related_id=related)
    assert event.write((3, "z"))
    d = EventHeaderDecoder()
    got = [d.decode(n, raw) for n, raw in sink.receive(reader)]
    assert [(e.fields, e.activity, e.related_activity) for e in got] == [
        ({"n": 1, "s": "x"}, G.bytes, None), ({"n": 2, "s": "y"}, G.bytes, related.bytes), ({"n": 3, "s": "z"}, None,
                                                                                           None)]
    with pytest.raises(ValueError, match="related activity id needs an activity id"):
        event.write((4, "w"), related_id=related)
    provider.close()


def test_a_disabled_tracepoint_writes_nothing_and_close_disables(capture: tuple[CaptureSink, socket.socket]) -> None:
    sink, reader = capture
    provider = Provider("Off", sink=sink)
    event = provider.event("E", [Field("n", U32)], level=2)
    sink.set_enabled("Off_L2K1", False)
    assert not event.enabled and not event.write((1,))
    sink.set_enabled("Off_L2K1", True)
    assert event.write((2,))
    provider.close()
    assert not event.enabled and not event.write((3,))
    assert [EventHeaderDecoder().decode(n, r).fields for n, r in sink.receive(reader)] == [{"n": 2}]


def test_an_event_over_the_kernel_limit_is_refused(capture: tuple[CaptureSink, socket.socket]) -> None:
    sink, reader = capture
    event = Provider("Big", sink=sink).event("E", [Field("b", array(U32))])
    with pytest.raises(EventTooLarge):
        event.write(([0] * 20000,))
    assert sink.receive(reader) == []


def test_no_user_events_is_a_clear_error_at_setup(tmp_path: Path) -> None:
    missing = tmp_path / "user_events_data"
    with pytest.raises(UserEventsUnavailable) as e:
        Provider("P", user_events_data=missing)
    assert e.value.errno == errno.ENOENT
    assert str(missing) in str(e.value) and "noop_if_unavailable=True" in str(e.value)


def test_the_noop_writer_needs_asking_for_and_then_writes_nothing(tmp_path: Path) -> None:
    provider = Provider("P", user_events_data=tmp_path / "missing", noop_if_unavailable=True)
    assert provider.is_noop
    event = provider.event("E", [Field("n", U32)])
    assert not event.enabled and not event.write((1,))
    provider.close()


@pytest.mark.parametrize("name", ["", "has space", "a:b"])
def test_bad_provider_names(name: str) -> None:
    with pytest.raises(ValueError, match="provider name"):
        Provider(name, sink=CaptureSink(-1))


def test_without_user_events_the_default_setup_says_what_is_missing() -> None:
    if Path("/sys/kernel/tracing/user_events_data").exists():
        pytest.skip("this kernel has user_events")
    with pytest.raises(UserEventsUnavailable, match="noop_if_unavailable=True") as e:
        Provider("P")
    assert "CONFIG_USER_EVENTS" in str(e.value) or "tracefs is not mounted" in str(e.value)
