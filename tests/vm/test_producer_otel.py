"""An application on the OpenTelemetry SDK with dyntel's user_events log and span processors, watched for real:
`dyntel run` fires a rule on a log attribute, and `perf record` of the same tracepoint, decoded by dyntel and mapped
by to_otel, gives back exactly what the application logged and traced.

dyntel pre-registers the tracepoint (`--register`), so the application finds its bit already on when it starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from vmhelpers import DyntelRun, PerfRecord, tracepoint_exists, wait_for

from dyntel.otel import OtelLog, OtelSpan, to_otel
from dyntel.sources.perf.data import PerfDataSource

APP = textwrap.dedent("""\
    import json, sys, time
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from dyntel.producer.otel import UserEventsLogProcessor, UserEventsSpanProcessor

    resource = Resource({"service.name": "vm-shop", "service.instance.id": "vm-1"})
    logs = LoggerProvider(resource=resource)
    processor = UserEventsLogProcessor(sys.argv[1])
    logs.add_log_record_processor(processor)
    traces = TracerProvider(resource=resource)
    traces.add_span_processor(UserEventsSpanProcessor(sys.argv[1]))
    deadline = time.monotonic() + 30
    while not processor.writer.sets[4].enabled:
        if time.monotonic() > deadline:
            sys.exit("the tracepoint never became enabled")
        time.sleep(0.05)
    logger = logs.get_logger("vm-app")
    logged = []
    with traces.get_tracer("vm-app").start_as_current_span("checkout", attributes={"cart": 3}) as span:
        ctx = span.get_span_context()
        for user in ("bob", "alice"):
            attributes = {"user": user, "attempt": 2, "mfa": True, "score": 0.75}
            logger.emit(severity_number=SeverityNumber.INFO, severity_text="INFO", body=f"login {user}",
                        attributes=attributes)
            logged.append({"body": f"login {user}", "severity": 9, "attributes": attributes,
                           "trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"})
    print(json.dumps({"logs": logged, "span": {"trace_id": f"{ctx.trace_id:032x}",
                                               "span_id": f"{ctx.span_id:016x}"},
                      "written": processor.writer.written}), flush=True)
    logs.shutdown()
    traces.shutdown()
""")

RULES = """\
version: 1
rules:
  - name: alice-logged-in
    match: {provider: PROVIDER, event: Log}
    condition: fields.PartC.user == "alice" and fields.PartB.severityNumber == 9
    actions:
      - log: {message: "alice {fields.PartB.body}"}
  - name: span-ended
    match: {provider: PROVIDER, event: Span}
    actions:
      - log: {message: "span {fields.PartB.name}"}
"""




def test_an_otel_sdk_app_is_watched_by_dyntel_run_and_decodes_to_what_it_logged(
        perf_records: Callable[[str, Path], PerfRecord], tmp_path: Path) -> None:
    provider = f"DyntelOtel{os.getpid()}"
    name = f"{provider}_L4K1"  # INFO logs and spans share Level::Informational, keyword 1
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.replace("PROVIDER", provider))
    app = tmp_path / "app.py"
    app.write_text(APP)
    run = DyntelRun(rules, "--dry-run", "--register", name)
    problem = ""
    perf = None
    try:
        wait_for("dyntel registered the name", lambda: tracepoint_exists(name))
        time.sleep(1.0)  # dyntel's perf events are enabled a moment after it registers
        perf = perf_records(name, tmp_path / "perf.data")
        done = subprocess.run([sys.executable, str(app), provider], capture_output=True, text=True, timeout=120,
                              check=False)
        assert done.returncode == 0, done.stderr
        told = json.loads(done.stdout)
        assert told["written"] == 2, told
        wait_for("the alice rule fired", lambda: len(run.of("alice-logged-in")) >= 1)
        wait_for("the span rule fired", lambda: len(run.of("span-ended")) >= 1)
    except AssertionError as e:
        problem = f"{e}: {run.firings}"
    finally:
        status, err = run.stop()
        if perf is not None:
            perf.stop()
    assert not problem and status == 0, f"{problem}\n{err}"

    [firing] = run.of("alice-logged-in")
    assert firing["event"]["PartC"]["user"] == "alice" and firing["event"]["PartB"]["body"] == "login alice"
    assert len(run.of("span-ended")) == 1

    with open(tmp_path / "perf.data", "rb") as f:
        records = [to_otel(e) for e in PerfDataSource("perf.data", f).events() if e.provider == provider]
    logs = [r for r in records if isinstance(r, OtelLog)]
    spans = [r for r in records if isinstance(r, OtelSpan)]
    assert len(logs) == 2 and len(spans) == 1, records
    resource = {"service.name": "vm-shop", "service.instance.id": "vm-1"}
    for record, want in zip(logs, told["logs"], strict=True):
        assert (record.body, record.severity_number, record.severity_text, record.attributes) == (
            want["body"], want["severity"], "INFO", want["attributes"])
        assert (record.trace_id, record.span_id) == (bytes.fromhex(want["trace_id"]), bytes.fromhex(want["span_id"]))
        assert record.resource == resource
    [span] = spans
    assert (span.name, span.trace_id, span.span_id, span.attributes, span.resource) == (
        "checkout", bytes.fromhex(told["span"]["trace_id"]), bytes.fromhex(told["span"]["span_id"]), {"cart": 3},
        resource)
