"""Reading rule files: positions of values and keys, and of each character of a condition however it is quoted."""

from __future__ import annotations

import pytest

from dyntel.rules.yaml_read import TextMap, read_yaml
from dyntel.units import UnitError, parse_duration, parse_size

SOURCE = """\
a: fields.x == 1 and pid > 3
b: fields.x == 1 and
   pid > 3

   or z
c: 'fields.x == ''it''''s'
d: "fields.y == \\"q\\"\\tz"
e: |
  fields.x == 1
    and pid > 3
  or y
f: >-
  fields.x == 1
  and pid > 3

  or y
g: fields.x == "é" and yé > 1
list: [one, {k: v}]
"""


def test_every_value_and_key_has_its_position() -> None:
    doc, errors = read_yaml("f.yaml", SOURCE)
    assert not errors and doc is not None
    assert str(doc.key_at(("list",))) == "f.yaml:18:1"
    assert str(doc.at(("list",))) == "f.yaml:18:7"
    assert str(doc.at(("list", 1, "k"))) == "f.yaml:18:17"
    assert str(doc.key_at(("list", 1, "k"))) == "f.yaml:18:14"
    assert str(doc.at(("list", 1, "missing"))) == "f.yaml:18:13"  # a missing key: its mapping


@pytest.mark.parametrize("key", list("abcdefg"))
def test_each_character_of_a_scalar_maps_back_to_the_file(key: str) -> None:
    doc, _ = read_yaml("f.yaml", SOURCE)
    assert doc is not None
    text = doc.value[key]
    lines = SOURCE.split("\n")
    where = doc.text_map((key,))
    for i, ch in enumerate(text):
        if ch in " \n\t\"":
            continue  # folded line breaks and escapes have no character of their own in the file
        p = where.at(i)
        assert lines[p.line - 1][p.column - 1] == ch, (key, i, ch, p)


def test_standalone_text_map() -> None:
    m = TextMap.standalone("ab\ncd")
    assert str(m.at(0)) == "<condition>:1:1"
    assert str(m.at(4)) == "<condition>:2:2"
    assert str(m.at(9)) == "<condition>:2:7"  # past the end: after the last character
    assert str(m.at_line_col(2, 1)) == "<condition>:2:2"


def test_merge_keys_and_aliases() -> None:
    doc, errors = read_yaml("f.yaml", "base: &b {within: 30s, count: 2}\nw:\n  <<: *b\n  count: 5\n")
    assert not errors and doc is not None
    assert doc.value["w"] == {"count": 5, "within": "30s"}


def test_a_self_referencing_alias_is_an_error() -> None:
    _, errors = read_yaml("f.yaml", "a: &x [1, *x]\n")
    assert [str(e) for e in errors] == ["f.yaml:1:4: a YAML alias refers to the collection it is in"]


def test_keys_are_their_raw_text() -> None:
    doc, _ = read_yaml("f.yaml", "on: 1\n0x10: 2\n")
    assert doc is not None and doc.value == {"on": 1, "0x10": 2}


@pytest.mark.parametrize(("text", "ns"), [("500ms", 500_000_000), ("30s", 30_000_000_000), ("5m", 300_000_000_000),
                                          ("1h", 3_600_000_000_000), ("1.5s", 1_500_000_000), ("250us", 250_000),
                                          ("2d", 172_800_000_000_000), (" 10 s ", 10_000_000_000)])
def test_durations(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize(("value", "message"), [
    (30, "expected a duration, a number and a unit (ms, s, m, h), like 500ms, 30s, 5m or 1h; got the number 30"),
    ("5 minutes", "bad duration '5 minutes': expected a number and a unit (ms, s, m, h), like 500ms, 30s, 5m or 1h"),
    ("0s", "bad duration '0s': must be more than zero"),
    (None, "expected a duration, a number and a unit (ms, s, m, h), like 500ms, 30s, 5m or 1h; got None"),
])
def test_bad_durations(value: object, message: str) -> None:
    with pytest.raises(UnitError) as info:
        parse_duration(value)
    assert str(info.value) == message


def test_sizes() -> None:
    assert parse_size("512MB") == 512 << 20
    assert parse_size("2g") == 2 << 30
    assert parse_size(4096) == 4096
    with pytest.raises(UnitError):
        parse_size("lots")
