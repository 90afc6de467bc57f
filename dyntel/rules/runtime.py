"""What compiled conditions call at event time.

Generated code inlines the common cases (a field against a constant); these cover the rest: both sides read from
the event, functions whose pattern is not a constant, nested fields. The rule for all of them: a missing value
(None) or values of kinds that do not compare (text and a number) make the answer False, never an exception.
"""

from __future__ import annotations

from typing import Any

from dyntel.event_json import format_uuid
from dyntel.otel.common_schema import parse_time
from dyntel.rules import process

NUM = frozenset({int, float, bool})
SIZED = frozenset({str, bytes, list, tuple, dict})
_SAME_KIND = frozenset({str, bytes})


def uuid_text(b: bytes | None) -> str | None:
    """An activity id as conditions and group keys read it: the GUID text the JSON output shows."""
    if b is None or len(b) != 16:
        return None
    return format_uuid(b)


def dig(value: Any, path: tuple[str | int, ...]) -> Any:
    """fields.a.b[0]: each step a dict key or a list index; None as soon as a step does not exist."""
    for step in path:
        cls = value.__class__
        if cls is dict:
            value = value.get(step)
        elif (cls is list or cls is tuple) and step.__class__ is int:
            if not -len(value) <= step < len(value):
                return None
            value = value[step]
        else:
            return None
    return value


def field_tag(schema: Any, path: tuple[str | int, ...]) -> int | None:
    """tag(fields.a.b[0]): the EventHeader tag of the field the path names (0 when it has none; an array's elements
    have their array's tag), or None when the event's schema has no such field. Read from the schema, which every
    event of a type shares, so it costs a few lookups and no payload work. The first field of a name counts, as in
    `fields`."""
    info = None
    for step in path:
        if step.__class__ is int:
            if info is None or info.array == 0:
                return None
            continue  # an element of the array: the array's tag
        if schema is None:
            return None
        for candidate in schema.fields:
            if candidate.name == step:
                info = candidate
                break
        else:
            return None
        schema = info.children
    return None if info is None else int(info.tag)


def _comparable(a: Any, b: Any) -> bool:
    ca, cb = a.__class__, b.__class__
    return (ca in NUM and cb in NUM) or (ca is cb and ca in _SAME_KIND)


def eq(a: Any, b: Any) -> bool:
    return a is not None and b is not None and bool(a == b)


def ne(a: Any, b: Any) -> bool:
    return a is not None and b is not None and bool(a != b)


def lt(a: Any, b: Any) -> bool:
    return _comparable(a, b) and bool(a < b)


def le(a: Any, b: Any) -> bool:
    return _comparable(a, b) and bool(a <= b)


def gt(a: Any, b: Any) -> bool:
    return _comparable(a, b) and bool(a > b)


def ge(a: Any, b: Any) -> bool:
    return _comparable(a, b) and bool(a >= b)


def _membership(a: Any, b: Any) -> bool | None:
    """a in b, or None when the two do not make sense together (so that `not in` is False then, too)."""
    if a is None or b is None:
        return None
    cb = b.__class__
    if cb is str or cb is bytes:
        return a in b if a.__class__ is cb else None
    if cb is list or cb is tuple:
        return a in b
    if cb is dict or cb is frozenset or cb is set:
        return a in b if a.__hash__ is not None else None
    return None


def in_(a: Any, b: Any) -> bool:
    return _membership(a, b) is True


def not_in(a: Any, b: Any) -> bool:
    return _membership(a, b) is False


def startswith(s: Any, p: Any) -> bool:
    return s.__class__ is str and _text_or_texts(p) and bool(s.startswith(p))


def endswith(s: Any, p: Any) -> bool:
    return s.__class__ is str and _text_or_texts(p) and bool(s.endswith(p))


def _text_or_texts(p: Any) -> bool:
    if p.__class__ is str:
        return True
    return p.__class__ is tuple and all(x.__class__ is str for x in p)


def contains(a: Any, b: Any) -> bool:
    return _membership(b, a) is True


def icontains(a: Any, b: Any) -> bool:
    return a.__class__ is str and b.__class__ is str and b.lower() in a.lower()


def group_key(v: Any) -> Any:
    """A value as a group key: hashable (lists become tuples) and JSON-friendly (bytes become hex text)."""
    cls = v.__class__
    if cls is bytes or cls is bytearray:
        return v.hex()
    if cls is list or cls is tuple:
        return tuple(group_key(x) for x in v)
    if cls is dict:
        return tuple((k, group_key(x)) for k, x in v.items())
    return v


def elapsed_ms(start: Any, end: Any) -> float | None:
    """Milliseconds from `start` to `end`, each a time as Common Schema writes it (RFC 3339 text: a span's
    PartB.startTime and PartA.time) or nanoseconds since the epoch (`time`); None when either is neither."""
    a, b = _time_ns(start), _time_ns(end)
    return None if a is None or b is None else (b - a) / 1e6


def _time_ns(v: Any) -> int | None:
    cls = v.__class__
    if cls is int:
        return v  # type: ignore[no-any-return]
    if cls is str:
        return parse_time(v)
    return None


def number(v: Any) -> int | float | None:
    """A threshold's value: a number, or None (skipped) for anything else."""
    cls = v.__class__
    if cls is int or cls is float:
        return v  # type: ignore[no-any-return]
    if cls is bool:
        return int(v)
    return None


# The only names generated code can reach: it runs with empty builtins.
HELPERS: dict[str, Any] = {
    "_NUM": NUM, "_SIZED": SIZED, "_str": str, "_bytes": bytes, "_len": len,
    "_uuid": uuid_text, "_dig": dig, "_field_tag": field_tag,
    "_eq": eq, "_ne": ne, "_lt": lt, "_le": le, "_gt": gt, "_ge": ge, "_in": in_, "_not_in": not_in,
    "_startswith": startswith, "_endswith": endswith, "_contains": contains, "_icontains": icontains,
    "_key": group_key, "_number": number, "_elapsed_ms": elapsed_ms,
    "_proc_name": process.process_name, "_proc_exe": process.process_exe,
    "_proc_cmdline": process.process_cmdline, "_proc_container": process.process_container,
}
