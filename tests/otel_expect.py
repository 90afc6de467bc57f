"""What the OpenTelemetry SDK says the Rust peer emitted (its OTLP JSON lines, tests/peers/otel-rust), and what of it
the user_events exporters' layout can carry: the expected side of the field-by-field comparisons.

`carried_log` and `carried_span` apply, one by one, the limits docs/otel.md lists ("What the layout cannot carry"):
each is a property of the exporters' layout, not of dyntel, and every other field must come back exactly (with its
type) from dyntel's decoding and mapping.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dyntel.decoders.otlp_metrics import expand
from dyntel.otel import OtelLog, OtelSpan, to_otel
from dyntel.otel.records import STATUS_ERROR, STATUS_OK, STATUS_UNSET
from dyntel.sources.perf.data import PerfDataSource

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "otel-rust"
RECORDING = DATA / "otel-rust.perf.data"
SDK_JSON = DATA / "otel-rust.sdk.jsonl"
CARRIED_RESOURCE = ("service.name", "service.instance.id")


def any_value(v: dict[str, Any]) -> Any:
    """An OTLP JSON AnyValue to the Python value dyntel uses (int, float, bool, str, bytes, list, dict)."""
    if not v:
        return None
    (kind, value), = v.items()
    if kind == "stringValue":
        return value
    if kind == "intValue":
        return int(value)
    if kind == "doubleValue":
        return float(value)
    if kind == "boolValue":
        return bool(value)
    if kind == "bytesValue":
        return base64.b64decode(value)
    if kind == "arrayValue":
        return [any_value(x) for x in value.get("values", [])]
    if kind == "kvlistValue":
        return {kv["key"]: any_value(kv.get("value", {})) for kv in value.get("values", [])}
    raise AssertionError(f"unknown AnyValue {v}")


def attributes(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {kv["key"]: any_value(kv.get("value", {})) for kv in items}


@dataclass
class SdkRun:
    """The SDK's records, in the order it exported them, each with its resource attributes."""

    logs: list[dict[str, Any]] = field(default_factory=list)
    spans: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)  # one per data point: metric keys + "point"


def sdk_run(path: Path = SDK_JSON) -> SdkRun:
    run = SdkRun()
    for line in path.read_text().splitlines():
        request = json.loads(line)
        for rl in request.get("resourceLogs", []):
            resource = attributes(rl["resource"]["attributes"])
            for sl in rl["scopeLogs"]:
                for record in sl["logRecords"]:
                    run.logs.append({**record, "_resource": resource, "_scope": sl["scope"]})
        for rs in request.get("resourceSpans", []):
            resource = attributes(rs["resource"]["attributes"])
            for ss in rs["scopeSpans"]:
                for span in ss["spans"]:
                    run.spans.append({**span, "_resource": resource, "_scope": ss["scope"]})
        for rm in request.get("resourceMetrics", []):
            resource = attributes(rm["resource"]["attributes"])
            for sm in rm["scopeMetrics"]:
                for metric in sm["metrics"]:
                    kind = next(k for k in ("gauge", "sum", "histogram", "exponentialHistogram", "summary")
                                if k in metric)
                    for point in metric[kind]["dataPoints"]:
                        run.metrics.append({"metric": metric, "kind": kind, "point": point,
                                            "_resource": resource, "_scope": sm["scope"]})
    return run


def _hex(value: str | None) -> bytes | None:
    return bytes.fromhex(value) if value else None


def _carried_value(value: Any) -> Any:
    """The exporters write bool, int, double and string values; any other (bytes, array, map) as an empty string."""
    return value if isinstance(value, bool | int | float | str) else ""


def carried_log(sdk: dict[str, Any]) -> OtelLog:
    """The SDK's log record as the user_events logs exporter can carry it (docs/otel.md)."""
    time_ns = int(sdk.get("timeUnixNano", "0"))
    body = any_value(sdk["body"]) if "body" in sdk else None
    return OtelLog(
        # Part A's time is the record's timestamp, or its observed time when it has none.
        time_unix_nano=time_ns or int(sdk["observedTimeUnixNano"]),
        observed_time_unix_nano=None,  # not carried
        severity_number=int(sdk.get("severityNumber", 0)),
        severity_text=sdk.get("severityText") or None,
        body=None if body is None else _carried_value(body),
        attributes={k: _carried_value(v) for k, v in attributes(sdk.get("attributes", [])).items()},
        trace_id=_hex(sdk.get("traceId")),
        span_id=_hex(sdk.get("spanId")),
        flags=0,  # trace flags: not carried
        event_name=sdk.get("eventName") or None,
        resource={k: v for k, v in sdk["_resource"].items() if k in CARRIED_RESOURCE},
        scope_name=None,  # not carried
    )


def carried_span(sdk: dict[str, Any]) -> OtelSpan:
    """The SDK's span as the user_events span exporter can carry it (docs/otel.md)."""
    attrs = attributes(sdk.get("attributes", []))
    status = sdk.get("status", {})
    code = int(status.get("code", 0))
    message = status.get("message") or None
    return OtelSpan(
        name=sdk["name"],
        trace_id=bytes.fromhex(sdk["traceId"]),
        span_id=bytes.fromhex(sdk["spanId"]),
        parent_span_id=_hex(sdk.get("parentSpanId")),
        kind=int(sdk["kind"]),
        start_time_unix_nano=int(sdk["startTimeUnixNano"]),
        end_time_unix_nano=int(sdk["endTimeUnixNano"]),
        # `success` is true for OK and UNSET alike: OK comes back as UNSET.
        status_code=STATUS_ERROR if code == STATUS_ERROR else STATUS_UNSET,
        # The error message is written only when the span has no http.response.status_code.
        status_message=message if code == STATUS_ERROR and "http.response.status_code" not in attrs else None,
        attributes={k: _carried_value(v) for k, v in attrs.items()},
        # Links: their trace and span ids; a link's attributes and flags are not carried.
        links=[(bytes.fromhex(link["traceId"]), bytes.fromhex(link["spanId"])) for link in sdk.get("links", [])],
        resource={k: v for k, v in sdk["_resource"].items() if k in CARRIED_RESOURCE},
        scope_name=None,
    )


_TEMPORALITY = {1: "delta", 2: "cumulative"}
_KINDS = {"gauge": "gauge", "sum": "sum", "histogram": "histogram",
          "exponentialHistogram": "exponential_histogram", "summary": "summary"}


def expected_point(sdk: dict[str, Any]) -> dict[str, Any]:
    """The fields a metric point event must have, from the SDK's metric and point (everything is carried)."""
    metric, kind, point = sdk["metric"], sdk["kind"], sdk["point"]
    data = metric[kind]
    meta = {"name": metric["name"], "kind": _KINDS[kind], "unit": metric.get("unit", ""),
            "description": metric.get("description", ""),
            "temporality": _TEMPORALITY.get(data.get("aggregationTemporality", 0), "unspecified"),
            "monotonic": bool(data.get("isMonotonic", kind == "histogram"))}
    out: dict[str, Any] = {"metric": meta}
    if kind in ("gauge", "sum"):
        out["value"] = int(point["asInt"]) if "asInt" in point else float(point["asDouble"])
    else:
        out["count"] = int(point["count"])
        for optional in ("sum", "min", "max"):
            if optional in point:
                out[optional] = float(point[optional])
        out["bucket_counts"] = [int(x) for x in point.get("bucketCounts", [])]
        out["explicit_bounds"] = [float(x) for x in point.get("explicitBounds", [])]
    out.update(start_time=int(point.get("startTimeUnixNano", 0)), time=int(point["timeUnixNano"]),
               flags=int(point.get("flags", 0)), attributes=attributes(point.get("attributes", [])),
               resource=sdk["_resource"], scope={"name": sdk["_scope"]["name"],
                                                 "version": sdk["_scope"].get("version", "")})
    return out


@dataclass
class Decoded:
    logs: list[OtelLog]
    spans: list[OtelSpan]
    points: list[dict[str, Any]]  # metric point events' fields
    bad: int


def decode_recording(path: Path = RECORDING) -> Decoded:
    """The recording through dyntel: perf.data -> events -> to_otel / metric points."""
    out = Decoded([], [], [], 0)
    with open(path, "rb") as f:
        source = PerfDataSource(path.name, f)
        for event in expand(source.events(), source.stats):
            if event.provider == "otlp_metrics":
                out.points.append(event.fields)
                continue
            record = to_otel(event)
            if isinstance(record, OtelLog):
                out.logs.append(record)
            elif isinstance(record, OtelSpan):
                out.spans.append(record)
        out.bad = source.stats.bad
    return out


def typed(value: Any) -> Any:
    """A value with its type, so that 1 == 1.0 == True do not pass for each other."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return (type(value).__name__, value)


def differences(want: Any, got: Any) -> list[str]:
    """Field names (dotted) whose values or types differ between two records (dataclasses or dicts)."""
    a = want if isinstance(want, dict) else {k: getattr(want, k) for k in want.__slots__}
    b = got if isinstance(got, dict) else {k: getattr(got, k) for k in got.__slots__}
    return [k for k in sorted(set(a) | set(b)) if typed(a.get(k)) != typed(b.get(k))]


def status_of(code: int) -> str:
    return {STATUS_UNSET: "UNSET", STATUS_OK: "OK", STATUS_ERROR: "ERROR"}[code]
