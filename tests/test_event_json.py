"""The JSON writer: its integer template and its general writer agree, and the template declines what it can't show."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dyntel.event import ArrayKind, Encoding, Event, FieldInfo, Format, Schema
from dyntel.event_json import format_event, format_meta


def schema() -> Schema:
    return Schema((
        FieldInfo("dec%d {x}", Encoding.VALUE32, Format.SIGNED_INT, element_size=4),
        FieldInfo("hex", Encoding.VALUE64, Format.HEX_INT, element_size=8),
        FieldInfo("args", Encoding.VALUE64, Format.HEX_INT, ArrayKind.FIXED, 3, element_size=8),
        FieldInfo("comm", Encoding.ZSTRING_CHAR8, Format.STRING8),
        FieldInfo("var", Encoding.VALUE16, Format.UNSIGNED_INT, ArrayKind.VARIABLE, element_size=2),
    ))


def payload(event: Event) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = json.loads(format_event(event), object_pairs_hook=list)
    return pairs[1:-1]


@pytest.mark.parametrize(("values", "expected"), [
    ((-5, 0x950, [1, 2, 0xFFFF_FFFF_FFFF_FFFF], 'a"%s', [1, 2]),
     [-5, "0x950", ["0x1", "0x2", "0xFFFFFFFFFFFFFFFF"], 'a"%s', [1, 2]]),
    # a field the entry did not reach: the template declines, the general writer shows null
    ((None, None, [], "", []), [None, None, [], "", []]),
    # an array of another length than the schema's
    ((1, 2, [1, 2, 3, 4], "x", []), [1, "0x2", ["0x1", "0x2", "0x3", "0x4"], "x", []]),
])
def test_template_and_general_writer_agree(values: tuple[Any, ...], expected: list[Any]) -> None:
    s = schema()
    got = payload(Event("p", "e", s, values))
    assert [k for k, _ in got] == ["dec%d {x}", "hex", "args", "comm", "var"]
    assert [v for _, v in got] == expected


def test_structs_nest_and_field_tags_show_only_when_asked() -> None:
    inner = Schema((FieldInfo("a", Encoding.VALUE8, Format.UNSIGNED_INT, tag=0x12, element_size=1),))
    s = Schema((FieldInfo("s", Encoding.STRUCT, children=inner, tag=0xBEEF),
                FieldInfo("l", Encoding.STRUCT, array=ArrayKind.VARIABLE, children=inner)))
    event = Event("p", "e", s, [[5], [[1], [2]]], level=4)
    assert json.loads(format_event(event)) == {"n": "p:e", "s": {"a": 5}, "l": [{"a": 1}, {"a": 2}],
                                               "meta": {"level": 4}}
    tagged = json.loads(format_event(event, field_tags=True))
    assert tagged["s;tag=0xBEEF"] == {"a;tag=0x12": 5}
    assert event.fields == {"s": {"a": 5}, "l": [{"a": 1}, {"a": 2}]}


def test_meta_keys_and_order() -> None:
    wall = Event("p", "e", time=1_711_586_712_640_913_120, cpu=1, pid=2, tid=3, level=5, keyword=0x3A,
                 opcode=1, id=7, version=2, tag=0x10, activity=bytes(range(16)), related_activity=bytes(16))
    assert format_meta(wall) == (
        '"meta":{"time":"2024-03-28T00:45:12.640913120Z","cpu":1,"pid":2,"tid":3,"id":7,"version":2,"level":5,'
        '"keyword":"0x3A","opcode":1,"tag":"0x10","activity":"00010203-0405-0607-0809-0a0b0c0d0e0f",'
        '"relatedActivity":"00000000-0000-0000-0000-000000000000"}')
    raw_clock = Event("p", "e", time=62_014_966_000, time_is_wall=False, cpu=0, pid=1, tid=1)
    assert format_meta(raw_clock) == '"meta":{"time":62.014966000,"cpu":0,"pid":1,"tid":1}'
    assert format_meta(Event("p", "e", level=0)) == '"meta":{}'
