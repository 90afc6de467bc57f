"""JSON lines of EVENTs (what `dyntel decode --format jsonl` writes) as a `Source`, so rules can be replayed over
events that were decoded elsewhere, edited by hand, or written by a test.

An EVENT is the contract's shape: `{"n": "provider:event", <payload fields in order>, "meta": {...}}`. The whole-file
form of `dyntel decode --format json` (`{"<file name>": [EVENT, ...], ...}`, as the reference decoder prints it, byte
order mark and missing outer braces included) is read too, whole, in memory; JSON lines are streamed.

What comes back, and why:

- `n` splits at its first colon into provider and event name (no colon: all of it is the provider).
- Payload fields keep their order, duplicates included. The JSON carries no field types, so a `Schema` is inferred
  from the value kinds (integer, float, boolean, string, hex string, null, array, object) and cached per distinct
  (n, field names, kinds): the events of one type share one Schema, as they do from a recording, and the JSON writer
  and rule accessors compiled for it are reused.
- Values stay what the JSON says (`fields.status >= 500` compares numbers, `fields.path == "/x"` strings), with one
  exception: a string in the exact form the decoder writes hex integers ("0x" and upper-case digits, no leading
  zero, at most 64 bits) becomes that integer, shown again as hex. A recording decoded straight and the same
  recording read back from JSON then give rules the same values (`fields.prev_pid == 2384` holds for both), and the
  JSON written back is the same text. Any other string stays a string, "0x1f" included.
- A key "name;tag=0xN" (the .dat tools show EventHeader field tags that way) is field `name` with tag N.
- `meta`: `time` as an ISO-8601 string is nanoseconds since the epoch; as a number it is seconds of a raw clock
  (what the decoder writes when the recording had no wall clock), kept as nanoseconds with `time_is_wall` false.
  `keyword` and `tag` read "0x..." strings or numbers; `activity` and `relatedActivity` are UUID strings, kept as
  their 16 bytes. `source` (not part of the contract) sets where the event came from; otherwise it is "file".
- Arrays whose elements are all of one kind (nulls fit any) are arrays of that kind; integers mixed with floats are
  floats. Anything the schema cannot express (mixed kinds, arrays of arrays, objects with differing keys) becomes
  an array of the elements' JSON texts: rules see strings there.

A line that is not a JSON object with a string `n`, or whose `meta` cannot be read, is counted as a problem with its
line number and byte offset and skipped; reading goes on. Blank lines are ignored.
"""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO

from dyntel.event import SOURCE_FILE, ArrayKind, Encoding, Event, FieldInfo, Format, Schema
from dyntel.sources import SourceStats, Want

BOM = b"\xef\xbb\xbf"
_HEX = re.compile(r"0x(?:0|[1-9A-F][0-9A-F]{0,15})")
_ISO = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9})\d*)?(Z|[+-]\d\d:?\d\d)?")
_TAGGED = re.compile(r"(.*);tag=0x([0-9A-Fa-f]{1,8})")
_MAX_SCHEMAS = 4096  # distinct event shapes kept; a file of ever-new shapes costs time, not memory


def sniff(head: bytes, path: str) -> bool:
    """JSON text: an object or array first, or (the reference's files) a byte-order mark and then a label."""
    bom = head.startswith(BOM)
    text = head[3:] if bom else head
    text = text.lstrip(b" \t\r\n")
    return text[:1] in (b"{", b"[") or (bom and text[:1] == b'"')


def open_source(path: str, stream: BinaryIO) -> JsonlSource:
    return JsonlSource(path, stream)


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs: duplicate keys and their order survive, and an object stays
    distinguishable from an array."""

    __slots__ = ()


class _FloatText(str):
    """A JSON number with a fraction or exponent, as written: the time in meta needs all its digits."""

    __slots__ = ()


def _loads(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_Pairs, parse_float=_FloatText)


class BadEvent(ValueError):
    pass


# ----------------------------------------------------------------------------------------------------------------
# Value kinds. A kind is a string for scalars, ("a", element kind) for arrays, ("o", ((key, kind), ...)) for objects.

_NULL = "0"
_JSON_TEXT = "j"  # a value the schema cannot express, kept as its JSON text
_AS_IS = frozenset({"i", "s", "b", _NULL})  # kinds whose JSON value is already the event's value


def _kind(v: Any) -> Any:
    t = type(v)
    if t is str:
        return "x" if _HEX.fullmatch(v) else "s"
    if t is int:
        return "i"
    if t is _FloatText:
        return "f"
    if t is bool:
        return "b"
    if v is None:
        return _NULL
    if t is _Pairs:
        return ("o", tuple([(k, _kind(x)) for k, x in v]))
    return ("a", _element_kind(v))


def _element_kind(items: list[Any]) -> Any:
    kinds = {_kind(x) for x in items}
    kinds.discard(_NULL)
    if not kinds:
        return _NULL
    if len(kinds) == 1:
        (k,) = kinds
        return _JSON_TEXT if type(k) is tuple and k[0] == "a" else k
    if kinds <= {"i", "f"}:
        return "f"
    if kinds <= {"s", "x"}:
        return "s"
    return _JSON_TEXT


def _convert(v: Any, kind: Any) -> Any:
    if v is None:
        return None
    if type(kind) is str:
        if kind == "x":
            return int(v, 16)
        if kind == "f":
            return float(v)
        if kind == _JSON_TEXT:
            return v if type(v) is str else json.dumps(_plain(v), ensure_ascii=False)
        return v
    if kind[0] == "a":
        element = kind[1]
        return [_convert(x, element) for x in v]
    return tuple([_convert(x, k) for (_, x), (_, k) in zip(v, kind[1], strict=True)])


def _plain(v: Any) -> Any:
    """Back to plain JSON values (for the JSON text of an inexpressible value)."""
    if type(v) is _Pairs:
        return {k: _plain(x) for k, x in v}
    if type(v) is list:
        return [_plain(x) for x in v]
    if type(v) is _FloatText:
        return float(v)
    return v


_SCALAR_FIELDS: dict[str, tuple[Encoding, Format, int]] = {
    "i": (Encoding.VALUE64, Format.SIGNED_INT, 8),
    "x": (Encoding.VALUE64, Format.HEX_INT, 8),
    "f": (Encoding.VALUE64, Format.FLOAT, 8),
    "b": (Encoding.VALUE8, Format.BOOLEAN, 1),
    "s": (Encoding.ZSTRING_CHAR8, Format.STRING_UTF, 0),
    _NULL: (Encoding.ZSTRING_CHAR8, Format.STRING_UTF, 0),
    _JSON_TEXT: (Encoding.ZSTRING_CHAR8, Format.STRING_UTF, 0),
}


def _field_info(key: str, kind: Any) -> FieldInfo:
    name, tag = key, 0
    if ";tag=0x" in key:
        m = _TAGGED.fullmatch(key)
        if m is not None:
            name, tag = m.group(1), int(m.group(2), 16)
    array = ArrayKind.NONE
    if type(kind) is tuple and kind[0] == "a":
        array = ArrayKind.VARIABLE
        kind = kind[1]
    if type(kind) is tuple:  # an object
        return FieldInfo(name, Encoding.STRUCT, array=array, children=_schema(kind[1]), tag=tag)
    encoding, fmt, size = _SCALAR_FIELDS[kind]
    return FieldInfo(name, encoding, fmt, array, tag=tag, element_size=size)


def _schema(kinds: Sequence[tuple[str, Any]]) -> Schema:
    return Schema(tuple([_field_info(k, kind) for k, kind in kinds]))


# ----------------------------------------------------------------------------------------------------------------
# meta


class _WallClock:
    """ISO-8601 to nanoseconds since the epoch; the seconds part is cached, since events come in bursts."""

    __slots__ = ("_prefix", "_sec")

    def __init__(self) -> None:
        self._prefix = ""
        self._sec = 0

    def __call__(self, text: str) -> int:
        m = _ISO.fullmatch(text)
        if m is None:
            raise BadEvent(f"meta.time {text!r} is not an ISO-8601 time")
        prefix, frac, zone = m.groups()
        if prefix != self._prefix:
            try:
                sec = calendar.timegm((int(prefix[0:4]), int(prefix[5:7]), int(prefix[8:10]), int(prefix[11:13]),
                                       int(prefix[14:16]), int(prefix[17:19]), 0, 0, 0))
            except (ValueError, OverflowError) as e:
                raise BadEvent(f"meta.time {text!r}: {e}") from None
            self._prefix, self._sec = prefix, sec
        sec = self._sec
        if zone and zone != "Z":
            sign = -1 if zone[0] == "+" else 1
            digits = zone[1:].replace(":", "")
            sec += sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
        return sec * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)


def _raw_clock_ns(v: Any) -> int:
    """Seconds of a raw clock, as the decoder writes them ("12.000000123"), to nanoseconds, with no float rounding."""
    text = str(v)
    if "e" in text or "E" in text or text.startswith("-"):
        raise BadEvent(f"meta.time {text} is not a clock reading")
    whole, _, frac = text.partition(".")
    return int(whole) * 1_000_000_000 + int(frac[:9].ljust(9, "0") or "0")


def _int(key: str, v: Any) -> int:
    if type(v) is int:
        return v
    if type(v) is str:
        try:
            return int(v, 0)
        except ValueError:
            pass
    raise BadEvent(f"meta.{key} {v!r} is not an integer")


def _uuid(key: str, v: Any) -> bytes:
    if type(v) is str:
        try:
            b = bytes.fromhex(v.replace("-", ""))
        except ValueError:
            b = b""
        if len(b) == 16:
            return b
    raise BadEvent(f"meta.{key} {v!r} is not a UUID")


_INT_META = {"cpu": "cpu", "pid": "pid", "tid": "tid", "level": "level", "opcode": "opcode", "id": "id",
             "version": "version", "keyword": "keyword", "tag": "tag"}


# ----------------------------------------------------------------------------------------------------------------


class JsonlSource:
    """EVENTs from JSON lines (streamed) or from a whole decode JSON document (read at once)."""

    def __init__(self, name: str, stream: BinaryIO) -> None:
        self.name = name
        self.stats = SourceStats()
        # Tags written in the keys come back into FieldInfo.tag; showing them again gives back the keys as read.
        self.field_tags = True
        # Events no rule can match are dropped before their payload is turned into values (see dyntel.sources.Want).
        self.want: Want | None = None
        self.position = 0  # bytes read so far, for progress
        self._stream = stream
        self._schemas: dict[tuple[str, Any], Schema] = {}
        self._wall = _WallClock()
        self._wanted: dict[tuple[str, int | None], bool] = {}
        self._max_filtered_time: int | None = None

    @property
    def end_time(self) -> int | None:
        """The latest time among the events the filter dropped (a replay ends at the later of it and its last
        event); None when it dropped none with a time."""
        return self._max_filtered_time

    def events(self) -> Iterator[Event]:
        stream = self._stream
        try:
            first = b""
            offset = 0
            line_no = 0
            # The first line that is not blank says which form this is.
            for raw in stream:
                line_no += 1
                if raw.strip(b" \t\r\n\xef\xbb\xbf"):
                    first = raw
                    break
                offset += len(raw)
            if not first:
                return
            text = first.removeprefix(BOM).decode("utf-8", "surrogateescape")
            try:
                obj = _loads(text)
            except ValueError:
                obj = None
            if type(obj) is _Pairs and any(k == "n" for k, _ in obj):
                yield from self._lines(first, offset, line_no)
            else:
                yield from self._document(first + stream.read())
        finally:
            stream.close()

    def _lines(self, first: bytes, offset: int, line_no: int) -> Iterator[Event]:
        stats = self.stats
        event_of = self._event
        stream = self._stream
        raw = first.removeprefix(BOM)
        offset += len(first) - len(raw)
        while True:
            n = len(raw)
            text = raw.decode("utf-8", "surrogateescape").strip()
            if text:
                stats.records += 1
                try:
                    event = event_of(_loads(text))
                except BadEvent as e:
                    stats.problem(offset, f"line {line_no}: {e}")
                except ValueError as e:  # json.JSONDecodeError
                    stats.problem(offset, f"line {line_no}: not JSON: {e}")
                else:
                    if event is not None:
                        stats.events += 1
                        yield event
            offset += n
            self.position = offset
            raw = stream.readline()
            if not raw:
                return
            line_no += 1

    def _document(self, data: bytes) -> Iterator[Event]:
        text = data.removeprefix(BOM).decode("utf-8", "surrogateescape").strip()
        self.position = len(data)
        stats = self.stats
        if text.startswith('"'):
            text = "{" + text + "}"  # the reference's files hold the members without the braces
        try:
            doc = _loads(text)
        except ValueError as e:
            stats.problem(0, f"neither JSON lines nor a JSON document: {e}")
            return
        groups: list[tuple[str, Any]]
        if type(doc) is _Pairs:
            groups = list(doc)
        elif type(doc) is list:
            groups = [("", doc)]
        else:
            stats.problem(0, "a JSON document of events is an object of arrays, or an array")
            return
        for label, events in groups:
            where = f"{label!r}" if label else "the array"
            if type(events) is not list:
                stats.problem(0, f"{where} is not an array of events")
                continue
            for i, obj in enumerate(events):
                stats.records += 1
                try:
                    event = self._event(obj)
                except BadEvent as e:
                    stats.problem(0, f"event {i} of {where}: {e}")
                else:
                    if event is not None:
                        stats.events += 1
                        yield event

    def _event(self, obj: Any) -> Event | None:
        """One EVENT; None when the filter drops it. Raises BadEvent."""
        if type(obj) is not _Pairs:
            raise BadEvent("not a JSON object")
        n: Any = None
        meta: Any = None
        payload: list[tuple[str, Any]] = []
        for k, v in obj:
            if k == "n" and n is None:
                n = v
            elif k == "meta" and meta is None:
                meta = v
            else:
                payload.append((k, v))
        if type(n) is not str:
            raise BadEvent('no "n" string (provider:event)')
        provider, _, name = n.partition(":")
        event = Event(provider, name, source=SOURCE_FILE)
        if meta is not None:
            if type(meta) is not _Pairs:
                raise BadEvent("meta is not an object")
            self._meta(event, meta)
        want = self.want
        if want is not None:
            key = (n, event.level)
            wanted = self._wanted.get(key)
            if wanted is None:
                wanted = self._wanted[key] = bool(want(provider, name, event.level))
            if not wanted:
                self.stats.skip("filtered")
                t = event.time
                if t is not None and (self._max_filtered_time is None or t > self._max_filtered_time):
                    self._max_filtered_time = t
                return None
        kinds = tuple([(k, _kind(v)) for k, v in payload])
        cache_key = (n, kinds)
        schema = self._schemas.get(cache_key)
        if schema is None:
            if len(self._schemas) >= _MAX_SCHEMAS:
                self._schemas.clear()
            schema = self._schemas[cache_key] = _schema(kinds)
        convert: Callable[[Any, Any], Any] = _convert
        event.schema = schema
        event.values = [v if kind in _AS_IS else convert(v, kind)
                        for (_, v), (_, kind) in zip(payload, kinds, strict=True)]
        return event

    def _meta(self, event: Event, meta: _Pairs) -> None:
        for k, v in meta:
            if v is None:
                continue
            if k == "time":
                if type(v) is str:
                    event.time = self._wall(v)
                elif type(v) in (int, _FloatText):
                    event.time = _raw_clock_ns(v)
                    event.time_is_wall = False
                else:
                    raise BadEvent(f"meta.time {v!r} is neither an ISO-8601 time nor a number")
            elif k in _INT_META:
                setattr(event, _INT_META[k], _int(k, v))
            elif k == "activity":
                event.activity = _uuid(k, v)
            elif k == "relatedActivity":
                event.related_activity = _uuid(k, v)
            elif k == "source" and type(v) is str:
                event.source = v
