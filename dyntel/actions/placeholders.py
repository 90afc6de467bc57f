"""`{placeholders}` in action options, expanded for one firing.

The formatter is our own, not `str.format`: a placeholder names data (the event, its fields, the group, earlier
actions' results), looked up in dicts by key, never by attribute access on Python objects, so a rule file cannot
reach into dyntel's objects (`{event.__class__}` is simply not a name it knows).

What a placeholder can name:
- `{rule}`, `{time}` (the firing's time, ns), `{group}` (the group as JSON), `{group.KEY}` (KEY as written in
  `group_by`, e.g. `{group.fields.path}`).
- The event: `{provider}`, `{event}` (its name), `{pid}`, `{tid}`, `{cpu}`, `{level}`, `{keyword}`, `{opcode}`, `{id}`,
  `{version}`, `{tag}`, `{source}`, `{activity}`, `{related_activity}`.
- The payload: `{fields.NAME}`, nested by dots (`{fields.req.path}`), list items by index (`{fields.args.0}`); a name
  holding dots is found too (`{fields.http.status}` reads the field "http.status" when there is no "http").
- Earlier actions of the same firing: `{actions.TYPE.KEY}`, e.g. `{actions.dump.path}`, and `{actions.TYPE.status}`.

A placeholder whose value is missing (or None) is left as it is written, braces and all, so a log line shows what
could not be filled rather than silently dropping it. `{{` and `}}` are literal braces. Text in braces that does not
start with a letter (`{"a": 1}`) is not a placeholder. An option that is exactly one placeholder (`pid: "{pid}"`)
takes the value itself, an int stays an int; inside longer text values are shown as text (bytes of a GUID as a UUID,
other bytes as hex, booleans as true/false, lists and dicts as JSON).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from dyntel.firing import Firing
from dyntel.formatting import json_value

# `{{` and `}}` are braces, and braces around text that does not start with a letter (`{"a": 1}`) are not a
# placeholder. The rule checker (dyntel.rules.action_checks) finds them with this same pattern.
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][^{}]*)\}")

_EVENT_ATTRS = {
    "provider": "provider", "event": "name", "pid": "pid", "tid": "tid", "cpu": "cpu", "level": "level",
    "keyword": "keyword", "opcode": "opcode", "id": "id", "version": "version", "tag": "tag", "source": "source",
    "activity": "activity", "related_activity": "related_activity",
}

_MISSING = object()


def _lookup(obj: Any, parts: list[str]) -> Any:
    """Walk dicts (and lists by index) by key; a key may itself hold dots, longest match first."""
    if not parts:
        return obj
    if isinstance(obj, Mapping):
        for j in range(len(parts), 0, -1):
            key = ".".join(parts[:j])
            if key in obj:
                found = _lookup(obj[key], parts[j:])
                if found is not _MISSING:
                    return found
        return _MISSING
    if isinstance(obj, list | tuple) and parts[0].isdigit():
        i = int(parts[0])
        return _lookup(obj[i], parts[1:]) if i < len(obj) else _MISSING
    return _MISSING


def placeholder_names(text: str) -> list[str]:
    """The placeholder names in a piece of action text, as written."""
    return [m.group(1).strip() for m in PLACEHOLDER.finditer(text) if m.group(1) is not None]


def resolve(name: str, firing: Firing, outputs: Mapping[str, Mapping[str, Any]]) -> Any:
    """The value a placeholder names, or _MISSING."""
    head, _, rest = name.strip().partition(".")
    parts = rest.split(".") if rest else []
    event = firing.event
    if head == "rule" and not parts:
        return firing.rule
    if head == "time" and not parts:
        return firing.time
    if head == "group":
        return _lookup(firing.group, parts)
    if head == "actions":
        return _lookup(outputs, parts) if parts else _MISSING
    if event is None:
        return _MISSING
    if head == "fields":
        return _lookup(event.fields, parts) if parts else _MISSING
    attr = _EVENT_ATTRS.get(head)
    if attr is not None and not parts:
        return getattr(event, attr)
    return _MISSING


def as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return str(json_value(value))
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=lambda v: as_text(v) if isinstance(v, bytes) else str(v))
    return str(value)


def expand_text(text: str, firing: Firing, outputs: Mapping[str, Mapping[str, Any]]) -> Any:
    m = PLACEHOLDER.fullmatch(text)
    if m is not None and m.group(1) is not None:
        value = resolve(m.group(1), firing, outputs)
        if value is _MISSING or value is None:
            return text
        return json_value(value)

    def one(m: re.Match[str]) -> str:
        whole = m.group(0)
        if whole == "{{":
            return "{"
        if whole == "}}":
            return "}"
        value = resolve(m.group(1), firing, outputs)
        if value is _MISSING or value is None:
            return whole
        return as_text(value)

    return PLACEHOLDER.sub(one, text)


def expand(value: Any, firing: Firing, outputs: Mapping[str, Mapping[str, Any]]) -> Any:
    """Options with every string expanded, recursively through lists and dicts (keys stay as written)."""
    if isinstance(value, str):
        return expand_text(value, firing, outputs) if "{" in value or "}" in value else value
    if isinstance(value, dict):
        return {k: expand(v, firing, outputs) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [expand(v, firing, outputs) for v in value]
    return value
