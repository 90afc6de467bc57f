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
      queue: 65536                         # records waiting at most; beyond, the oldest is dropped (counted)
      timeout: 10s                         # one request
      retries: 5                           # tries of a failing batch before it is dropped

`Forwarder.offer(event)` is on the event path: a compiled selection test, then a list append; encoding and sending
happen on the sender thread (a dyntel.batch_queue.BatchQueue; encoding by dyntel.otel.otlp_events). Errors in
the section are reported as `file:line:column: message`, all at once, like rule files'.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dyntel.batch_queue import BatchQueue
from dyntel.event import Event
from dyntel.otel.otlp_events import EventEncoder
from dyntel.otel.otlp_transport import HTTP, PROTOCOLS, ExportError, Transport, default_endpoint, make_transport
from dyntel.queues import QueueCounts, QueueRegistry
from dyntel.rules.condition import Compiler
from dyntel.rules.errors import RuleError, RuleErrors, unique_sorted
from dyntel.rules.model import Position, Predicate
from dyntel.rules.yaml_read import YamlDoc, YamlPath, read_yaml
from dyntel.units import parse_duration

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
class SenderStats:
    offered: int = 0
    sent: int = 0  # events in requests the collector took
    dropped: int = 0  # events dropped: the queue was full, a batch failed all its tries, shutdown (by reason below)
    refused: int = 0  # events the collector refused (partial success or a non-retriable status); also in dropped
    requests: int = 0
    failures: int = 0
    last_error: str = ""
    dropped_by_reason: dict[str, int] = field(default_factory=dict)


FAILED_ALL_TRIES = "export failed after all tries"
REFUSED = "refused by the collector"
ENCODING = "encoding failed"


@dataclass(slots=True)
class Forwarder:
    """Selected events to a collector. `offer` from the event path; `close` once, at shutdown.

    Events wait in a `BatchQueue` (dyntel.batch_queue) of `queue` events, registered with `queues` as `forward
    ENDPOINT`. The drop policy, each counted by reason: a full queue drops its oldest event (forwarding keeps up
    with the present rather than falling behind it); a batch that fails `retries` + 1 tries is dropped; what still
    waits when `close`'s timeout ends is dropped."""

    config: ForwardConfig
    transport: Transport | None = None
    log: Callable[[str], None] | None = None
    queues: QueueRegistry | None = None
    selected: int = 0
    counts: QueueCounts = field(init=False)
    _select: Callable[[Event], bool] = field(init=False)
    _wants: Callable[[str, str, int | None], bool] = field(init=False)
    _queue: BatchQueue[Event] = field(init=False)
    _encode: Callable[[list[Event]], Mapping[str, bytes]] = field(init=False)
    _requests: int = 0
    _failures: int = 0
    _last_error: str = ""

    def __post_init__(self) -> None:
        c = self.config
        encoder = EventEncoder()
        self._encode = encoder.requests
        self._select = compile_selection(c.select)
        self._wants = selection_wants(c.select)
        if self.transport is None:
            self.transport = make_transport(c.endpoint, c.protocol)
        self.counts = QueueCounts(f"forward {c.endpoint}", kind="forward", unit="events", capacity=c.queue)
        if self.queues is not None:
            self.queues.register(self.counts)
        self._queue = BatchQueue(f"forward {self.transport.endpoint}", self._export, max_batch=c.batch,
                                 max_delay=c.max_delay, capacity=c.queue, counts=self.counts,
                                 export_grace=c.timeout + 1.0, log=self._say)

    def _say(self, line: str) -> None:
        if self.log is not None:
            self.log(line)

    def wants(self, provider: str, event: str, level: int | None) -> bool:
        """Whether events of this type could be selected (see selection_wants)."""
        return self._wants(provider, event, level)

    def offer(self, event: Event) -> bool:
        """Queue the event when the selection takes it; whether it did."""
        if not self._select(event):
            return False
        self.selected += 1
        self._queue.put(event)
        return True

    def _export(self, batch: list[Event]) -> dict[str, int] | None:
        """One batch, encoded on the sender thread, sent with `retries` more tries (exponential backoff)."""
        try:
            requests = self._encode(batch)
        except Exception as e:  # one odd event must not stop forwarding
            self._last_error = f"encoding: {type(e).__name__}: {e}"
            self._say(f"forward: {len(batch)} event(s) dropped: {self._last_error}")
            return {ENCODING: len(batch)}
        assert self.transport is not None
        c = self.config
        count = len(batch)
        backoff, backoff_max = 0.1, 5.0
        pending = dict(requests)
        refused = 0
        for attempt in range(c.retries + 1):
            for signal, payload in list(pending.items()):
                try:
                    result = self.transport.export(signal, payload, c.timeout)
                except ExportError as e:
                    self._failures += 1
                    self._last_error = str(e)
                    if not e.retriable:
                        self._say(f"forward: {e}: {count} event(s) refused")
                        refused = count
                        pending.pop(signal)
                    continue
                self._requests += 1
                refused = max(refused, min(count, result.rejected))
                pending.pop(signal)
            if not pending:
                return {REFUSED: refused} if refused else None
            if attempt == c.retries or not self._queue.sleep(backoff):
                break
            backoff = min(backoff * 2, backoff_max)
        self._say(f"forward: {count} event(s) dropped after {attempt + 1} tries: {self._last_error}")
        return {FAILED_ALL_TRIES: count}

    @property
    def stats(self) -> SenderStats:
        c = self.counts
        return SenderStats(offered=c.put, sent=c.out, dropped=c.total_dropped, refused=c.dropped.get(REFUSED, 0),
                           requests=self._requests, failures=self._failures, last_error=self._last_error,
                           dropped_by_reason=dict(c.dropped))

    def force_flush(self, timeout: float = 5.0) -> bool:
        return self._queue.force_flush(timeout)

    def close(self, timeout: float = 5.0) -> SenderStats:
        """Send what waits (for up to `timeout` seconds) and stop; what is left is dropped and counted."""
        self._queue.shutdown(timeout)
        if self.transport is not None:
            self.transport.close()
        return self.stats

    def summary_line(self) -> str:
        """What forwarding did, for the exit summary."""
        st = self.stats
        line = f"forward to {self.config.endpoint}: {self.selected} event(s) selected, {st.sent} sent"
        if st.dropped:
            line += f", {st.dropped} dropped (" + ", ".join(
                f"{n} {reason}" for reason, n in sorted(st.dropped_by_reason.items())) + ")"
        return line
