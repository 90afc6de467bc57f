"""`otlp`: an OpenTelemetry log record about the firing, to a collector: at least once, in order, deduplicated by
`dyntel.alert.seq`, spooled to disk (bounded; overflow counted) while the collector is down.

Options: `endpoint` (default http://127.0.0.1:4318 for http/protobuf, 127.0.0.1:4317 for grpc), `protocol`
(`http/protobuf`, the default, or `grpc`), `severity` (TRACE, DEBUG, INFO, WARN (the default), ERROR, FATAL),
`body` (text; placeholders already expanded), `attributes` (a mapping added to the record's own), `timeout` (one
export request; the action itself only queues). The action returns as soon as the record is queued for the
collector's sender thread (`delivery: queued`) or, while the collector is down, written durably to the spool
(`delivery: spooled`); the sender delivers it in order (dyntel.otel.exporter, docs/otlp.md).

The record's attributes: `dyntel.rule`; the event's identity (`dyntel.event.provider`, `.name`, `.level`,
`.keyword`, `.id`); `dyntel.group.KEY` per group key; `process.pid`, `thread.id`; the earlier actions' outputs
of the same firing (`dyntel.actions.dump.path`, `dyntel.actions.dump.status`, ...); the rule's `attributes`; and
`dyntel.alert.seq`. Trace and span ids come from the event's Common Schema Part A when it has one, else the
event's activity id is the trace id.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from dyntel.actions import ActionContext
from dyntel.actions.placeholders import as_text
from dyntel.actions.spec import ActionSpec
from dyntel.event import Event
from dyntel.firing import OK, ActionOutcome, Firing
from dyntel.options import Duration, OptionsModel
from dyntel.otel import otlp_proto
from dyntel.otel.common_schema import to_otel
from dyntel.otel.exporter import SEQ_ATTRIBUTE, exporter_for, with_settings
from dyntel.otel.otlp_transport import HTTP, check_protocol, default_endpoint
from dyntel.otel.records import OtelLog
from dyntel.security import redact
from dyntel.units import parse_duration

TYPE = "otlp"
RANK = 40
DEFAULT_SEVERITY = "WARN"
EVENT_NAME = "dyntel.alert"
# context.services keys the integrator may set: the spool's parent directory.
SPOOL_SERVICE = "otlp_spool_dir"
SPOOL_SUBDIR = "otlp-spool"


class OtlpOptions(OptionsModel):
    what: ClassVar[str] = "otlp"
    endpoint: str | None = None
    protocol: Literal["http/protobuf", "grpc"] | None = None
    severity: Literal["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"] | None = None
    body: str | None = None
    attributes: dict[str, Any] | None = None
    timeout: Duration | None = None


OPTIONS = OtlpOptions

_SCALAR = (str, int, float, bool, bytes)


def run(spec: ActionSpec, firing: Firing, context: ActionContext) -> ActionOutcome:
    options = spec.options
    protocol = check_protocol(as_text(options.get("protocol") or HTTP))
    endpoint = as_text(options.get("endpoint") or default_endpoint(protocol))
    severity = as_text(options.get("severity") or DEFAULT_SEVERITY).upper()
    if severity not in otlp_proto.SEVERITY_NUMBERS:
        raise ValueError(f"severity {severity!r}: write one of {', '.join(otlp_proto.SEVERITY_NUMBERS)}")
    extra = options.get("attributes") or {}
    if not isinstance(extra, Mapping):
        raise ValueError(f"attributes: expected a mapping of names to values, got {type(extra).__name__}")
    record = alert_record(firing, severity, options.get("body"), extra, context.redact)
    spool_root = context.services.get(SPOOL_SERVICE) or Path(context.artifacts.settings.directory) / SPOOL_SUBDIR
    settings = None
    if options.get("timeout") is not None:
        timeout = options["timeout"]
        # As the scheduler reads it: text is a duration, a number is seconds.
        seconds = parse_duration(timeout) / 1e9 if isinstance(timeout, str) else float(timeout)
        settings = with_settings(timeout=seconds)
    exporter = exporter_for(endpoint, protocol, spool_root, log=context.log, settings=settings,
                            queues=context.queues)

    def build(seq: int) -> bytes:
        record.attributes[SEQ_ATTRIBUTE] = seq
        return bytes(otlp_proto.log_record(record).SerializeToString())

    submitted = exporter.submit(build)
    detail: dict[str, Any] = {"delivery": submitted.status, "seq": submitted.seq, "endpoint": endpoint,
                              "protocol": protocol}
    if submitted.dropped:
        detail["spool_dropped"] = submitted.dropped
    return ActionOutcome(TYPE, OK, detail)


def alert_record(firing: Firing, severity: str, body: Any, extra: Mapping[str, Any],
                 redact_patterns: Sequence[str] = ()) -> OtelLog:
    """The log record of one firing (without its sequence number, which the exporter assigns). Attribute values
    whose names are secrets (`dyntel.event.fields.DB_PASSWORD`, `token`) and secrets written in text (a command line
    with --password=...) are redacted with `redact_patterns`."""
    event = firing.event
    attributes: dict[str, Any] = {"dyntel.rule": firing.rule}
    trace_id = span_id = None
    flags = 0
    if event is not None:
        attributes.update(event_identity(event))
        trace_id, span_id, flags = trace_context(event)
    for key, value in firing.group.items():
        attributes[f"dyntel.group.{key}"] = _plain(value)
    for outcome in firing.actions:
        attributes[f"dyntel.actions.{outcome.type}.status"] = outcome.status
        for key, value in outcome.detail.items():
            attributes[f"dyntel.actions.{outcome.type}.{key}"] = _plain(value)
    for key, value in extra.items():
        attributes[str(key)] = _plain(value)
    attributes = {k: v for k, v in attributes.items() if v is not None}
    now = time.time_ns()
    # The event's own time when it has a wall-clock one: the firing's time is the engine's clock, which is later
    # than the event's for an event that came in behind a later one from another CPU (docs/rules.md, out of order).
    if event is None:
        when = firing.time
    elif event.time_is_wall and event.time is not None:
        when = event.time
    else:
        when = now
    text = as_text(body) if body is not None else default_body(firing)
    if redact_patterns:
        attributes = redact(attributes, redact_patterns)
        text = redact(text, redact_patterns)
    return OtelLog(time_unix_nano=when, observed_time_unix_nano=now,
                   severity_number=otlp_proto.SEVERITY_NUMBERS[severity], severity_text=severity, body=text,
                   attributes=attributes, trace_id=trace_id, span_id=span_id, flags=flags, event_name=EVENT_NAME,
                   resource={}, scope_name=otlp_proto.SCOPE_NAME)


def default_body(firing: Firing) -> str:
    e = firing.event
    if e is None:
        return f"{firing.rule} fired"
    pid = f" pid {e.pid}" if e.pid is not None else ""
    return f"{firing.rule} fired on {e.provider}:{e.name}{pid}"


def event_identity(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"dyntel.event.provider": event.provider, "dyntel.event.name": event.name}
    for key, value in (("level", event.level), ("keyword", event.keyword), ("id", event.id)):
        if value is not None:
            out[f"dyntel.event.{key}"] = value
    if event.pid is not None:
        out["process.pid"] = event.pid
    if event.tid is not None:
        out["thread.id"] = event.tid
    return out


def trace_context(event: Event) -> tuple[bytes | None, bytes | None, int]:
    """(trace_id, span_id, flags): Common Schema Part A's when the event has them, else the activity id."""
    try:
        mapped = to_otel(event)
    except Exception:  # an odd event must not cost the alert its other attributes
        mapped = None
    if mapped is not None and mapped.trace_id:
        flags = mapped.flags if isinstance(mapped, OtelLog) else 0
        return mapped.trace_id, mapped.span_id or None, flags
    activity = event.activity
    if activity and len(activity) == 16 and any(activity):
        return bytes(activity), None, 0
    return None, None, 0


def _plain(value: Any) -> Any:
    """An attribute value OTLP can carry: scalars, lists and mappings of them; anything else as its text."""
    if value is None or isinstance(value, _SCALAR):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)
