"""The one event type that flows from every decoder to every rule.

An event's payload is split in two: a `Schema` that is shared by every event of one type (field names and how each
is encoded and shown; built once per tracepoint format or EventHeader metadata blob and cached), and the event's own
`values`, one per schema field, in order. Decoders therefore allocate one sequence of values per event and nothing
else for the payload; `Event.fields` builds the name -> value mapping only when something asks for it.

Encodings and formats use the EventHeader vocabulary (eventheader.h), which is a superset of what tracefs formats
and TraceLogging can express, so one JSON writer and one rule engine serve every source.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class Encoding(IntEnum):
    """How a field's bytes are laid out (event_field_encoding, without its flag bits)."""

    INVALID = 0
    STRUCT = 1
    VALUE8 = 2
    VALUE16 = 3
    VALUE32 = 4
    VALUE64 = 5
    VALUE128 = 6
    ZSTRING_CHAR8 = 7
    ZSTRING_CHAR16 = 8
    ZSTRING_CHAR32 = 9
    STRING_LENGTH16_CHAR8 = 10
    STRING_LENGTH16_CHAR16 = 11
    STRING_LENGTH16_CHAR32 = 12
    BINARY_LENGTH16_CHAR8 = 13


class Format(IntEnum):
    """How a field's value is meant to be shown (event_field_format)."""

    DEFAULT = 0
    UNSIGNED_INT = 1
    SIGNED_INT = 2
    HEX_INT = 3
    ERRNO = 4
    PID = 5
    TIME = 6
    BOOLEAN = 7
    FLOAT = 8
    HEX_BYTES = 9
    STRING8 = 10
    STRING_UTF = 11
    STRING_UTF_BOM = 12
    STRING_XML = 13
    STRING_JSON = 14
    UUID = 15
    PORT = 16
    IP_ADDRESS = 17
    IP_ADDRESS_OBSOLETE = 18


class ArrayKind(IntEnum):
    NONE = 0
    FIXED = 1  # element count in the metadata (or the tracefs format)
    VARIABLE = 2  # element count in the payload


@dataclass(slots=True, eq=False)
class FieldInfo:
    """One payload field of an event type. Shared by every event of that type."""

    name: str
    encoding: Encoding
    format: Format = Format.DEFAULT
    array: ArrayKind = ArrayKind.NONE
    fixed_count: int = 0  # element count when array is FIXED
    children: Schema | None = None  # for Encoding.STRUCT: the struct's own fields
    tag: int = 0  # the EventHeader field tag (0 when none)
    element_size: int = 0  # bytes per element for VALUEn encodings (1, 2, 4, 8, 16); 0 when not fixed-size


@dataclass(slots=True, eq=False)
class Schema:
    """The payload layout of one event type: its fields in order.

    `cache` holds per-schema compiled helpers (a JSON writer, a rule accessor table) keyed by their owner's name, so
    that whoever needs a compiled view of a schema compiles it once and finds it on the schema next time.
    """

    fields: tuple[FieldInfo, ...]
    names: tuple[str, ...] = ()
    cache: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.names:
            self.names = tuple(f.name for f in self.fields)


EMPTY_SCHEMA = Schema(())

# Sources name where an event came from; rules read it as `source`.
SOURCE_USER_EVENTS = "user_events"
SOURCE_TRACEPOINT = "tracepoint"
SOURCE_ETW = "etw"
SOURCE_FILE = "file"


@dataclass(slots=True, eq=False)
class Event:
    """One decoded event.

    `values` follows `schema.fields`: an int, float, bool, str or bytes per scalar field, a list for an array, and
    for a struct a sequence of values that follows the struct's own child schema. Strings whose bytes are not valid
    in their encoding keep the bad bytes as surrogate escapes (`errors="surrogateescape"`), so that a writer can give
    back exactly the bytes the reference decoder prints. A value is None where the event's bytes did not reach the
    field (a truncated entry); the JSON shows that as null, as the reference does. Integers are decoded signed only
    where the field's format is signed (SIGNED_INT, ERRNO, TIME); hex-shown integers are never negative.

    `time` is nanoseconds since the Unix epoch when `time_is_wall` is true; otherwise it is the raw clock of the
    recording (perf's clock with no known offset to wall time).
    """

    provider: str
    name: str
    schema: Schema = EMPTY_SCHEMA
    values: Sequence[Any] = ()
    source: str = SOURCE_FILE
    time: int | None = None
    time_is_wall: bool = True
    cpu: int | None = None
    pid: int | None = None
    tid: int | None = None
    level: int | None = None
    keyword: int | None = None
    opcode: int | None = None
    id: int | None = None
    version: int | None = None
    tag: int | None = None
    activity: bytes | None = None  # 16-byte GUID, as stored in the event
    related_activity: bytes | None = None
    callchain: tuple[int, ...] | None = None
    _fields: dict[str, Any] | None = None

    @property
    def fields(self) -> dict[str, Any]:
        """The payload as a name -> value mapping (structs as nested dicts); built once, on first use.

        Where an event repeats a field name, the first occurrence wins, as a reader of the JSON would expect from
        the name it sees first.
        """
        f = self._fields
        if f is None:
            try:
                build = self.schema.cache["fields_of"]
            except KeyError:
                build = self.schema.cache["fields_of"] = _fields_builder(self.schema)
            f = self._fields = build(self.values)
        return f


# The slot's own descriptor, which LazyEvent's property stands in front of (mypy sees the field's type instead).
_VALUES_SLOT: Any = Event.__dict__["values"]


class LazyEvent(Event):
    """An Event whose payload is decoded when something first reads `values` (or `fields`), not when the event is
    made: a live source makes these where decoding costs more than the holder (strings, __data_loc fields, arrays),
    so that an event no rule reads a field of (a condition on pid, a count of events) never pays for its decode,
    while whoever needs the payload (a condition on a field, `dyntel decode`'s JSON, forwarding, an action) gets
    exactly the values the decoder would have given at once. The decoder is the source's own, which never raises
    on short or inconsistent entries (it gives the empty values instead)."""

    __slots__ = ("_decode", "_raw")
    _decode: Callable[[Any], Sequence[Any]] | None
    _raw: Any

    def _get_values(self) -> Sequence[Any]:
        # Two threads may read one event (the engine's, an action's): _raw is read before _decode here and cleared
        # after it below, so whoever still sees a decoder also holds the bytes; both decode to the same values.
        raw = self._raw
        decode = self._decode
        if decode is not None:
            decoded = decode(raw)
            _VALUES_SLOT.__set__(self, decoded)
            self._decode = None
            self._raw = None
            return decoded
        values: Sequence[Any] = _VALUES_SLOT.__get__(self, LazyEvent)
        return values

    def _set_values(self, values: Sequence[Any]) -> None:
        _VALUES_SLOT.__set__(self, values)
        self._decode = None
        self._raw = None

    values = property(_get_values, _set_values)


def _fields_builder(schema: Schema) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """values -> the fields dict, made once per schema. A flat schema with distinct names (most are) gets, once it
    has been read _COMPILE_AFTER times, a compiled dict display, `{"a": v[0], "b": v[1]}`: for every event a
    condition reads a field of, that is about a third of the cost of dict(zip(names, values)) (no zip object, no
    pair tuples). Until then dict(zip()) serves: compiling costs as much as some hundred zips, which a reader that
    makes many short-lived schemas (a recording opened again and again) would pay for nothing. Values of another
    length than the schema's (a short entry) go through zip, as before."""
    names = schema.names
    if any(f.children is not None for f in schema.fields) or len(set(names)) != len(names):
        return lambda values: fields_as_dict(schema, values)
    uses = 0

    def warming(values: Sequence[Any]) -> dict[str, Any]:
        nonlocal uses
        uses += 1
        if uses == _COMPILE_AFTER and len(names) <= 255:  # a display longer than that is no faster
            schema.cache["fields_of"] = _compiled_fields_of(names)
        return dict(zip(names, values, strict=False))

    return warming


_COMPILE_AFTER = 256


def _compiled_fields_of(names: tuple[str, ...]) -> Callable[[Sequence[Any]], dict[str, Any]]:
    n = len(names)
    body = ", ".join(f"{name!r}: v[{i}]" for i, name in enumerate(names))
    env: dict[str, Any] = {"_names": names, "__builtins__": {"len": len, "dict": dict, "zip": zip}}
    src = (f"def fields_of(v):\n"
           f"    if len(v) == {n}:\n"
           f"        return {{{body}}}\n"
           f"    return dict(zip(_names, v))\n")
    exec(compile(src, "<fields of a schema>", "exec"), env)
    build: Callable[[Sequence[Any]], dict[str, Any]] = env["fields_of"]
    return build


def fields_as_dict(schema: Schema, values: Sequence[Any], booleans: bool = False) -> dict[str, Any]:
    """The payload as a dict (structs nested). `booleans`: boolean-formatted integers become bools (decoders keep
    them as the integers they are, as the reference JSON shows them)."""
    out: dict[str, Any] = {}
    for info, value in zip(schema.fields, values, strict=False):
        if info.name in out:
            continue
        if info.children is not None:
            if info.array == ArrayKind.NONE:
                value = fields_as_dict(info.children, value, booleans)
            else:
                value = [fields_as_dict(info.children, v, booleans) for v in value]
        elif booleans and info.format == Format.BOOLEAN and value is not None:
            value = [bool(v) for v in value] if info.array != ArrayKind.NONE else bool(value)
        out[info.name] = value
    return out


def schema_cached(schema: Schema, key: str, build: Callable[[Schema], Any]) -> Any:
    """Return schema.cache[key], building it with `build(schema)` the first time."""
    try:
        return schema.cache[key]
    except KeyError:
        value = schema.cache[key] = build(schema)
        return value
