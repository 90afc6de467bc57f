"""OpenTelemetry SDK log and span processors (and exporters) that write each record to user_events as it ends.

    provider = LoggerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_log_record_processor(UserEventsLogProcessor("myprovider"))
    tracer_provider.add_span_processor(UserEventsSpanProcessor("myprovider"))

Processors, not exporters behind the SDK's Simple/Batch processors, and why: a user_events write is a synchronous,
non-blocking system call with nothing to retry, so batching only adds a queue, a thread and a copy, and the Simple
processor adds a lock and a one-element list per record. A processor sees the record on the caller's thread, checks
the tracepoint's enable bit first and returns at once when nobody listens. Exporters are provided too
(`UserEventsLogExporter`, `UserEventsSpanExporter`) for setups that insist on one; they do the same per record.

The layout (provider naming, event names, Part A/B/C, severity to level) is the Rust exporters' (see
dyntel.producer.common_schema). Logs go to `<provider>_L<level>K1` for levels 1 to 5 (all registered up front, as
listeners may come later); spans to `<provider>_L4K1`. The provider name must be ASCII letters, digits and '_',
under 234 characters, as the Rust crates require.

Records without a severity are not written (the Rust exporter refuses them too). A write that fails is counted in
`errors` and never raised into the application, as the SDK's error handling rules ask.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from dyntel.otel.common_schema import severity_level
from dyntel.producer.common_schema import (
    Shapes,
    attribute,
    encode_log,
    encode_span,
    log_metadata,
    pack_str,
    span_metadata,
)
from dyntel.producer.provider import Event, EventSet, Provider
from dyntel.producer.sink import Sink

__all__ = ["UserEventsLogExporter", "UserEventsLogProcessor", "UserEventsSpanExporter", "UserEventsSpanProcessor",
           "check_provider_name"]

KEYWORD = 1
SPAN_LEVEL = 4  # Informational
_NAME = re.compile(r"[A-Za-z0-9_]+")


def check_provider_name(name: str) -> None:
    if not name or len(name) >= 234 or not _NAME.fullmatch(name):
        raise ValueError(f"provider name {name!r}: use 1 to 233 ASCII letters, digits and '_' (the names the "
                         f"OpenTelemetry user_events exporters accept)")


class _ResourceFields:
    """Part A's cloud role fields and the resource attributes copied to Part C, worked out once per Resource."""

    __slots__ = ("extra", "instance", "resource", "role")

    def __init__(self, resource: Resource | None, keys: frozenset[str]) -> None:
        self.resource = resource
        attrs = resource.attributes if resource is not None else {}
        role, instance = attrs.get("service.name"), attrs.get("service.instance.id")
        self.role = pack_str(str(role)) if role is not None else None
        self.instance = pack_str(str(instance)) if instance is not None else None
        self.extra = tuple((k, *attribute(v)) for k, v in attrs.items() if k in keys)


class _Writer:
    """What the processor and exporter share: the provider, its event sets, the shape caches, the counters."""

    def __init__(self, provider_name: str, levels: Iterable[int], sink: Sink | None, noop_if_unavailable: bool,
                 resource_attributes: Iterable[str]) -> None:
        check_provider_name(provider_name)
        self.provider = Provider(provider_name, sink=sink, noop_if_unavailable=noop_if_unavailable)
        sets: list[EventSet | None] = [None] * 6
        for level in levels:
            sets[level] = self.provider.register_set(level, KEYWORD)
        self.sets = sets
        self.keys = frozenset(resource_attributes)
        self._resource: _ResourceFields = _ResourceFields(None, self.keys)
        self.events: dict[tuple[int, bytes], Event] = {}
        self.written = 0
        self.dropped = 0  # no listener when written, or not writable (no severity)
        self.errors = 0

    def resource(self, resource: Resource | None) -> _ResourceFields:
        r = self._resource
        if r.resource is not resource:
            r = self._resource = _ResourceFields(resource, self.keys)
        return r

    def event(self, event_set: EventSet, meta: bytes) -> Event:
        key = (event_set.level, meta)
        e = self.events.get(key)
        if e is None:
            if len(self.events) >= 4096:
                self.events.clear()
            e = self.events[key] = Event(event_set, "", metadata=meta)
        return e

    def write(self, event: Event, payload: bytes) -> None:
        try:
            if event.write_payload(payload):
                self.written += 1
            else:
                self.dropped += 1
        except (OSError, ValueError):
            self.errors += 1

    def close(self) -> None:
        self.provider.close()


class _LogEncoder:
    def __init__(self, writer: _Writer, event_name: Callable[[ReadableLogRecord | ReadWriteLogRecord], str] | None):
        self.writer = writer
        self.event_name = event_name
        self.shapes = Shapes(log_metadata)
        # The enable bit and event set of each SeverityNumber, keyed by the member's id(): members are singletons,
        # and hashing an Enum member or reading its .value runs Python code, which the disabled path cannot afford.
        self._bits: dict[int, memoryview] = {}
        self._sets: dict[int, EventSet] = {}
        for severity in SeverityNumber:
            event_set = writer.sets[severity_level(severity.value)]
            if event_set is not None:
                self._bits[id(severity)] = event_set._bit
                self._sets[id(severity)] = event_set

    def enabled(self, severity_number: int | None) -> bool:
        s = self.writer.sets[severity_level(severity_number or 0)]
        return s is not None and s.enabled

    def emit(self, record: ReadableLogRecord | ReadWriteLogRecord) -> None:
        log = record.log_record
        severity = log.severity_number
        bit = self._bits.get(id(severity))
        if bit is None or severity is None:  # no severity (or UNSPECIFIED): the Rust exporter refuses these too
            self.writer.dropped += 1
            return
        if not bit[0] & 1:  # the common case: nobody listens, so nothing is encoded
            return
        w = self.writer
        s = self._sets[id(severity)]
        try:
            r = w.resource(record.resource)
            t = log.timestamp or log.observed_timestamp or time.time_ns()
            name = self.event_name(record) if self.event_name is not None else "Log"
            key, payload = encode_log(name, t, log.trace_id or 0, log.span_id or 0, r.role, r.instance,
                                      log.attributes, r.extra, log.body, severity.value, log.severity_text,
                                      log.event_name)
            event = w.event(s, self.shapes.get(key))
        except (TypeError, ValueError, OverflowError):
            w.errors += 1
            return
        w.write(event, payload)


class UserEventsLogProcessor(LogRecordProcessor):
    """Writes each log record, on emit, as one Common Schema event; nothing when its tracepoint is disabled.

    `sink` replaces user_events (dyntel.producer.sink.CaptureSink, for tests); `noop_if_unavailable` makes a
    kernel without user_events a no-op instead of an error at construction; `resource_attributes` names resource
    attributes to copy into every record's Part C; `event_name` picks the EventHeader event name (default "Log").
    """

    def __init__(self, provider_name: str, *, sink: Sink | None = None, noop_if_unavailable: bool = False,
                 resource_attributes: Iterable[str] = (),
                 event_name: Callable[[ReadableLogRecord | ReadWriteLogRecord], str] | None = None) -> None:
        self.writer = _Writer(provider_name, range(1, 6), sink, noop_if_unavailable, resource_attributes)
        self._encoder = _LogEncoder(self.writer, event_name)
        self.on_emit = self._encoder.emit  # type: ignore[method-assign,assignment]  # one call fewer per record

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        self._encoder.emit(log_record)

    def enabled(self, *, context: Context | None = None, instrumentation_scope: Any = None,
                severity_number: Any = None, event_name: str | None = None) -> bool:
        """Whether a record of this severity would be written now, so that `Logger.enabled` can skip making it."""
        return self._encoder.enabled(severity_number.value if severity_number is not None else None)

    def shutdown(self) -> None:
        self.writer.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # nothing is ever held back


class UserEventsLogExporter(LogRecordExporter):
    """The same as UserEventsLogProcessor, as an exporter (use it with SimpleLogRecordProcessor)."""

    def __init__(self, provider_name: str, **options: Any) -> None:
        self._processor = UserEventsLogProcessor(provider_name, **options)
        self.writer = self._processor.writer

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        errors = self.writer.errors
        for record in batch:
            self._processor._encoder.emit(record)
        return LogRecordExportResult.SUCCESS if self.writer.errors == errors else LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        self.writer.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class _SpanEncoder:
    def __init__(self, writer: _Writer) -> None:
        self.writer = writer
        self.shapes = Shapes(span_metadata)
        s = writer.sets[SPAN_LEVEL]
        assert s is not None
        self.set = s

    def end(self, span: ReadableSpan) -> None:
        s = self.set
        if not s.enabled:
            return
        w = self.writer
        try:
            r = w.resource(span.resource)
            ctx = span.context
            if ctx is None:
                return
            parent = span.parent
            status = span.status
            error = status.status_code == StatusCode.ERROR
            key, payload = encode_span(
                span.name, ctx.trace_id, ctx.span_id, parent.span_id if parent is not None else 0, span.kind.value,
                span.start_time or 0, span.end_time or 0, not error, status.description if error else None,
                span.attributes, ((link.context.trace_id, link.context.span_id) for link in span.links), r.role,
                r.instance)
            event = w.event(s, self.shapes.get(key))
        except (TypeError, ValueError, OverflowError):
            w.errors += 1
            return
        w.write(event, payload)


class UserEventsSpanProcessor(SpanProcessor):
    """Writes each span, when it ends, as one Common Schema "Span" event on `<provider>_L4K1`."""

    def __init__(self, provider_name: str, *, sink: Sink | None = None, noop_if_unavailable: bool = False) -> None:
        self.writer = _Writer(provider_name, (SPAN_LEVEL,), sink, noop_if_unavailable, ())
        self._encoder = _SpanEncoder(self.writer)
        self.on_end = self._encoder.end  # type: ignore[method-assign]

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        self._encoder.end(span)

    def shutdown(self) -> None:
        self.writer.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class UserEventsSpanExporter(SpanExporter):
    """The same as UserEventsSpanProcessor, as an exporter (use it with SimpleSpanProcessor)."""

    def __init__(self, provider_name: str, **options: Any) -> None:
        self._processor = UserEventsSpanProcessor(provider_name, **options)
        self.writer = self._processor.writer

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        errors = self.writer.errors
        for span in spans:
            self._processor._encoder.end(span)
        return SpanExportResult.SUCCESS if self.writer.errors == errors else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.writer.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
