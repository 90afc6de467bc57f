"""Forwarding to the real OpenTelemetry Collector (tests/otelcol.py): Common Schema events written by the
OpenTelemetry SDK through dyntel's producer (the Rust exporters' layout) and decoded as `dyntel run` decodes them are
written by the collector as the records they were; other events become records whose attributes are their fields;
the `forward:` selection. Batching per request and nothing listening use tests/otlp_receiver.py, which counts
requests (the collector's batch processor merges them)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)
from otelcol import Collector
from otlp_receiver import Receiver

from dyntel.decoders.eventheader import EventHeaderDecoder
from dyntel.event import ArrayKind, Encoding, Event, FieldInfo, Format, Schema
from dyntel.forwarding import ForwardConfig, Forwarder, parse_forward
from dyntel.otel import otlp_proto, otlp_wire
from dyntel.otel.common_schema import to_otel
from dyntel.otel.otlp_events import EventEncoder
from dyntel.otel.otlp_proto import LogRecord, Span
from dyntel.otel.records import OtelLog, OtelSpan
from dyntel.producer.otel import UserEventsLogProcessor, UserEventsSpanProcessor
from dyntel.producer.sink import capture_pair
from dyntel.rules.errors import RuleErrors

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0x00F067AA0BA902B7
TIME = 1_704_112_496_789_000_000
PROTOCOLS = ["http/protobuf", "grpc"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    c = Collector(tmp_path / "otelcol").start()
    yield c
    c.stop()


def endpoint(receiver: Receiver | Collector, protocol: str) -> str:
    return receiver.http_endpoint if protocol == "http/protobuf" else receiver.grpc_endpoint


def forwarder(receiver: Receiver | Collector, protocol: str, yaml_select: str = "") -> Forwarder:
    text = f"forward:\n  endpoint: {endpoint(receiver, protocol)}\n  protocol: {protocol}\n  max_delay: 20ms\n"
    config = parse_forward("config.yaml", text + yaml_select)
    assert config is not None
    return Forwarder(config)


def produced(emit: object) -> list[Event]:
    """Events the producer wrote for what `emit(sink)` did, decoded by dyntel's EventHeader decoder."""
    sink, reader = capture_pair()
    try:
        emit(sink)  # type: ignore[operator]
        decoder = EventHeaderDecoder()
        return [decoder.decode(name, raw) for name, raw in sink.receive(reader)]
    finally:
        os.close(sink.fd)
        reader.close()


RESOURCE = Resource({"service.name": "checkout", "service.instance.id": "pod-1"})
ATTRIBUTES = {"user": "alice", "amount": 42, "retry": True, "ratio": 0.25, "event_id": 7}


def emit_logs(sink: object) -> None:
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(UserEventsLogProcessor("myprovider", sink=sink))  # type: ignore[arg-type]
    context = set_span_in_context(NonRecordingSpan(SpanContext(TRACE_ID, SPAN_ID, False, TraceFlags(1))))
    logger = provider.get_logger("scope")
    logger.emit(timestamp=TIME, context=context, severity_number=SeverityNumber.ERROR, severity_text="ERROR",
                body="payment failed", attributes=ATTRIBUTES, event_name="checkout.failure")
    logger.emit(timestamp=TIME + 1, severity_number=SeverityNumber.DEBUG, body=12)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_common_schema_logs_arrive_as_the_records_they_were(collector: Collector, protocol: str) -> None:
    events = produced(emit_logs)
    assert [e.name for e in events] == ["Log", "Log"]
    f = forwarder(collector, protocol)
    assert all(f.offer(e) for e in events)
    first, second = collector.wait_for(logs=2).logs
    stats = f.close()
    assert stats.sent == 2 and stats.dropped == 0
    assert first.resource == {"service.name": "checkout", "service.instance.id": "pod-1"}
    assert first.scope == "myprovider"
    r = first.record
    assert r.time_unix_nano == TIME
    assert (r.severity_number, r.severity_text) == (SeverityNumber.ERROR.value, "ERROR")
    assert r.body.string_value == "payment failed"
    assert first.attributes == ATTRIBUTES
    assert r.trace_id == TRACE_ID.to_bytes(16, "big") and r.span_id == SPAN_ID.to_bytes(8, "big")
    assert r.event_name == "checkout.failure"
    assert second.record.body.int_value == 12 and second.record.severity_number == SeverityNumber.DEBUG.value
    assert second.record.trace_id == b"" and second.attributes == {}


def emit_span(sink: object) -> None:
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(UserEventsSpanProcessor("myprovider", sink=sink))  # type: ignore[arg-type]
    parent = set_span_in_context(NonRecordingSpan(SpanContext(TRACE_ID, 0x1111111111111111, False, TraceFlags(1))))
    span = provider.get_tracer("t").start_span("GET /cart", context=parent, kind=SpanKind.CLIENT,
                                               attributes={"http.request.method": "GET", "retries": 2},
                                               start_time=TIME)
    span.set_status(Status(StatusCode.ERROR, "boom"))
    span.end(end_time=TIME + 1_000_000_000)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_common_schema_spans_arrive_as_spans(collector: Collector, protocol: str) -> None:
    [event] = produced(emit_span)
    f = forwarder(collector, protocol)
    f.offer(event)
    out = collector.wait_for(spans=1)
    f.close()
    [got] = out.spans
    assert got.resource == {"service.name": "checkout", "service.instance.id": "pod-1"}
    s = got.record
    assert s.name == "GET /cart" and s.kind == Span.SpanKind.SPAN_KIND_CLIENT
    assert s.trace_id == TRACE_ID.to_bytes(16, "big") and s.parent_span_id == (0x1111111111111111).to_bytes(8, "big")
    assert (s.start_time_unix_nano, s.end_time_unix_nano) == (TIME, TIME + 1_000_000_000)
    assert (s.status.code, s.status.message) == (2, "boom")
    assert got.attributes == {"http.request.method": "GET", "retries": 2}
    assert got.scope == "myprovider" and out.logs == []


def plain_schema() -> Schema:
    req = Schema((FieldInfo("method", Encoding.ZSTRING_CHAR8), FieldInfo("bytes", Encoding.VALUE64)))
    return Schema((
        FieldInfo("path", Encoding.ZSTRING_CHAR8),
        FieldInfo("status", Encoding.VALUE32, Format.SIGNED_INT),
        FieldInfo("ok", Encoding.VALUE8, Format.BOOLEAN),
        FieldInfo("latency", Encoding.VALUE64, Format.FLOAT),
        FieldInfo("blob", Encoding.BINARY_LENGTH16_CHAR8),
        FieldInfo("ports", Encoding.VALUE16, Format.PORT, ArrayKind.VARIABLE),
        FieldInfo("req", Encoding.STRUCT, children=req),
        FieldInfo("peer", Encoding.VALUE32, Format.IP_ADDRESS),
    ))


def plain_event(provider: str = "MyService", name: str = "RequestDone", level: int = 2, status: int = 503) -> Event:
    return Event(provider, name, plain_schema(),
                 ["/api/cart", status, 1, 0.5, b"\x00\x01", [80, 443], ["GET", 1 << 40], b"\x7f\x00\x00\x01"],
                 source="user_events", time=TIME, pid=10, tid=11, level=level, activity=bytes(range(16)))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_other_events_become_records_whose_attributes_are_their_fields(collector: Collector, protocol: str) -> None:
    f = forwarder(collector, protocol)
    f.offer(plain_event())
    [got] = collector.wait_for(logs=1).logs
    f.close()
    assert got.resource["service.name"] == "dyntel" and got.scope == "MyService"
    r = got.record
    assert r.event_name == "MyService:RequestDone"
    assert (r.severity_number, r.severity_text) == (17, "ERROR")
    assert r.time_unix_nano == TIME and r.observed_time_unix_nano > 0
    assert r.trace_id == bytes(range(16))
    assert got.attributes == {"path": "/api/cart", "status": 503, "ok": True, "latency": 0.5, "blob": b"\x00\x01",
                              "ports": [80, 443], "req": {"method": "GET", "bytes": 1 << 40},
                              "peer": "127.0.0.1", "process.pid": 10, "thread.id": 11}


def test_selection_by_provider_event_and_condition(collector: Collector) -> None:
    f = forwarder(collector, "http/protobuf", "  select:\n"
                                             "    - provider: Whole\n"
                                             "    - {provider: Some, event: Picked}\n"
                                             "    - condition: level <= 1\n"
                                             "    - {provider: MyService, condition: \"fields.status >= 500\"}\n")
    offered = [
        plain_event("Whole", "Any", level=5),  # yes: whole provider
        plain_event("Some", "Picked", level=5),  # yes
        plain_event("Some", "Other", level=5),  # no
        plain_event("Nobody", "X", level=1),  # yes: the condition
        plain_event("Nobody", "X", level=4),  # no
        plain_event("MyService", "RequestDone", level=4, status=503),  # yes
        plain_event("MyService", "RequestDone", level=4, status=200),  # no
    ]
    taken = [f.offer(e) for e in offered]
    assert taken == [True, True, False, True, False, True, False]
    collector.wait_for(logs=4)
    f.close()
    time.sleep(0.2)  # nothing more comes
    assert [r.record.event_name for r in collector.read().logs] == ["Whole:Any", "Some:Picked", "Nobody:X",
                                                                    "MyService:RequestDone"]


def test_a_batch_holds_at_most_batch_records(receiver: Receiver) -> None:
    config = parse_forward("c.yaml", f"forward: {{endpoint: {receiver.http_endpoint}, batch: 100, max_delay: 5s}}")
    assert config is not None and config.batch == 100
    f = Forwarder(config)
    for _ in range(250):
        f.offer(plain_event())
    assert receiver.wait_for(logs=200, timeout=3)  # two full batches went without waiting for max_delay
    stats = f.close()
    assert receiver.log_count == 250 and receiver.requests == 3 and stats.sent == 250


def test_records_that_cannot_be_sent_are_counted_not_kept_forever(receiver: Receiver) -> None:
    receiver.stop()
    config = ForwardConfig(receiver.http_endpoint, batch=10, max_delay=0.01, queue=20, retries=1, timeout=1.0)
    f = Forwarder(config)
    for _ in range(100):
        f.offer(plain_event())
    stats = f.close(timeout=3)
    assert stats.sent == 0 and stats.dropped == 100 and stats.offered == 100


def test_config_errors_name_the_place() -> None:
    text = ("forward:\n"
            "  endpoint: http://127.0.0.1:4318\n"
            "  protocol: carrier-pigeon\n"
            "  batch: 0\n"
            "  colour: blue\n"
            "  select:\n"
            "    - {provider: A, condition: \"fields.x >\"}\n"
            "    - {event: OnlyEvent}\n")
    with pytest.raises(RuleErrors) as e:
        parse_forward("conf.yaml", text)
    lines = str(e.value).splitlines()
    assert lines[0].startswith("conf.yaml:3:13: forward: protocol 'carrier-pigeon'")
    assert any(line.startswith("conf.yaml:4:10: forward: batch: expected a whole number >= 1") for line in lines)
    assert any(line.startswith("conf.yaml:5:3: forward: unknown key 'colour'") for line in lines)
    assert any(line.startswith("conf.yaml:7:43: syntax error in condition") for line in lines)
    assert any(line.startswith("conf.yaml:8:15: forward: select: event: needs provider") for line in lines)
    assert parse_forward("other.yaml", "rules: []\n") is None


def test_the_wire_encoder_writes_what_the_generated_classes_write() -> None:
    log = OtelLog(TIME, TIME + 5, 17, "ERROR", {"k": [1, "two", 3.5, None, b"\x01", {"n": -1}]},
                  {"s": "t", "i": -(1 << 63), "big": 1 << 64, "b": False, "f": 0.0, "d": {"a": {"b": True}},
                   "bad": "\udcff"}, bytes(16), b"\x01" * 8, 1, "name", {}, None)
    assert LogRecord.FromString(otlp_wire.log_record(log)) == otlp_proto.log_record(log)
    span = OtelSpan("n", b"\x02" * 16, b"\x03" * 8, b"\x04" * 8, 3, TIME, TIME + 1, 2, "boom", {"a": 1},
                    [(b"\x05" * 16, b"\x06" * 8)], {}, None)
    assert Span.FromString(otlp_wire.span(span)) == otlp_proto.span(span)
    request = otlp_wire.request({otlp_wire.resource({"service.name": "x"}): {
        otlp_wire.scope("sc"): [otlp_wire.log_record(log)] * 2}})
    expected = otlp_proto.logs_request({"service.name": "x"}, "sc", [otlp_proto.log_record(log)] * 2)
    assert otlp_proto.ExportLogsServiceRequest.FromString(request) == expected


def emit_varied(sink: object) -> None:
    provider = LoggerProvider(resource=Resource({"service.name": "svc"}))
    provider.add_log_record_processor(UserEventsLogProcessor("varied", sink=sink))  # type: ignore[arg-type]
    logger = provider.get_logger("scope")
    logger.emit(timestamp=TIME + 123_456_789, severity_number=SeverityNumber.WARN, body=True,
                attributes={"neg": -5, "flag": False, "text": "ünï"})
    logger.emit(timestamp=TIME + 1_000, severity_number=SeverityNumber.FATAL, severity_text="FATAL", body=3.5,
                event_name="  ")
    logger.emit(timestamp=TIME, severity_number=SeverityNumber.INFO, body="x", attributes={"event_id": -1})


def test_the_common_schema_plan_gives_what_to_otel_gives() -> None:
    events = produced(emit_logs) + produced(emit_varied)
    assert len(events) == 5
    encoder = EventEncoder()
    for e in events:
        signal, resource, scope, record = encoder.encode(e, 5)
        assert e.schema.cache["otlp.cs_log"] is not None  # the plan, not to_otel, made it
        mapped = to_otel(e)
        assert isinstance(mapped, OtelLog)
        mapped.observed_time_unix_nano = 5
        assert signal == "logs" and scope == otlp_wire.scope(e.provider)
        assert LogRecord.FromString(record) == otlp_proto.log_record(mapped)
        assert resource == otlp_wire.resource(mapped.resource)


def test_a_common_schema_layout_the_plan_does_not_know_goes_through_to_otel(collector: Collector) -> None:
    # The ETW exporters' nesting: ext_dt {traceId, spanId} inside Part A.
    dt = Schema((FieldInfo("traceId", Encoding.STRING_LENGTH16_CHAR8),
                 FieldInfo("spanId", Encoding.STRING_LENGTH16_CHAR8)))
    part_a = Schema((FieldInfo("time", Encoding.STRING_LENGTH16_CHAR8), FieldInfo("ext_dt", Encoding.STRUCT,
                                                                                 children=dt)))
    part_b = Schema((FieldInfo("_typeName", Encoding.STRING_LENGTH16_CHAR8),
                     FieldInfo("body", Encoding.STRING_LENGTH16_CHAR8),
                     FieldInfo("severityNumber", Encoding.VALUE16, Format.SIGNED_INT)))
    schema = Schema((FieldInfo("__csver__", Encoding.VALUE32), FieldInfo("PartA", Encoding.STRUCT, children=part_a),
                     FieldInfo("PartB", Encoding.STRUCT, children=part_b)))
    e = Event("EtwProv", "Log", schema, [0x400, ["2024-01-01T12:34:56.789Z", [f"{TRACE_ID:032x}",
                                                                             f"{SPAN_ID:016x}"]],
                                        ["Log", "etw body", 9]])
    f = forwarder(collector, "http/protobuf")
    f.offer(e)
    r = collector.wait_for(logs=1).logs[0].record
    f.close()
    assert e.schema.cache["otlp.cs_log"] is None
    assert (r.body.string_value, r.severity_number, r.time_unix_nano) == ("etw body", 9, TIME)
    assert r.trace_id == TRACE_ID.to_bytes(16, "big") and r.span_id == SPAN_ID.to_bytes(8, "big")


def test_wants_lets_through_the_event_types_the_selection_could_take(receiver: Receiver) -> None:
    f = forwarder(receiver, "http/protobuf",
                  "  select:\n    - provider: Whole\n    - {provider: Some, event: Picked}\n")
    assert f.wants("Whole", "Any", 5) and f.wants("Some", "Picked", 1)
    assert not f.wants("Some", "Other", 1) and not f.wants("Nobody", "X", 1)
    f.close()
    g = forwarder(receiver, "http/protobuf", "  select:\n    - provider: Whole\n    - condition: level <= 1\n")
    assert g.wants("Nobody", "X", 5)  # a condition without a provider could take any event
    g.close()


ALERT_RULE = """\
version: 1
rules:
  - name: sigkill-sent
    match: {provider: signal, event: signal_generate}
    condition: fields.sig == 9
    actions:
      - otlp: {endpoint: "ENDPOINT", protocol: PROTOCOL, severity: ERROR, body: "SIGKILL to pid {fields.pid}"}
"""


def rfc3339_ns(text: str) -> int:
    from datetime import datetime

    whole, frac = text.rstrip("Z").split(".")
    seconds = int(datetime.fromisoformat(whole + "+00:00").timestamp())
    return seconds * 1_000_000_000 + int(frac.ljust(9, "0"))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_dyntel_replay_forwards_what_the_config_selects(collector: Collector, tmp_path: Path, protocol: str) -> None:
    """The config's forward section through the real CLI: every selected event of the bundled recording arrives at
    the collector as one log record whose attributes are its fields, and the rule's `otlp` alerts as log records
    naming the rule and the event; the rule pack still fires as before."""
    import subprocess
    import sys

    from support import ROOT

    config = tmp_path / "dyntel.yaml"
    config.write_text(f"forward:\n  endpoint: {endpoint(collector, protocol)}\n  protocol: {protocol}\n"
                      "  select:\n    - {provider: signal, event: signal_generate}\n")
    config.chmod(0o644)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "alert.yaml").write_text(ALERT_RULE.replace("ENDPOINT", endpoint(collector, protocol))
                                      .replace("PROTOCOL", protocol))
    recording = ROOT / "dyntel" / "data" / "demo.perf.data"
    proc = subprocess.run([sys.executable, "-m", "dyntel.cli", "replay", "--config", str(config), "--rules",
                           str(ROOT / "rules"), "--rules", str(rules), str(recording), "--format", "json", "-q",
                           "--artifacts", str(tmp_path / "artifacts")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    firings = [json.loads(line) for line in proc.stdout.splitlines()]
    alerts_fired = [f for f in firings if f["rule"] == "sigkill-sent"]
    assert len(firings) - len(alerts_fired) == 3  # the rule pack's three firings, forwarding or not
    decoded = subprocess.run([sys.executable, "-m", "dyntel.cli", "decode", "--format", "jsonl", str(recording)],
                             capture_output=True, text=True, cwd=ROOT, timeout=120).stdout
    signals = [json.loads(x) for x in decoded.splitlines() if '"n":"signal:signal_generate"' in x]
    kills = [s for s in signals if s["sig"] == 9]
    assert signals and kills and len(alerts_fired) == len(kills)
    # Forwarded and alerted before replay exited: what the collector has now is all it gets.
    out = collector.wait_for(logs=len(signals) + len(kills), timeout=2)
    forwarded = [r for r in out.logs if r.scope == "signal"]
    alerts = [r for r in out.logs if r.scope == "dyntel"]
    assert len(forwarded) == len(signals) and len(alerts) == len(kills)
    assert len(out.logs) == len(forwarded) + len(alerts)

    # Each forwarded record, field by field, against the decoder's view of the same event (in recording order).
    for got, want in zip(forwarded, signals, strict=True):
        r = got.record
        assert r.event_name == "signal:signal_generate"
        assert r.time_unix_nano == rfc3339_ns(want["meta"]["time"]) and r.observed_time_unix_nano > 0
        fields = {k: v for k, v in want.items() if k not in ("n", "meta")}
        # The JSON writer shows pid_t as hex, as the reference decoder does; the forwarded attribute is the number.
        fields["pid"] = int(fields["pid"], 0)
        assert got.attributes == {**fields, "process.pid": want["meta"]["pid"], "thread.id": want["meta"]["tid"]}
        assert got.resource["service.name"] == "dyntel"
        assert r.trace_id == b"" and r.span_id == b"" and r.body.WhichOneof("value") is None

    # The alerts: one per SIGKILL, naming the rule and the event, in order.
    for got, want in zip(alerts, kills, strict=True):
        r = got.record
        assert r.event_name == "dyntel.alert"
        assert (r.severity_number, r.severity_text) == (17, "ERROR")
        assert r.body.string_value == f"SIGKILL to pid {int(want['pid'], 0)}"
        assert r.time_unix_nano == rfc3339_ns(want["meta"]["time"])
        a = got.attributes
        assert (a["dyntel.rule"], a["dyntel.event.provider"], a["dyntel.event.name"]) == (
            "sigkill-sent", "signal", "signal_generate")
        assert (a["process.pid"], a["thread.id"]) == (want["meta"]["pid"], want["meta"]["tid"])
