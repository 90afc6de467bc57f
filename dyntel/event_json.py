"""Events as JSON, in the shape the reference decoder (LinuxTracepoints' perf-decode) prints.

An EVENT is `{"n": "provider:event", <payload fields in order>, "meta": {...}}`. How each payload value is shown
depends on its field's encoding and format (hex integers as "0x..." strings, errno as "ENOENT(2)", ...); a writer
for each schema is generated once (Python source compiled with `compile`) and cached on the schema, so writing an
event is one call that formats its values with no per-field dispatch.

Value formatters (and `json_string`, `format_uuid`) live in `dyntel.value_format`; this module asks it for one
formatter per field and inlines the simple ones.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable, Sequence
from typing import Any

from dyntel.event import ArrayKind, Encoding, Event, FieldInfo, Format, Schema, schema_cached
from dyntel.value_format import effective_format, value_formatter

# Exported from here too, where most callers look for them.
from dyntel.value_format import format_uuid as format_uuid
from dyntel.value_format import json_string as json_string

ValuesWriter = Callable[[Sequence[Any]], str]


class _TimeFormatter:
    """ISO-8601 with nanoseconds; the date part is cached per second because events come in bursts."""

    __slots__ = ("_prefix", "_sec")

    def __init__(self) -> None:
        self._sec = -1
        self._prefix = ""

    def __call__(self, ns: int) -> str:
        sec, frac = divmod(ns, 1_000_000_000)
        if sec != self._sec:
            self._sec = sec
            self._prefix = _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(sec))
        return f'"{self._prefix}.{frac:09d}Z"'


_format_wall_time = _TimeFormatter()


def format_meta(event: Event) -> str:
    """The `"meta":{...}` member, with the keys the reference prints and in its order."""
    t = event.time
    cpu = event.cpu
    pid = event.pid
    tid = event.tid
    if t is not None and event.time_is_wall and cpu is not None and pid is not None and tid is not None:
        # Every perf sample of a recording with a clock: the common case, one format.
        head = f'"meta":{{"time":{_format_wall_time(t)},"cpu":{cpu},"pid":{pid},"tid":{tid}'
    else:
        parts: list[str] = []
        if t is not None:
            if event.time_is_wall:
                parts.append('"time":' + _format_wall_time(t))
            else:
                parts.append(f'"time":{t // 1_000_000_000}.{t % 1_000_000_000:09d}')
        if cpu is not None:
            parts.append(f'"cpu":{cpu}')
        if pid is not None:
            parts.append(f'"pid":{pid}')
        if tid is not None:
            parts.append(f'"tid":{tid}')
        head = '"meta":{' + ",".join(parts)
        if not parts:
            return head + _event_info(event)[1:] + "}"
    if (event.level is None and event.keyword is None and event.id is None and event.opcode is None
            and event.version is None and event.tag is None and event.activity is None
            and event.related_activity is None):
        return head + "}"  # a tracefs sample: no event identity to show
    return head + _event_info(event) + "}"


def _event_info(event: Event) -> str:
    """`,"id":..,"level":..` and the rest of the EventHeader identity, each only where it is set."""
    parts: list[str] = [""]
    if event.id:
        parts.append(f'"id":{event.id}')
    if event.version:
        parts.append(f'"version":{event.version}')
    if event.level:
        parts.append(f'"level":{event.level}')
    if event.keyword:
        parts.append(f'"keyword":"0x{event.keyword:X}"')
    if event.opcode:
        parts.append(f'"opcode":{event.opcode}')
    if event.tag:
        parts.append(f'"tag":"0x{event.tag:X}"')
    if event.activity is not None:
        parts.append(f'"activity":"{format_uuid(event.activity)}"')
    if event.related_activity is not None:
        parts.append(f'"relatedActivity":"{format_uuid(event.related_activity)}"')
    return ",".join(parts) if len(parts) > 1 else ""


def format_event(event: Event, field_tags: bool = False) -> str:
    """One EVENT as a single line of JSON.

    `field_tags`: show an EventHeader field's tag in its key, "name;tag=0xN", as the reference's .dat tools do
    (its perf.data output of the corpus does not). Names in the schema stay plain, so rules read `fields.name`.
    """
    n = json_string(event.provider + ":" + event.name)
    body = values_writer(event.schema, field_tags)(event.values)
    return "{" + '"n":' + n + body + "," + format_meta(event) + "}"


def values_writer(schema: Schema, field_tags: bool = False) -> ValuesWriter:
    """The compiled writer of a schema's values: returns `,"name":value` for each field, in order."""
    if field_tags:
        tagged: ValuesWriter = schema_cached(schema, "event_json_tags", _compile_tagged_writer)
        return tagged
    writer: ValuesWriter = schema_cached(schema, "event_json", _compile_plain_writer)
    return writer


def _compile_plain_writer(schema: Schema) -> ValuesWriter:
    return _compile_values_writer(schema, False)


def _compile_tagged_writer(schema: Schema) -> ValuesWriter:
    return _compile_values_writer(schema, True)


def _compile_values_writer(schema: Schema, field_tags: bool) -> ValuesWriter:
    """Two writers in one: a single %-template for the schema, where integers (the bulk of tracepoint payloads) are
    formatted by the template itself, and a general one that calls each field's formatter. The template declines,
    by raising, whatever it cannot show right (None for a field the event did not reach, an array of another length
    than the schema's), and the general writer shows it."""
    env: dict[str, Any] = {}
    general: list[str] = []
    template: list[str] = []
    args: list[str] = []
    for i, info in enumerate(schema.fields):
        env[f"_f{i}"] = _field_formatter(info, value_formatter, field_tags)
        name = f"{info.name};tag=0x{info.tag:X}" if field_tags and info.tag else info.name
        literal = "," + json_string(name) + ":"
        general.append(literal.replace("{", "{{").replace("}", "}}") + f"{{_f{i}(v[{i}])}}")
        template.append(literal.replace("%", "%%"))
        spec = _int_spec(info)
        if spec is None:
            template.append("%s")
            args.append(f"_f{i}(v[{i}])")
        elif info.array == ArrayKind.NONE:
            template.append(spec)
            args.append(f"v[{i}]")
        else:
            template.append("[" + ",".join([spec] * info.fixed_count) + "]")
            args.append(f"*v[{i}]")
    if not general:
        return _no_values
    env["_T"] = "".join(template)
    src = (
        "def _general(v):\n"
        f"    return f{''.join(general)!r}\n"
        "def _w(v):\n"
        "    try:\n"
        f"        return _T % ({', '.join(args)},)\n"
        "    except (TypeError, ValueError, IndexError):\n"
        "        return _general(v)\n"
    )
    exec(compile(src, "<event_json values writer>", "exec"), env)
    writer: ValuesWriter = env["_w"]
    return writer


_INLINE_ENCODINGS = frozenset({Encoding.VALUE8, Encoding.VALUE16, Encoding.VALUE32, Encoding.VALUE64})
_MAX_INLINE_ARRAY = 64


def _int_spec(info: FieldInfo) -> str | None:
    """The %-conversion that shows this integer field as its formatter would, or None when only the formatter can.

    Decoders hand hex-shown integers over unsigned (see Event), so "%X" needs no mask; %d and %X raise on None, and
    a wrong element count raises in the % operator, which sends the event to the general writer.
    """
    if info.children is not None or info.encoding not in _INLINE_ENCODINGS:
        return None
    if info.array == ArrayKind.VARIABLE or (
        info.array == ArrayKind.FIXED and not 0 < info.fixed_count <= _MAX_INLINE_ARRAY
    ):
        return None
    fmt = effective_format(info)
    if fmt in (Format.UNSIGNED_INT, Format.SIGNED_INT, Format.PID, Format.PORT):
        return "%d"
    if fmt == Format.HEX_INT:
        return '"0x%X"'
    return None


def _no_values(v: Sequence[Any]) -> str:
    return ""


def _field_formatter(
    info: FieldInfo, value_formatter: Callable[[FieldInfo], Callable[[Any], str]], field_tags: bool
) -> Callable[[Any], str]:
    """A function from a field's value to its JSON text (arrays and structs included)."""
    if info.children is not None:
        inner = values_writer(info.children, field_tags)

        def struct_fmt(v: Sequence[Any]) -> str:
            return "{" + inner(v)[1:] + "}"

        if info.array == ArrayKind.NONE:
            return struct_fmt
        return lambda v: "[" + ",".join([struct_fmt(x) for x in v]) + "]"
    scalar = value_formatter(info)
    if info.array == ArrayKind.NONE:
        return scalar
    return lambda v: "[" + ",".join([scalar(x) for x in v]) + "]"
