"""tracefs `format` files: parsing (the corpus, this machine's tracefs, hand-made and broken texts) and decoding."""

from __future__ import annotations

import random
import re
import struct
import zipfile
from pathlib import Path

import pytest
from support import corpus_file

from dyntel.decoders.tracefs_format import (
    FieldShow,
    FormatField,
    TracepointFormat,
    decode_slowly,
    parse_field,
    parse_format,
)
from dyntel.errors import DecodeError
from dyntel.event import ArrayKind, Encoding, Event, Format
from dyntel.event_json import format_event, values_writer

COMMON = (
    "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
    "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
    "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
    "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n"
)

SYS_ENTER = (
    "name: sys_enter\nID: 443\nformat:\n" + COMMON + "\n"
    "\tfield:long id;\toffset:8;\tsize:8;\tsigned:1;\n"
    "\tfield:unsigned long args[6];\toffset:16;\tsize:48;\tsigned:0;\n"
    "\n"
    'print fmt: "NR %ld (%lx, %lx, %lx, %lx, %lx, %lx)", REC->id, REC->args[0], REC->args[1], REC->args[2], '
    "REC->args[3], REC->args[4], REC->args[5]\n"
)


def make_format(own_fields: list[str], name: str = "test", event_id: int = 1000) -> str:
    """A format text with the usual common fields and `own_fields` as (declaration; offset; size; signed) lines."""
    body = "".join(f"\t{line}\n" for line in own_fields)
    return f'name: {name}\nID: {event_id}\nformat:\n{COMMON}\n{body}\nprint fmt: "x"\n'


def entry(fmt: TracepointFormat, payload: bytes) -> bytes:
    """A raw entry: common fields (type = the format's id, pid 42) followed by `payload` at offset 8."""
    return struct.pack("<HBBi", fmt.id & 0xFFFF, 0, 0, 42) + payload


def payload_json(fmt: TracepointFormat, values: object) -> str:
    return format_event(Event(fmt.system, fmt.name, fmt.schema, values))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------
# The corpus of real format files


def _corpus_formats() -> list[tuple[str, str]]:
    path = corpus_file("formats/formats0.zip")
    with zipfile.ZipFile(path) as z:
        return [(info.filename, z.read(info).decode("utf-8")) for info in z.infolist() if not info.is_dir()]


def check_layout(fmt: TracepointFormat) -> None:
    """The parsed field list agrees with the file's own offsets and sizes."""
    assert fmt.name and fmt.id > 0
    assert fmt.common_field_count >= 1
    assert all(f.name.startswith("common_") for f in fmt.common_fields)
    assert not any(f.name.startswith("common_") for f in fmt.user_fields)
    end = 0
    for f in fmt.fields:
        assert f.offset >= end, f"{fmt.label}: {f.name} at {f.offset} overlaps the field before (ends at {end})"
        end = f.offset + f.size
        assert f.element_size in (1, 2, 4, 8)
        assert f.name and f.name != "noname"
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", f.name)
        if f.dynamic is not None:
            assert f.size == 4, f"{fmt.label}: {f.name} is {f.dynamic} but {f.size} bytes"
            assert f.array == ArrayKind.VARIABLE
        elif f.array == ArrayKind.FIXED:
            assert f.fixed_count * f.element_size == f.size
            if f.size:
                assert f.bracket_count == f.fixed_count or f.show in (FieldShow.STRING, FieldShow.BLOB)
        else:
            assert f.array == ArrayKind.NONE
            assert f.size in (1, 2, 4, 8) or f.show == FieldShow.BLOB, f"{fmt.label}: {f.name} is {f.size} bytes"
            if f.size in (1, 2, 4, 8):
                assert f.element_size == f.size
    common_end = fmt.common_fields[-1].offset + fmt.common_fields[-1].size
    assert fmt.eventheader_offset >= common_end
    assert fmt.schema.names == tuple(f.name for f in fmt.user_fields)
    for f, info in zip(fmt.user_fields, fmt.schema.fields, strict=True):
        assert info.name == f.name
        if info.array == ArrayKind.FIXED:
            assert info.fixed_count == f.fixed_count and info.element_size == f.element_size


def test_every_corpus_format_parses_and_agrees_with_its_layout() -> None:
    formats = _corpus_formats()
    assert len(formats) == 2751
    kinds: dict[str, int] = {}
    for member, text in formats:
        system, _, event = member.partition(" ")
        fmt = parse_format(text, system)
        assert (fmt.system, fmt.name) == (system, event)
        check_layout(fmt)
        kinds[fmt.kind] = kinds.get(fmt.kind, 0) + 1
        # The lenient parser agrees on every well-formed file.
        loose = parse_format(text, system, strict=False)
        assert [(f.name, f.offset, f.size, f.show) for f in loose.fields] == [
            (f.name, f.offset, f.size, f.show) for f in fmt.fields
        ]
    assert kinds == {"tracefs": 2749, "eventheader": 2}


def test_every_corpus_format_decodes_random_entries_like_the_field_by_field_rules() -> None:
    rng = random.Random(20240328)
    for member, text in _corpus_formats():
        fmt = parse_format(text, member.partition(" ")[0])
        need = max(f.offset + f.size for f in fmt.fields)
        raw = bytes(rng.randrange(256) for _ in range(need + rng.randrange(64)))
        values = fmt.decode(raw)
        assert values == decode_slowly(fmt.user_fields, raw), fmt.label
        assert fmt.decode(raw, big_endian=True) == decode_slowly(fmt.user_fields, raw, big_endian=True)
        line = payload_json(fmt, values)
        assert line.startswith('{"n":') and line.endswith("}")
        # Cut short: the same rules, no exception.
        for cut in (0, 8, need // 2, need - 1):
            assert fmt.decode(raw[:cut]) == decode_slowly(fmt.user_fields, raw[:cut]), (fmt.label, cut)


# ---------------------------------------------------------------------------------------------------------------
# This machine's tracefs

TRACEFS = Path("/sys/kernel/tracing/events")


def _machine_format(rel: str) -> str:
    path = TRACEFS / rel / "format"
    try:
        return path.read_text()
    except OSError as e:
        pytest.skip(f"cannot read {path}: {e}")


def test_machine_sys_enter() -> None:
    fmt = parse_format(_machine_format("raw_syscalls/sys_enter"), "raw_syscalls")
    check_layout(fmt)
    assert fmt.label == "raw_syscalls:sys_enter" and fmt.kind == "tracefs"
    assert [f.name for f in fmt.user_fields] == ["id", "args"]
    nr, args = fmt.schema.fields
    assert (nr.encoding, nr.format, nr.array) == (Encoding.VALUE64, Format.SIGNED_INT, ArrayKind.NONE)
    assert (args.format, args.array, args.fixed_count, args.element_size) == (Format.HEX_INT, ArrayKind.FIXED, 6, 8)
    raw = entry(fmt, struct.pack("<q6Q", 59, 0x7FFD0000, 0, 0xFFFFFFFFFFFFFFFF, 3, 4, 5))
    assert fmt.decode(raw) == (59, [0x7FFD0000, 0, 0xFFFFFFFFFFFFFFFF, 3, 4, 5])
    assert fmt.decode(struct.pack(">HBBi", 1, 0, 0, 42) + struct.pack(">q6Q", -1, 1, 2, 3, 4, 5, 6), True) == (
        -1,
        [1, 2, 3, 4, 5, 6],
    )
    assert payload_json(fmt, fmt.decode(raw)) == (
        '{"n":"raw_syscalls:sys_enter","id":59,"args":["0x7FFD0000","0x0","0xFFFFFFFFFFFFFFFF","0x3","0x4","0x5"],'
        '"meta":{}}'
    )


def test_machine_sched_switch() -> None:
    fmt = parse_format(_machine_format("sched/sched_switch"), "sched")
    check_layout(fmt)
    names = [f.name for f in fmt.user_fields]
    assert names[:2] == ["prev_comm", "prev_pid"] and "next_comm" in names
    comm = fmt.user_fields[0]
    assert (comm.show, comm.array, comm.fixed_count) == (FieldShow.STRING, ArrayKind.FIXED, 16)
    assert fmt.user_fields[1].show == FieldShow.HEX  # pid_t is a type the reference does not know
    values = dict(zip(fmt.schema.names, fmt.decode(_pack_sched_switch(fmt)), strict=True))
    assert values["prev_comm"] == "perf" and values["next_comm"] == "migration/0"
    assert values["prev_pid"] == 0x950 and values["prev_state"] == 2


def _pack_sched_switch(fmt: TracepointFormat) -> bytes:
    need = max(f.offset + f.size for f in fmt.fields)
    raw = bytearray(need)
    by_name = {f.name: f for f in fmt.fields}
    struct.pack_into("<H", raw, 0, fmt.id)
    for name, text in (("prev_comm", b"perf"), ("next_comm", b"migration/0")):
        f = by_name[name]
        raw[f.offset : f.offset + len(text)] = text
    for name, number in (("prev_pid", 0x950), ("prev_prio", 120), ("prev_state", 2), ("next_pid", 0x11)):
        f = by_name[name]
        raw[f.offset : f.offset + f.size] = number.to_bytes(f.size, "little", signed=True)
    return bytes(raw)


def test_every_machine_format_parses() -> None:
    paths = sorted(TRACEFS.glob("*/*/format"))
    if not paths:
        pytest.skip("no tracefs events on this machine")
    parsed = 0
    for path in paths:
        try:
            text = path.read_text()
        except OSError:
            continue  # some formats are readable only with more privilege, or vanish while we list them
        fmt = parse_format(text, path.parent.parent.name)
        assert fmt.name == path.parent.name
        parsed += 1
        fmt.decode(bytes(max((f.offset + f.size for f in fmt.fields), default=0)))
    assert parsed > 0


# ---------------------------------------------------------------------------------------------------------------
# How each C type is shown: the reference's rules (PerfFieldMetadata), with its quirks

SHOWN = [
    # declaration, size, signed, -> show, element_size, array, json of the bytes 01 02 ... (little-endian)
    ("unsigned long ip", 8, False, FieldShow.HEX, 8, ArrayKind.NONE),
    ("long id", 8, True, FieldShow.SIGNED, 8, ArrayKind.NONE),
    ("long long x", 8, True, FieldShow.SIGNED, 8, ArrayKind.NONE),
    ("unsigned long long x", 8, False, FieldShow.UNSIGNED, 8, ArrayKind.NONE),
    ("int x", 4, True, FieldShow.SIGNED, 4, ArrayKind.NONE),
    ("int x", 4, False, FieldShow.UNSIGNED, 4, ArrayKind.NONE),  # signed:0 overrides the type
    ("unsigned x", 4, False, FieldShow.UNSIGNED, 4, ArrayKind.NONE),
    ("unsigned int x", 4, True, FieldShow.SIGNED, 4, ArrayKind.NONE),
    ("short x", 2, True, FieldShow.SIGNED, 2, ArrayKind.NONE),
    ("unsigned short x", 2, False, FieldShow.UNSIGNED, 2, ArrayKind.NONE),
    ("char c", 1, True, FieldShow.STRING, 1, ArrayKind.NONE),
    ("unsigned char c", 1, False, FieldShow.UNSIGNED, 1, ArrayKind.NONE),
    ("signed char c", 1, True, FieldShow.SIGNED, 1, ArrayKind.NONE),
    ("char comm[16]", 16, True, FieldShow.STRING, 1, ArrayKind.FIXED),
    ("u8 x", 1, False, FieldShow.UNSIGNED, 1, ArrayKind.NONE),
    ("s8 x", 1, True, FieldShow.SIGNED, 1, ArrayKind.NONE),
    ("__u32 x", 4, False, FieldShow.UNSIGNED, 4, ArrayKind.NONE),
    ("uint64_t x", 8, False, FieldShow.UNSIGNED, 8, ArrayKind.NONE),
    ("s64 x", 8, True, FieldShow.SIGNED, 8, ArrayKind.NONE),
    ("u64 x", 8, True, FieldShow.SIGNED, 8, ArrayKind.NONE),  # signed:1 wins over the type
    ("pid_t pid", 4, True, FieldShow.HEX, 4, ArrayKind.NONE),
    ("bool b", 1, False, FieldShow.HEX, 1, ArrayKind.NONE),
    ("uint x", 4, False, FieldShow.HEX, 4, ArrayKind.NONE),  # not in the reference's list
    ("enum zone_type z", 4, False, FieldShow.HEX, 4, ArrayKind.NONE),
    ("const clockid_t which", 4, True, FieldShow.HEX, 4, ArrayKind.NONE),
    ("void * p", 8, False, FieldShow.HEX, 8, ArrayKind.NONE),
    ("const char *const * argv", 8, False, FieldShow.HEX, 8, ArrayKind.NONE),
    ("struct file_lock * fl", 8, False, FieldShow.HEX, 8, ArrayKind.NONE),
    ("struct foo s", 16, False, FieldShow.BLOB, 1, ArrayKind.NONE),
    ("__data_loc char[] name", 4, False, FieldShow.STRING, 1, ArrayKind.VARIABLE),
    ("__data_loc u8[] buf", 4, False, FieldShow.UNSIGNED, 1, ArrayKind.VARIABLE),
    ("__rel_loc char[] msg", 4, False, FieldShow.STRING, 1, ArrayKind.VARIABLE),
    ("u32 buf[]", 0, False, FieldShow.UNSIGNED, 4, ArrayKind.FIXED),
    ("dev_t devs[4]", 16, False, FieldShow.HEX, 4, ArrayKind.FIXED),  # element size from size / count
    ("xfs_weird_t w[3]", 15, False, FieldShow.HEX, 1, ArrayKind.FIXED),  # 5-byte elements: bytes
    ("u8 saddr[sizeof(struct in6_addr)]", 16, False, FieldShow.UNSIGNED, 1, ArrayKind.FIXED),
    ("int __attribute__((aligned(8))) x", 4, True, FieldShow.SIGNED, 4, ArrayKind.NONE),
]


@pytest.mark.parametrize(("decl", "size", "signed", "show", "element_size", "array"), SHOWN)
def test_shown_like_the_reference(
    decl: str, size: int, signed: bool, show: FieldShow, element_size: int, array: ArrayKind
) -> None:
    f = parse_field(decl, 8, size, signed)
    assert (f.show, f.element_size, f.array) == (show, element_size, array)


def test_names_and_type_text() -> None:
    f = parse_field("unsigned long args[6]", 16, 48, False)
    assert (f.name, f.type_text, f.bracket_count, f.fixed_count) == ("args", "unsigned long", 6, 6)
    f = parse_field("__data_loc char[] filename", 8, 4, False)
    assert (f.name, f.type_text, f.dynamic) == ("filename", "__data_loc char[]", "data_loc")
    assert parse_field("u8 a[TASK_COMM_LEN]", 8, 16, False).fixed_count == 16
    assert parse_field("unsigned long", 8, 8, False).name == "noname"
    assert parse_field("long", 8, 8, None).show == FieldShow.SIGNED
    f = parse_field("unsigned long args[6]", 16, 24, False, long_size=4)
    assert (f.element_size, f.fixed_count) == (4, 6)
    assert parse_field("void * p", 8, 4, False, long_size=4).element_size == 4


# ---------------------------------------------------------------------------------------------------------------
# Decoding hand-made entries


def test_fixed_arrays_strings_and_latin1() -> None:
    fmt = parse_format(
        make_format(
            [
                "field:char comm[8];\toffset:8;\tsize:8;\tsigned:1;",
                "field:char full[4];\toffset:16;\tsize:4;\tsigned:1;",
                "field:u16 ports[3];\toffset:20;\tsize:6;\tsigned:0;",
                "field:u8 addr[4];\toffset:26;\tsize:4;\tsigned:0;",
                "field:s16 delta;\toffset:30;\tsize:2;\tsigned:1;",
                "field:s32 big[2];\toffset:32;\tsize:8;\tsigned:1;",
                "field:char c;\toffset:40;\tsize:1;\tsigned:1;",
            ]
        )
    )
    raw = entry(
        fmt, b"ab\0zz\0\0\0" + b"\xe9t\xe9!" + struct.pack("<3H4Bh2i", 80, 443, 65535, 10, 0, 0, 1, -1, -2, 3) + b"Q"
    )
    values = fmt.decode(raw)
    # A string ends at the first NUL, or at the end of its bytes when there is none; bytes are Latin-1.
    assert values == ("ab", "\xe9t\xe9!", [80, 443, 65535], [10, 0, 0, 1], 65535, [-2, 3], "Q")
    assert payload_json(fmt, values) == (
        '{"n":":test","comm":"ab","full":"\xe9t\xe9!","ports":[80,443,65535],"addr":[10,0,0,1],'
        '"delta":65535,"big":[-2,3],"c":"Q","meta":{}}'
    )
    # 16-bit "signed" values print unsigned in the reference (its printf sees an unsigned 16-bit value).
    assert fmt.schema.fields[4].format == Format.UNSIGNED_INT
    assert fmt.schema.fields[5].format == Format.SIGNED_INT


def test_data_loc_and_rel_loc() -> None:
    fmt = parse_format(
        make_format(
            [
                "field:__data_loc char[] name;\toffset:8;\tsize:4;\tsigned:1;",
                "field:__rel_loc char[] msg;\toffset:12;\tsize:4;\tsigned:1;",
                "field:__data_loc u32[] nums;\toffset:16;\tsize:4;\tsigned:0;",
                "field:u32 after;\toffset:20;\tsize:4;\tsigned:0;",
            ]
        )
    )
    name, msg, nums = b"hello\0", b"caf\xe9", struct.pack("<3I", 1, 2, 0xFFFFFFFF)
    base = 24
    name_off, msg_off, nums_off = base, base + len(name), base + len(name) + len(msg)
    rel = msg_off - 16  # relative to the end of the msg field (offset 12 + 4)
    payload = struct.pack("<IIII", len(name) << 16 | name_off, len(msg) << 16 | rel, 12 << 16 | nums_off, 7)
    raw = entry(fmt, payload) + name + msg + nums
    assert fmt.decode(raw) == ("hello", "caf\xe9", [1, 2, 0xFFFFFFFF], 7)
    assert fmt.decode(raw) == decode_slowly(fmt.user_fields, raw)
    # Data that runs past the entry is empty, as in the reference (not clipped).
    assert fmt.decode(raw[:-1]) == ("hello", "caf\xe9", [], 7)
    short_payload = struct.pack("<IIII", 100 << 16 | name_off, 0, 5 << 16 | nums_off, 7)
    assert fmt.decode(entry(fmt, short_payload) + name + msg + nums) == ("", "", [1], 7)
    assert fmt.decode(memoryview(raw)) == fmt.decode(raw)
    assert payload_json(fmt, fmt.decode(raw)) == (
        '{"n":":test","name":"hello","msg":"caf\xe9","nums":[1,2,4294967295],"after":7,"meta":{}}'
    )


def test_unusual_fields_follow_the_reference() -> None:
    fmt = parse_format(
        make_format(
            [
                "field:struct foo blob;\toffset:8;\tsize:3;\tsigned:0;",
                "field:__data_loc char[] short_loc;\toffset:11;\tsize:2;\tsigned:0;",  # offset only, NUL-ended
                "field:u64 wide;\toffset:13;\tsize:16;\tsigned:0;",  # reads the first 8 bytes
                "field:int narrow;\toffset:29;\tsize:3;\tsigned:1;",  # smaller than an int: no value
                "field:u32 rest[];\toffset:32;\tsize:0;\tsigned:0;",  # the rest of the entry
            ]
        )
    )
    body = b"\x01\x02\x03" + struct.pack("<H", 40) + struct.pack("<Q", 9) + bytes(8) + b"\xff\xff\xff"
    raw = entry(fmt, body) + struct.pack("<2I", 5, 6) + b"xy\0"
    assert len(raw) == 43
    values = fmt.decode(raw)
    # The rest of the entry from offset 32 is 11 bytes: two u32s, and 3 bytes that make no element.
    assert values == (b"\x01\x02\x03", "xy", 9, None, [5, 6])
    assert values == decode_slowly(fmt.user_fields, raw)
    assert fmt.schema.fields[0].format == Format.HEX_BYTES
    # No NUL after a 2-byte location: empty.
    assert fmt.decode(raw[:-1])[1] == ""


def test_truncated_entries_give_empty_values() -> None:
    fmt = parse_format(SYS_ENTER, "raw_syscalls")
    raw = entry(fmt, struct.pack("<q6Q", 1, 2, 3, 4, 5, 6, 7))
    assert fmt.decode(raw[:16]) == (1, [])  # args does not fit: []
    assert fmt.decode(raw[:10]) == (None, [])  # id does not fit: null
    assert fmt.decode(b"") == (None, [])
    for cut in range(len(raw) + 1):
        assert fmt.decode(raw[:cut]) == decode_slowly(fmt.user_fields, raw[:cut])
    # What the reference prints for fields outside the entry.
    assert payload_json(fmt, fmt.decode(raw[:10])) == '{"n":"raw_syscalls:sys_enter","id":null,"args":[],"meta":{}}'


def test_overlapping_fields() -> None:
    fmt = parse_format(
        make_format(
            [
                "field:u32 whole;\toffset:8;\tsize:4;\tsigned:0;",
                "field:u16 low;\toffset:8;\tsize:2;\tsigned:0;",
                "field:u8 last;\toffset:11;\tsize:1;\tsigned:0;",
            ]
        ),
        strict=True,
    )
    raw = entry(fmt, struct.pack("<I", 0x11223344))
    assert fmt.decode(raw) == (0x11223344, 0x3344, 0x11)


def test_eventheader_kind() -> None:
    text = make_format(
        [
            "field:u8 eventheader_flags;\toffset:8;\tsize:1;\tsigned:0;",
            "field:u8 version;\toffset:9;\tsize:1;\tsigned:0;",
            "field:u16 id;\toffset:10;\tsize:2;\tsigned:0;",
            "field:u16 tag;\toffset:12;\tsize:2;\tsigned:0;",
            "field:u8 opcode;\toffset:14;\tsize:1;\tsigned:0;",
            "field:u8 level;\toffset:15;\tsize:1;\tsigned:0;",
        ],
        name="MyProvider_L5K1",
    )
    fmt = parse_format(text, "user_events")
    assert fmt.kind == "eventheader" and fmt.eventheader_offset == 8
    assert parse_format(SYS_ENTER).kind == "tracefs"


def test_multi_line_print_fmt_and_crlf() -> None:
    text = SYS_ENTER.replace('print fmt: "NR', 'print fmt: "N\nR').replace("\n", "\r\n")
    fmt = parse_format(text)
    assert fmt.print_fmt.startswith('"N\nR %ld') and [f.name for f in fmt.user_fields] == ["id", "args"]


# ---------------------------------------------------------------------------------------------------------------
# Broken texts: DecodeError naming the line, never another exception


def test_every_truncation_of_a_format_is_parsed_or_named() -> None:
    cut_at_print_fmt = SYS_ENTER.index('print fmt: "')
    for cut in range(len(SYS_ENTER)):
        text = SYS_ENTER[:cut]
        if cut >= cut_at_print_fmt + len("print fmt:"):
            fmt = parse_format(text)  # only the print fmt is cut: nothing lost that decoding needs
            assert [f.name for f in fmt.user_fields] == ["id", "args"]
            continue
        with pytest.raises(DecodeError, match=r"line \d+"):
            parse_format(text)
        try:
            parse_format(text, strict=False)
        except DecodeError as e:
            assert "line" in str(e)


def test_garbled_formats_raise_decode_error_naming_the_line() -> None:
    bad = [
        ("\tfield:long id;\toffset:8;\tsize:8;", "\tfield:long id;\toffset:8;\tsize:eight;"),
        ("\tfield:unsigned long args[6];", "\tfield:unsigned long args[6];\tjunk"),
        ("\tfield:long id;\toffset:8;", "\tfield:long id;\toffset:99999;"),
        ("ID: 443", "ID: forty"),
        ("name: sys_enter", "sys_enter"),
        ("\tsize:48;\tsigned:0;", "\tsize:48;\tsigned:x;"),
        ("\tfield:unsigned long args[6];", "\n\tfield:unsigned long args[6];"),  # a blank line too many
    ]
    for old, new in bad:
        text = SYS_ENTER.replace(old, new, 1)
        assert text != SYS_ENTER
        with pytest.raises(DecodeError, match=r"line \d+"):
            parse_format(text, "raw_syscalls")
    # The reference skips a field line it cannot use and keeps the rest; so does strict=False.
    loose = parse_format(SYS_ENTER.replace("offset:8;", "offset:99999;", 1), strict=False)
    assert [f.name for f in loose.user_fields] == ["args"]
    # ... and, like C's strtoul, it reads a size with no digits as 0.
    loose = parse_format(SYS_ENTER.replace("size:8;", "size:eight;", 1), strict=False)
    assert [(f.name, f.size) for f in loose.user_fields] == [("id", 0), ("args", 48)]
    with pytest.raises(DecodeError, match=r"line 9: .size:. value .eight."):
        parse_format(SYS_ENTER.replace("size:8;", "size:eight;", 1))


def test_random_mutations_never_raise_anything_but_decode_error() -> None:
    rng = random.Random(7)
    alphabet = "\n\t ;:[]()\"'*0123456789xabcdefield_ofsetzign\r\\"
    for _ in range(3000):
        chars = list(SYS_ENTER)
        for _ in range(rng.randrange(1, 6)):
            i = rng.randrange(len(chars))
            op = rng.randrange(3)
            if op == 0:
                chars[i] = rng.choice(alphabet)
            elif op == 1:
                del chars[i]
            else:
                chars.insert(i, rng.choice(alphabet))
        text = "".join(chars)
        for strict in (True, False):
            try:
                fmt = parse_format(text, "raw_syscalls", strict=strict)
            except DecodeError as e:
                assert re.search(r"line \d+", str(e)), str(e)
                continue
            raw = bytes(rng.randrange(256) for _ in range(rng.randrange(80)))
            assert fmt.decode(raw) == decode_slowly(fmt.user_fields, raw)


def test_bytes_text_and_missing_system() -> None:
    fmt = parse_format(SYS_ENTER.encode())
    assert (fmt.system, fmt.label) == ("", "sys_enter")


# ---------------------------------------------------------------------------------------------------------------
# Against the reference decoder's output: sched_switch samples of the corpus perf.data


def _perf_samples(buf: bytes) -> tuple[list[tuple[int, int, bytes]], bytes]:
    """((attr type, config, raw) per PERF_RECORD_SAMPLE with PERF_SAMPLE_RAW, tracing data) of a file-mode perf.data."""
    assert buf[:8] == b"PERFILE2"
    _size, attr_size, a_off, a_size, d_off, d_size = struct.unpack_from("<6Q", buf, 8)
    features = int.from_bytes(buf[72:104], "little")
    attrs = []
    for pos in range(a_off, a_off + a_size, attr_size):
        typ, _asize, config, _period, sample_type, _read_format = struct.unpack_from("<IIQQQQ", buf, pos)
        ids_off, ids_size = struct.unpack_from("<QQ", buf, pos + attr_size - 16)
        ids = struct.unpack_from(f"<{ids_size // 8}Q", buf, ids_off)
        attrs.append((typ, config, sample_type, ids))
    by_id = {i: a for a in attrs for i in a[3]}
    # Feature sections follow the data section, one (offset, size) per set bit; HEADER_TRACING_DATA is bit 1.
    assert features & 2
    table = d_off + d_size + 16 * (features & 1)
    td_off, td_size = struct.unpack_from("<QQ", buf, table)
    samples = []
    pos = d_off
    while pos < d_off + d_size:
        rtype, _misc, rsize = struct.unpack_from("<IHH", buf, pos)
        if rtype == 9:
            p = pos + 8
            st = attrs[0][2]
            if st & (1 << 16):
                st = by_id[struct.unpack_from("<Q", buf, p)[0]][2]
            attr = None
            for bit in (16, 0, 1, 2, 3, 6, 9, 7, 8):  # IDENTIFIER IP TID TIME ADDR ID STREAM_ID CPU PERIOD
                if st & (1 << bit):
                    if bit in (6, 16):
                        attr = by_id[struct.unpack_from("<Q", buf, p)[0]]
                    p += 8
            assert not st & ((1 << 4) | (1 << 5)), "READ and CALLCHAIN are not expected in this recording"
            if st & (1 << 10):
                (n,) = struct.unpack_from("<I", buf, p)
                attr = attr or attrs[0]
                samples.append((attr[0], attr[1], buf[p + 4 : p + 4 + n]))
        pos += rsize
    return samples, buf[td_off : td_off + td_size]


def _tracing_data_formats(blob: bytes) -> tuple[bool, int, list[tuple[str, str]]]:
    """(big-endian, sizeof(long), (system, format text) per event) of a HEADER_TRACING_DATA blob."""
    assert blob.startswith(b"\x17\x08\x44tracing")
    pos = blob.index(b"\0", 10) + 1  # after the version string
    big_endian, long_size = blob[pos] != 0, blob[pos + 1]
    bo = ">" if big_endian else "<"
    pos += 2 + 4  # the two bytes, the page size
    for name in (b"header_page\0", b"header_event\0"):
        assert blob.startswith(name, pos)
        pos += len(name)
        pos += 8 + struct.unpack_from(bo + "Q", blob, pos)[0]
    (count,) = struct.unpack_from(bo + "I", blob, pos)
    pos += 4
    for _ in range(count):  # ftrace's own formats
        pos += 8 + struct.unpack_from(bo + "Q", blob, pos)[0]
    (systems,) = struct.unpack_from(bo + "I", blob, pos)
    pos += 4
    out = []
    for _ in range(systems):
        end = blob.index(b"\0", pos)
        system = blob[pos:end].decode()
        (events,) = struct.unpack_from(bo + "I", blob, end + 1)
        pos = end + 5
        for _ in range(events):
            (size,) = struct.unpack_from(bo + "Q", blob, pos)
            out.append((system, blob[pos + 8 : pos + 8 + size].decode()))
            pos += 8 + size
    return big_endian, long_size, out


def test_sched_switch_values_print_as_the_reference_prints_them() -> None:
    data = corpus_file("linuxtracepoints/perf.data").read_bytes()
    expected_text = corpus_file("linuxtracepoints/perf.data.linux.json").read_bytes().decode("utf-8", "surrogateescape")
    samples, tracing = _perf_samples(data)
    big_endian, long_size, texts = _tracing_data_formats(tracing)
    formats = {}
    for system, text in texts:
        fmt = parse_format(text, system, long_size)
        formats[fmt.id] = fmt
    assert any(f.kind == "eventheader" for f in formats.values())
    sched = next(f for f in formats.values() if f.label == "sched:sched_switch")
    ours = sorted(
        values_writer(sched.schema)(sched.decode(raw, big_endian))
        for typ, config, raw in samples
        if typ == 2 and config == sched.id
    )
    prefix = '{"n":"sched:sched_switch"'
    theirs = sorted(
        line.strip()[len(prefix) : line.strip().index(',"meta":')]
        for line in expected_text.split("\n")
        if line.strip().startswith(prefix)
    )
    assert len(ours) == len(theirs) == 285
    assert ours == theirs


def test_format_field_is_a_plain_record() -> None:
    f = FormatField("x", "int x", "int", 8, 4, True, ArrayKind.NONE, 0, None, 4, FieldShow.SIGNED)
    assert f.bracket_count == 0
