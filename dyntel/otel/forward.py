"""OTLP forwarding, the listener role: selected events go to a collector as OTLP logs (and spans).

A config file's top-level `forward:` section says where and what:

    forward:
      endpoint: http://127.0.0.1:4318      # default by protocol: http://127.0.0.1:4318, 127.0.0.1:4317
      protocol: http/protobuf              # or grpc
      select:                              # an event is sent when any item matches it; no select: every event
        - provider: MyService              # a whole provider (optionally `event: NAME` too)
        - condition: "level <= 2"          # a rule condition (the rule language; lists and macros not shared)
        - {provider: Other, condition: "fields.status >= 500"}   # both must hold
      batch: 512                           # records per request
      max_delay: 200ms                     # the longest a record waits for its batch to fill
      queue: 65536                         # records waiting at most; beyond, the oldest batch is dropped
      timeout: 10s                         # one request
      retries: 5                           # tries of a failing batch before it is dropped

`Forwarder.offer(event)` is on the event path: a compiled selection test, then a list append; encoding and sending
happen on the sender thread (dyntel.otel.exporter.BatchSender, encoding by dyntel.otel.otlp_events). Errors in
the section are reported as `file:line:column: message`, all at once, like rule files'.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dyntel.event import Event
from dyntel.otel.exporter import BatchSender, SenderStats
from dyntel.otel.otlp_events import EventEncoder
from dyntel.otel.otlp_transport import HTTP, PROTOCOLS, Transport, default_endpoint, make_transport
from dyntel.rules.condition import Compiler
from dyntel.rules.durations import parse_duration
from dyntel.rules.errors import RuleError, RuleErrors, unique_sorted
from dyntel.rules.model import Position, Predicate
from dyntel.rules.yaml_read import YamlDoc, YamlPath, read_yaml

SECTION = "forward"
_KEYS = ("endpoint", "protocol", "select", "batch", "max_delay", "queue", "timeout", "retries")
_SELECT_KEYS = ("provider", "event", "condition")


@dataclass(frozen=True, slots=True)
class Selector:
    provider: str | None
    event: str | None
    predicate: Predicate | None
    text: str  # as written, for messages


@dataclass(slots=True)
class ForwardConfig:
    endpoint: str
    protocol: str = HTTP
    select: tuple[Selector, ...] = ()
    batch: int = 512
    max_delay: float = 0.2
    queue: int = 65_536
    timeout: float = 10.0
    retries: int = 5
    position: Position | None = None


def load_forward(path: str) -> ForwardConfig | None:
    """The `forward:` section of a config file; None when it has none. RuleErrors for everything wrong in it."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except OSError as e:
        raise RuleErrors([RuleError(Position(path, 1, 1), f"cannot read: {e.strerror or e}")]) from e
    return parse_forward(path, text)


def parse_forward(file: str, text: str) -> ForwardConfig | None:
    doc, errors = read_yaml(file, text)
    if errors or doc is None:
        raise RuleErrors(errors or [RuleError(Position(file, 1, 1), "empty file")])
    if not isinstance(doc.value, dict) or doc.value.get(SECTION) is None:
        return None
    errors = []
    config = _section(doc, errors)
    if errors:
        raise RuleErrors(unique_sorted(errors, [file]))
    return config


def _section(doc: YamlDoc, errors: list[RuleError]) -> ForwardConfig:
    path: YamlPath = (SECTION,)
    raw = doc.value[SECTION]
    if not isinstance(raw, dict):
        errors.append(RuleError(doc.at(path), "forward: expected a mapping, like {endpoint: "
                                              "http://127.0.0.1:4318, select: [{provider: MyService}]}"))
        return ForwardConfig(default_endpoint(HTTP))
    for key in raw:
        if key not in _KEYS:
            errors.append(RuleError(doc.key_at((*path, key)), f"forward: unknown key '{key}'; expected one of: "
                                                               f"{', '.join(_KEYS)}"))

    def text(key: str, default: str) -> str:
        v = raw.get(key, default)
        if not isinstance(v, str) or not v.strip():
            errors.append(RuleError(doc.at((*path, key)), f"forward: {key}: expected text, got {v!r}"))
            return default
        return v.strip()

    def number(key: str, default: int, low: int) -> int:
        v = raw.get(key, default)
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            errors.append(RuleError(doc.at((*path, key)), f"forward: {key}: expected a whole number >= {low}, "
                                                           f"got {v!r}"))
            return default
        return v

    def duration(key: str, default: float) -> float:
        v = raw.get(key)
        if v is None:
            return default
        try:
            ns = parse_duration(v)
        except (ValueError, TypeError) as e:
            errors.append(RuleError(doc.at((*path, key)), f"forward: {key}: {e}"))
            return default
        return ns / 1e9

    protocol = text("protocol", HTTP)
    if protocol not in PROTOCOLS:
        errors.append(RuleError(doc.at((*path, "protocol")), f"forward: protocol '{protocol}': expected one of: "
                                                              f"{', '.join(PROTOCOLS)}"))
        protocol = HTTP
    endpoint = text("endpoint", default_endpoint(protocol))
    try:
        make_transport(endpoint, protocol).close()  # checks the address's form now, not at the first batch
    except ValueError as e:
        errors.append(RuleError(doc.at((*path, "endpoint")), f"forward: {e}"))
    return ForwardConfig(
        endpoint=endpoint, protocol=protocol, select=_selectors(doc, (*path, "select"), raw.get("select"), errors),
        batch=number("batch", 512, 1), max_delay=duration("max_delay", 0.2), queue=number("queue", 65_536, 1),
        timeout=duration("timeout", 10.0), retries=number("retries", 5, 0), position=doc.at(path))



def _selectors(doc: YamlDoc, path: YamlPath, raw: Any, errors: list[RuleError]) -> tuple[Selector, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        errors.append(RuleError(doc.at(path), "forward: select: expected a list of {provider: NAME} or "
                                              "{condition: TEXT} items"))
        return ()
    compiler = Compiler()
    out = []
    for i, item in enumerate(raw):
        at = (*path, i)
        if not isinstance(item, dict) or not item:
            errors.append(RuleError(doc.at(at), "forward: select: each item is a mapping: {provider: NAME}, "
                                                "{provider: NAME, event: NAME} or {condition: TEXT}"))
            continue
        bad = [k for k in item if k not in _SELECT_KEYS]
        for k in bad:
            errors.append(RuleError(doc.key_at((*at, k)), f"forward: select: unknown key '{k}'; expected one of: "
                                                          f"{', '.join(_SELECT_KEYS)}"))
        for k in ("provider", "event", "condition"):
            if k in item and (not isinstance(item[k], str) or not item[k].strip()):
                errors.append(RuleError(doc.at((*at, k)), f"forward: select: {k}: expected text, got {item[k]!r}"))
        if bad or any(k in item and not isinstance(item[k], str) for k in _SELECT_KEYS):
            continue
        if "event" in item and "provider" not in item:
            errors.append(RuleError(doc.at((*at, "event")), "forward: select: event: needs provider: too "
                                                            "(or write condition: \"event == 'NAME'\")"))
            continue
        predicate = None
        if "condition" in item:
            compiled, errs = compiler.condition(item["condition"], doc.text_map((*at, "condition")))
            errors += errs
            if compiled is None:
                continue
            predicate = compiled.predicate
        shown = ", ".join(f"{k}: {item[k]}" for k in _SELECT_KEYS if k in item)
        out.append(Selector(item.get("provider"), item.get("event"), predicate, shown))
    return tuple(out)


def compile_selection(selectors: tuple[Selector, ...]) -> Callable[[Event], bool]:
    """One test for all items: items naming a provider are found by a dict lookup on the event's provider, so an
    event of a provider no item names costs one lookup (plus the items that name none)."""
    if not selectors:
        return lambda event: True
    by_provider: dict[str, list[Selector]] = {}
    anywhere: list[Selector] = []
    for s in selectors:
        (by_provider.setdefault(s.provider, []) if s.provider is not None else anywhere).append(s)
    # A provider item with neither event nor condition takes the whole provider: no further test.
    whole = frozenset(p for p, items in by_provider.items()
                      if any(s.event is None and s.predicate is None for s in items))

    def one(s: Selector, event: Event) -> bool:
        return (s.event is None or s.event == event.name) and (s.predicate is None or s.predicate(event))

    def selected(event: Event) -> bool:
        provider = event.provider
        if provider in whole:
            return True
        items = by_provider.get(provider)
        if items is not None and any(one(s, event) for s in items):
            return True
        return any(one(s, event) for s in anywhere)

    return selected


def selection_wants(selectors: tuple[Selector, ...]) -> Callable[[str, str, int | None], bool]:
    """Whether events of (provider, event, level) could be selected: for a live source's pre-decode filter, which
    must let through what the forwarder takes besides what the rules take. A condition without a provider could
    take any event."""
    if not selectors or any(s.provider is None for s in selectors):
        return lambda provider, event, level: True
    named: dict[str, set[str] | None] = {}
    for s in selectors:
        provider = s.provider or ""
        current = named.get(provider, set())
        if s.event is None or current is None:
            named[provider] = None  # any event of the provider
        else:
            current.add(s.event)
            named[provider] = current

    def wants(provider: str, event: str, level: int | None) -> bool:
        if provider not in named:
            return False
        events = named[provider]
        return events is None or event in events

    return wants


@dataclass(slots=True)
class Forwarder:
    """Selected events to a collector. `offer` from the event path; `close` once, at shutdown."""

    config: ForwardConfig
    transport: Transport | None = None
    log: Callable[[str], None] | None = None
    selected: int = 0
    _select: Callable[[Event], bool] = field(init=False)
    _wants: Callable[[str, str, int | None], bool] = field(init=False)
    _sender: BatchSender = field(init=False)

    def __post_init__(self) -> None:
        c = self.config
        encoder = EventEncoder()
        self._select = compile_selection(c.select)
        self._wants = selection_wants(c.select)
        self._sender = BatchSender(self.transport or make_transport(c.endpoint, c.protocol), encoder.requests,
                                   max_batch=c.batch, max_delay=c.max_delay, max_queued=c.queue, timeout=c.timeout,
                                   retries=c.retries, log=self.log)

    def wants(self, provider: str, event: str, level: int | None) -> bool:
        """Whether events of this type could be selected (see selection_wants)."""
        return self._wants(provider, event, level)

    def offer(self, event: Event) -> bool:
        """Queue the event when the selection takes it; whether it did."""
        if not self._select(event):
            return False
        self.selected += 1
        self._sender.offer(event)
        return True

    @property
    def stats(self) -> SenderStats:
        return self._sender.stats

    def close(self, timeout: float = 5.0) -> SenderStats:
        """Send what waits (for up to `timeout` seconds) and stop."""
        return self._sender.close(timeout)
