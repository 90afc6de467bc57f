"""The OpenTelemetry Collector's column of the comparison: what the collector wrote (its file exporter's OTLP JSON,
tests/otelcol.py) against what the app's SDK emitted (tests/otel_expect.py), field by field, with per-field tallies.

Both sides are OTLP JSON lines in the same layout, read by otel_expect.sdk_run. The expected side is the SDK's
record as the exporters' layout can carry it (otel_expect.carried_log / carried_span / expected_point: the limits
docs/otel.md lists), plus what the forwarder itself decides (docs/otel.md, "-> Collector"):

- scope: the provider the event was written to (the layout does not carry the SDK's scope);
- a log record's observed time: when dyntel read the event (the layout does not carry the SDK's); checked to be
  set, not compared.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from otel_expect import attributes, carried_log, carried_span, expected_point, typed

LOG_FIELDS = ("time", "severity_number", "severity_text", "body", "event_name", "attributes", "trace_id",
              "span_id", "flags", "resource", "scope")
SPAN_FIELDS = ("name", "kind", "trace_id", "span_id", "parent_span_id", "flags", "start", "end", "status_code",
               "status_message", "attributes", "events", "links", "resource", "scope")
POINT_FIELDS = ("name", "kind", "unit", "description", "temporality", "monotonic", "value", "count", "sum", "min",
                "max", "bucket_counts", "explicit_bounds", "start_time", "time", "flags", "attributes",
                "resource", "scope")


def _hex(value: str | None) -> bytes | None:
    return bytes.fromhex(value) if value else None


def log_fields(rec: dict[str, Any]) -> dict[str, Any]:
    """A log record of OTLP JSON (as otel_expect.sdk_run gives it) as the compared fields."""
    return {"time": int(rec.get("timeUnixNano", "0")), "severity_number": int(rec.get("severityNumber", 0)),
            "severity_text": rec.get("severityText") or None,
            "body": attributes([{"key": "b", "value": rec["body"]}])["b"] if "body" in rec else None,
            "event_name": rec.get("eventName") or None, "attributes": attributes(rec.get("attributes", [])),
            "trace_id": _hex(rec.get("traceId")), "span_id": _hex(rec.get("spanId")),
            "flags": int(rec.get("flags", 0)), "resource": rec["_resource"], "scope": rec["_scope"].get("name")}


def expected_log_fields(sdk: dict[str, Any], provider: str) -> dict[str, Any]:
    c = carried_log(sdk)
    return {"time": c.time_unix_nano, "severity_number": c.severity_number, "severity_text": c.severity_text,
            "body": c.body, "event_name": c.event_name, "attributes": c.attributes, "trace_id": c.trace_id,
            "span_id": c.span_id, "flags": c.flags, "resource": c.resource, "scope": provider}


def span_fields(rec: dict[str, Any]) -> dict[str, Any]:
    status = rec.get("status", {})
    return {"name": rec["name"], "kind": int(rec.get("kind", 0)), "trace_id": _hex(rec["traceId"]),
            "span_id": _hex(rec["spanId"]), "parent_span_id": _hex(rec.get("parentSpanId")),
            "flags": int(rec.get("flags", 0)), "start": int(rec["startTimeUnixNano"]),
            "end": int(rec["endTimeUnixNano"]), "status_code": int(status.get("code", 0)),
            "status_message": status.get("message") or None, "attributes": attributes(rec.get("attributes", [])),
            "events": [(e.get("name"), int(e["timeUnixNano"]), attributes(e.get("attributes", [])))
                       for e in rec.get("events", [])],
            "links": [(_hex(link["traceId"]), _hex(link["spanId"])) for link in rec.get("links", [])],
            "resource": rec["_resource"], "scope": rec["_scope"].get("name")}


def expected_span_fields(sdk: dict[str, Any], provider: str) -> dict[str, Any]:
    c = carried_span(sdk)
    # Span events and trace flags are not written by the span exporter (docs/otel.md).
    return {"name": c.name, "kind": c.kind, "trace_id": c.trace_id, "span_id": c.span_id,
            "parent_span_id": c.parent_span_id, "flags": 0, "start": c.start_time_unix_nano,
            "end": c.end_time_unix_nano, "status_code": c.status_code, "status_message": c.status_message,
            "attributes": c.attributes, "events": [], "links": c.links, "resource": c.resource, "scope": provider}


def point_fields(rec: dict[str, Any]) -> dict[str, Any]:
    """A metric data point (otel_expect.sdk_run's metrics entry) as the compared fields; everything is carried."""
    p = expected_point(rec)
    out = {k: p.get(k) for k in POINT_FIELDS if k in p}
    out.update(p.pop("metric"))
    return out


def point_key(rec: dict[str, Any]) -> tuple[str, str]:
    return rec["metric"]["name"], repr(sorted(attributes(rec["point"].get("attributes", [])).items()))


@dataclass
class Tally:
    """Per signal and field: how many records had it equal (value and type) on both sides, of how many."""

    matched: Counter[str] = field(default_factory=Counter)
    total: Counter[str] = field(default_factory=Counter)
    # How many records had a value (not None, "", 0, [] or {}) in the field on the expected side: a field equal
    # only because both sides are empty proves nothing.
    nonempty: Counter[str] = field(default_factory=Counter)
    differences: list[str] = field(default_factory=list)

    def add(self, signal: str, index: int, want: dict[str, Any], got: dict[str, Any]) -> None:
        for name in sorted(set(want) | set(got)):
            key = f"{signal}.{name}"
            self.total[key] += 1
            if want.get(name) not in (None, "", 0, [], {}) or want.get(name) is False:
                self.nonempty[key] += 1
            if typed(want.get(name)) == typed(got.get(name)):
                self.matched[key] += 1
            else:
                self.differences.append(f"{signal}[{index}].{name}: want {want.get(name)!r}, got {got.get(name)!r}")

    def never_set(self) -> list[str]:
        """The fields no expected record had a value in."""
        return [key for key in sorted(self.total) if not self.nonempty[key]]

    def summary(self) -> str:
        by_signal: dict[str, list[str]] = {}
        for key in sorted(self.total):
            signal, name = key.split(".", 1)
            by_signal.setdefault(signal, []).append(f"{name} {self.matched[key]}/{self.total[key]}")
        return "\n".join(f"{signal}: {', '.join(items)}" for signal, items in by_signal.items())


def compare(sdk: Any, got: Any, logs_provider: str, trace_provider: str) -> Tally:
    """The SDK's run against the collector's output (both otel_expect.SdkRun): logs and spans in order, metric
    points by name and attributes. A record missing on either side is a difference, never silently skipped."""
    tally = Tally()
    if len(sdk.logs) != len(got.logs):
        tally.differences.append(f"logs: the SDK emitted {len(sdk.logs)}, the collector wrote {len(got.logs)}")
    for i, (want, have) in enumerate(zip(sdk.logs, got.logs, strict=False)):
        tally.add("logs", i, expected_log_fields(want, logs_provider), log_fields(have))
        if not int(have.get("observedTimeUnixNano", "0")):
            tally.differences.append(f"logs[{i}].observed_time: not set")
    if len(sdk.spans) != len(got.spans):
        tally.differences.append(f"spans: the SDK emitted {len(sdk.spans)}, the collector wrote {len(got.spans)}")
    for i, (want, have) in enumerate(zip(sdk.spans, got.spans, strict=False)):
        tally.add("spans", i, expected_span_fields(want, trace_provider), span_fields(have))
    # Metric points by name and attributes; the same series exported twice (two collections) pairs in order.
    received: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in got.metrics:
        received.setdefault(point_key(r), []).append(r)
    if len(sdk.metrics) != len(got.metrics):
        tally.differences.append(f"metrics: the SDK emitted {len(sdk.metrics)} points, the collector wrote "
                                 f"{len(got.metrics)}")
    for i, want in enumerate(sdk.metrics):
        same = received.get(point_key(want))
        if not same:
            tally.differences.append(f"metrics[{i}] {point_key(want)}: not in the collector's output")
            continue
        # The metrics buffer carries everything, the SDK's resource and scope too.
        tally.add("metrics", i, point_fields(want), point_fields(same.pop(0)))
    return tally
