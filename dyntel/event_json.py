"""Events as JSON, in the shape the reference decoder (LinuxTracepoints' perf-decode) prints.

An EVENT is `{"n": "provider:event", <payload fields in order>, "meta": {...}}`. How each payload value is shown
depends on its field's encoding and format (hex integers as "0x..." strings, errno as "ENOENT(2)", ...); a writer
for each schema is generated once (Python source compiled with `compile`) and cached on the schema, so writing an
event is one call that formats its values with no per-field dispatch.

Value formatters for the richer EventHeader formats live in `dyntel.decoders.value_format`; this module asks it for
one formatter per field and inlines the simple ones.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring
from typing import Any

from dyntel.event import ArrayKind, Event, FieldInfo, Schema, schema_cached

ValuesWriter = Callable[[Sequence[Any]], str]

_encode_str: Callable[[str], str] = encode_basestring


def json_string(s: str) -> str:
    """A JSON string literal; non-ASCII text stays as it is (the output is UTF-8, like the reference's)."""
    return _encode_str(s)


def format_uuid(b: bytes) -> str:
    h = b.hex()
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


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
    parts: list[str] = []
    t = event.time
    if t is not None:
        if event.time_is_wall:
            parts.append('"time":' + _format_wall_time(t))
        else:
            parts.append(f'"time":{t // 1_000_000_000}.{t % 1_000_000_000:09d}')
    if event.cpu is not None:
        parts.append(f'"cpu":{event.cpu}')
    if event.pid is not None:
        parts.append(f'"pid":{event.pid}')
    if event.tid is not None:
        parts.append(f'"tid":{event.tid}')
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
    return '"meta":{' + ",".join(parts) + "}"


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
    from dyntel.decoders.value_format import value_formatter

    env: dict[str, Any] = {}
    text: list[str] = []
    for i, info in enumerate(schema.fields):
        env[f"_f{i}"] = _field_formatter(info, value_formatter, field_tags)
        name = f"{info.name};tag=0x{info.tag:X}" if field_tags and info.tag else info.name
        literal = "," + json_string(name) + ":"
        text.append(literal.replace("{", "{{").replace("}", "}}") + f"{{_f{i}(v[{i}])}}")
    if not text:
        return _no_values
    src = "def _w(v):\n    return f" + repr("".join(text)) + "\n"
    exec(compile(src, "<event_json values writer>", "exec"), env)
    writer: ValuesWriter = env["_w"]
    return writer


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
