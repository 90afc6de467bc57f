//! dyntel's real producer (tests/peers/otel-rust): an application instrumented with the OpenTelemetry Rust SDK whose
//! logs, spans and metrics go to Linux user_events through the OpenTelemetry user_events exporters
//! (opentelemetry-user-events-logs, -trace, -metrics). It plays a fixed, scripted workload so that tests know what
//! to expect, and it writes what the SDK emitted as OTLP JSON lines (one export request per line, the layout of the
//! OpenTelemetry Collector's file exporter) through opentelemetry-proto's own SDK -> OTLP transform: the expected
//! side of every comparison comes from the SDK, not from dyntel.
//!
//! Each signal's SDK processor/exporter is a tee: the user_events processor/exporter gets the record exactly as the
//! SDK hands it over, and the same record is serialized to the JSON output in the same call.
//!
//! Run `otel-rust-peer --help` for the options.

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Array, Context, InstrumentationScope, Key, KeyValue, StringValue, Value};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::logs::tonic::group_logs_by_resource_and_scope;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogProcessor, SdkLogRecord, SdkLoggerProvider};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::process::exit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const USAGE: &str = "\
usage: otel-rust-peer [options]

Plays a scripted OpenTelemetry workload through the user_events exporters and writes the SDK's OTLP JSON of it.

  --signals LIST          comma-separated subset of logs,spans,metrics (default: all three)
  --repeat N              play the workload N times (default 1)
  --pause SECS            sleep before starting, so that a listener can attach (default 0)
  --wait-listener SECS    wait up to SECS until someone listens to the logs' Informational tracepoint
                          (<logs-provider>_L4K1); exit 3 if no one does
  --settle SECS           once the listener is there, wait SECS more before playing (a listener such as perf or
                          dyntel turns the bit on when it opens the tracepoint, a moment before it records)
  --start-on-stdin        once the exporters have registered their tracepoints, print `ready` on stderr and
                          wait for a line on stdin before playing (a listener attaches in between)
  --json PATH             where the SDK's OTLP JSON lines go ('-' = stdout, the default)
  --logs-provider NAME    EventHeader provider of the logs exporter (default otel_rust_logs)
  --trace-provider NAME   EventHeader provider of the span exporter (default otel_rust_traces)
  --service-name NAME     resource service.name (default otel-rust-peer)
  --instance-id ID        resource service.instance.id (default peer-1)
  --debug-loop SECS       after the workload, for SECS seconds: every --debug-interval ms log one Info record
                          and one Debug record, each only while the logger says that level is enabled (someone
                          listens to its tracepoint); the Debug records are what `enable` turns on
  --debug-interval MS     period of --debug-loop (default 100)
  --summary               print a JSON summary of what was emitted on stderr at exit
";

struct Options {
    logs: bool,
    spans: bool,
    metrics: bool,
    repeat: u32,
    pause: f64,
    wait_listener: Option<f64>,
    settle: f64,
    start_on_stdin: bool,
    json: String,
    logs_provider: String,
    trace_provider: String,
    service_name: String,
    instance_id: String,
    debug_loop: f64,
    debug_interval_ms: u64,
    summary: bool,
}

fn parse_args() -> Options {
    let mut o = Options {
        logs: true,
        spans: true,
        metrics: true,
        repeat: 1,
        pause: 0.0,
        wait_listener: None,
        settle: 0.0,
        start_on_stdin: false,
        json: "-".into(),
        logs_provider: "otel_rust_logs".into(),
        trace_provider: "otel_rust_traces".into(),
        service_name: "otel-rust-peer".into(),
        instance_id: "peer-1".into(),
        debug_loop: 0.0,
        debug_interval_ms: 100,
        summary: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let value = |i: &mut usize| -> String {
        *i += 1;
        match args.get(*i) {
            Some(v) => v.clone(),
            None => die(&format!("{} needs a value", args[*i - 1])),
        }
    };
    fn num<T: std::str::FromStr>(flag: &str, v: &str) -> T {
        v.parse().unwrap_or_else(|_| die(&format!("{flag}: not a number: {v:?}")))
    }
    while i < args.len() {
        let flag = args[i].clone();
        match flag.as_str() {
            "--signals" => {
                let list = value(&mut i);
                o.logs = false;
                o.spans = false;
                o.metrics = false;
                for s in list.split(',').filter(|s| !s.is_empty()) {
                    match s {
                        "logs" => o.logs = true,
                        "spans" | "traces" => o.spans = true,
                        "metrics" => o.metrics = true,
                        _ => die(&format!("--signals: unknown signal {s:?} (logs, spans, metrics)")),
                    }
                }
            }
            "--repeat" => o.repeat = num(&flag, &value(&mut i)),
            "--pause" => o.pause = num(&flag, &value(&mut i)),
            "--wait-listener" => o.wait_listener = Some(num(&flag, &value(&mut i))),
            "--settle" => o.settle = num(&flag, &value(&mut i)),
            "--start-on-stdin" => o.start_on_stdin = true,
            "--json" => o.json = value(&mut i),
            "--logs-provider" => o.logs_provider = value(&mut i),
            "--trace-provider" => o.trace_provider = value(&mut i),
            "--service-name" => o.service_name = value(&mut i),
            "--instance-id" => o.instance_id = value(&mut i),
            "--debug-loop" => o.debug_loop = num(&flag, &value(&mut i)),
            "--debug-interval" => o.debug_interval_ms = num(&flag, &value(&mut i)),
            "--summary" => o.summary = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                exit(0);
            }
            _ => die(&format!("unknown option {flag:?}")),
        }
        i += 1;
    }
    o
}

fn die(message: &str) -> ! {
    eprintln!("otel-rust-peer: {message}\n\n{USAGE}");
    exit(2);
}

/// The JSON output: one OTLP export request per line, written whole under a lock.
#[derive(Clone)]
struct JsonSink(Arc<Mutex<Box<dyn Write + Send>>>);

impl JsonSink {
    fn open(path: &str) -> JsonSink {
        let out: Box<dyn Write + Send> = if path == "-" {
            Box::new(io::stdout())
        } else {
            Box::new(File::create(path).unwrap_or_else(|e| die(&format!("--json {path}: {e}"))))
        };
        JsonSink(Arc::new(Mutex::new(out)))
    }

    fn line<T: serde::Serialize>(&self, request: &T) {
        let mut text = serde_json::to_string(request).expect("OTLP request serializes");
        text.push('\n');
        let mut out = self.0.lock().unwrap();
        out.write_all(text.as_bytes()).expect("writing the JSON output");
        out.flush().expect("flushing the JSON output");
    }
}

/// Logs: the user_events processor, and the same record as OTLP JSON. `event_enabled` is the user_events
/// processor's: a level no one listens to is not enabled, so the application does not emit it at all (the dynamic
/// telemetry the exporter is built for) and the JSON holds exactly what was offered to the exporter.
#[derive(Debug)]
struct TeeLogProcessor {
    inner: opentelemetry_user_events_logs::Processor,
    sink: JsonSinkDebug,
    resource: Mutex<ResourceAttributesWithSchema>,
    emitted: Arc<Mutex<HashMap<String, u64>>>,
}

struct JsonSinkDebug(JsonSink);
impl std::fmt::Debug for JsonSinkDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonSink")
    }
}

impl LogProcessor for TeeLogProcessor {
    fn emit(&self, record: &mut SdkLogRecord, scope: &InstrumentationScope) {
        self.inner.emit(record, scope);
        let data = [(&*record, scope)];
        let batch = LogBatch::new(&data);
        let resource = self.resource.lock().unwrap();
        let request = ExportLogsServiceRequest { resource_logs: group_logs_by_resource_and_scope(&batch, &resource) };
        self.sink.0.line(&request);
        let level = record.severity_number().map(|s| s.name()).unwrap_or("UNSET").to_string();
        *self.emitted.lock().unwrap().entry(level).or_default() += 1;
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown(&self) -> OTelSdkResult {
        self.inner.shutdown()
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown()
    }

    fn event_enabled(&self, level: Severity, target: &str, name: Option<&str>) -> bool {
        self.inner.event_enabled(level, target, name)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
        *self.resource.lock().unwrap() = ResourceAttributesWithSchema::from(resource);
    }
}

/// Spans: the user_events processor gets each ended span, and the same span goes out as OTLP JSON.
#[derive(Debug)]
struct TeeSpanProcessor {
    inner: opentelemetry_user_events_trace::Processor,
    sink: JsonSinkDebug,
    resource: Mutex<ResourceAttributesWithSchema>,
    ended: Arc<AtomicU64>,
}

impl SpanProcessor for TeeSpanProcessor {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.inner.on_end(span.clone());
        let resource = self.resource.lock().unwrap();
        let request = ExportTraceServiceRequest { resource_spans: group_spans_by_resource_and_scope(vec![span], &resource) };
        self.sink.0.line(&request);
        self.ended.fetch_add(1, Ordering::Relaxed);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
        *self.resource.lock().unwrap() = ResourceAttributesWithSchema::from(resource);
    }
}

/// Metrics: the user_events exporter (one `otlp_metrics` event per data point) and the same collection as one
/// OTLP JSON line, with the exporter's temporality (delta).
struct TeeMetricExporter {
    inner: opentelemetry_user_events_metrics::MetricsExporter,
    sink: JsonSink,
    exports: Arc<AtomicU64>,
}

impl PushMetricExporter for TeeMetricExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        let request = ExportMetricsServiceRequest::from(metrics);
        if !request.resource_metrics.iter().all(|r| r.scope_metrics.iter().all(|s| s.metrics.is_empty())) {
            self.sink.line(&request);
            self.exports.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

const ALL_SEVERITIES: [Severity; 24] = [
    Severity::Trace,
    Severity::Trace2,
    Severity::Trace3,
    Severity::Trace4,
    Severity::Debug,
    Severity::Debug2,
    Severity::Debug3,
    Severity::Debug4,
    Severity::Info,
    Severity::Info2,
    Severity::Info3,
    Severity::Info4,
    Severity::Warn,
    Severity::Warn2,
    Severity::Warn3,
    Severity::Warn4,
    Severity::Error,
    Severity::Error2,
    Severity::Error3,
    Severity::Error4,
    Severity::Fatal,
    Severity::Fatal2,
    Severity::Fatal3,
    Severity::Fatal4,
];

fn main() {
    let o = parse_args();
    let sink = JsonSink::open(&o.json);
    let resource = Resource::builder_empty()
        .with_service_name(o.service_name.clone())
        .with_attribute(KeyValue::new("service.instance.id", o.instance_id.clone()))
        .with_attribute(KeyValue::new("service.version", "1.4.2"))
        .build();
    let scope = InstrumentationScope::builder("otel-rust-peer")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();

    let emitted: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let ended = Arc::new(AtomicU64::new(0));
    let exports = Arc::new(AtomicU64::new(0));

    let logger_provider = o.logs.then(|| {
        let inner = opentelemetry_user_events_logs::Processor::builder(&o.logs_provider)
            .build()
            .unwrap_or_else(|e| die(&format!("logs processor: {e}")));
        SdkLoggerProvider::builder()
            .with_resource(resource.clone())
            .with_log_processor(TeeLogProcessor {
                inner,
                sink: JsonSinkDebug(sink.clone()),
                resource: Mutex::default(),
                emitted: emitted.clone(),
            })
            .build()
    });
    let tracer_provider = o.spans.then(|| {
        let inner = opentelemetry_user_events_trace::Processor::builder(&o.trace_provider)
            .build()
            .unwrap_or_else(|e| die(&format!("span processor: {e}")));
        SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_span_processor(TeeSpanProcessor {
                inner,
                sink: JsonSinkDebug(sink.clone()),
                resource: Mutex::default(),
                ended: ended.clone(),
            })
            .build()
    });
    let meter_provider = o.metrics.then(|| {
        let exporter = TeeMetricExporter {
            inner: opentelemetry_user_events_metrics::MetricsExporter::new(),
            sink: sink.clone(),
            exports: exports.clone(),
        };
        // Collections happen when the workload flushes, not on a timer: the recording stays deterministic.
        let reader = PeriodicReader::builder(exporter).with_interval(Duration::from_secs(3600)).build();
        SdkMeterProvider::builder().with_resource(resource.clone()).with_reader(reader).build()
    });

    if o.pause > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(o.pause));
    }
    let logger = logger_provider.as_ref().map(|p| p.logger_with_scope(scope.clone()));
    if o.start_on_stdin {
        eprintln!("ready");
        let mut line = String::new();
        let _ = io::stdin().read_line(&mut line);
    }
    if let Some(limit) = o.wait_listener {
        let Some(logger) = logger.as_ref() else { die("--wait-listener needs the logs signal") };
        let deadline = Instant::now() + Duration::from_secs_f64(limit);
        while !logger.event_enabled(Severity::Info, "otel-rust-peer", None) {
            if Instant::now() > deadline {
                eprintln!("otel-rust-peer: no listener on {}_L4K1 within {limit}s", o.logs_provider);
                exit(3);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if o.settle > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(o.settle));
        }
    }

    for round in 0..o.repeat {
        if let Some(tp) = tracer_provider.as_ref() {
            play_spans(tp, &scope, logger.as_ref(), round);
        } else if let Some(logger) = logger.as_ref() {
            play_logs(logger, None, round);
        }
        if let Some(mp) = meter_provider.as_ref() {
            play_metrics(mp, &scope, round);
        }
    }
    if o.debug_loop > 0.0 {
        let Some(logger) = logger.as_ref() else { die("--debug-loop needs the logs signal") };
        debug_loop(logger, o.debug_loop, o.debug_interval_ms);
    }

    if let Some(p) = meter_provider {
        let _ = p.shutdown();
    }
    if let Some(p) = tracer_provider {
        let _ = p.shutdown();
    }
    if let Some(p) = logger_provider {
        let _ = p.shutdown();
    }
    if o.summary {
        let logs = emitted.lock().unwrap().clone();
        let summary = serde_json::json!({
            "logs": logs.values().sum::<u64>(),
            "logs_by_severity": logs,
            "spans": ended.load(Ordering::Relaxed),
            "metric_exports": exports.load(Ordering::Relaxed),
        });
        eprintln!("{summary}");
    }
}

/// Emits a record if the logger says its level is enabled (someone listens to that level's tracepoint).
fn emit(logger: &opentelemetry_sdk::logs::SdkLogger, record: SdkLogRecord) -> bool {
    let severity = record.severity_number().unwrap_or(Severity::Info);
    if logger.event_enabled(severity, "otel-rust-peer", record.event_name()) {
        logger.emit(record);
        true
    } else {
        false
    }
}

fn attr_map() -> AnyValue {
    let mut map = HashMap::new();
    map.insert(Key::from("region"), AnyValue::from("eu-west"));
    map.insert(Key::from("zone"), AnyValue::Int(3));
    AnyValue::Map(Box::new(map))
}

/// The log part of the workload. With `parent`, the records carry that span's trace context.
fn play_logs(logger: &opentelemetry_sdk::logs::SdkLogger, parent: Option<&SpanContext>, round: u32) {
    // Every severity, each with its text, a string body and one attribute.
    for (i, severity) in ALL_SEVERITIES.iter().enumerate() {
        let mut r = logger.create_log_record();
        r.set_timestamp(SystemTime::now());
        r.set_severity_number(*severity);
        r.set_severity_text(severity.name());
        r.set_body(AnyValue::from(format!("severity {} record", severity.name())));
        r.add_attribute("index", i as i64);
        r.add_attribute("round", round as i64);
        emit(logger, r);
    }

    // Attributes of every type the OpenTelemetry API has, with an event name and an event id.
    let mut r = logger.create_log_record();
    r.set_timestamp(SystemTime::now());
    r.set_severity_number(Severity::Error);
    r.set_severity_text("ERROR");
    r.set_event_name("checkout.failed");
    r.set_body(AnyValue::from("payment declined for order 1042"));
    r.add_attribute("event_id", 7001_i64);
    r.add_attribute("order.id", "1042");
    r.add_attribute("retry", true);
    r.add_attribute("attempt", 3_i64);
    r.add_attribute("amount", 99.5_f64);
    r.add_attribute("payload", AnyValue::Bytes(Box::new(vec![0xde, 0xad, 0xbe, 0xef])));
    r.add_attribute("tags", AnyValue::ListAny(Box::new(vec![AnyValue::from("a"), AnyValue::from("b")])));
    r.add_attribute("where", attr_map());
    r.add_attribute("http.response.status_code", 503_i64);
    if let Some(sc) = parent {
        r.set_trace_context(sc.trace_id(), sc.span_id(), Some(sc.trace_flags()));
    }
    emit(logger, r);

    // Bodies of each scalar type, and a map body.
    let bodies: [(&'static str, AnyValue); 5] = [
        ("body.int", AnyValue::Int(42)),
        ("body.bool", AnyValue::Boolean(true)),
        ("body.double", AnyValue::Double(2.5)),
        ("body.map", attr_map()),
        ("body.string", AnyValue::from("plain text body")),
    ];
    for (name, body) in bodies {
        let mut r = logger.create_log_record();
        r.set_timestamp(SystemTime::now());
        r.set_severity_number(Severity::Warn);
        r.set_severity_text("WARN");
        r.set_event_name(name);
        r.set_body(body);
        if let Some(sc) = parent {
            r.set_trace_context(sc.trace_id(), sc.span_id(), Some(sc.trace_flags()));
        }
        emit(logger, r);
    }

    // The minimum: a severity number, no text, no body, no timestamp (the SDK sets the observed time), no event
    // name, and attribute values at the edges of their types.
    let mut r = logger.create_log_record();
    r.set_severity_number(Severity::Info);
    r.add_attribute("empty", "");
    r.add_attribute("unicode", "naïve café ✓");
    r.add_attribute("min", i64::MIN);
    r.add_attribute("max", i64::MAX);
    r.add_attribute("negative", -0.125_f64);
    r.add_attribute("no", false);
    emit(logger, r);
}

/// The span part of the workload, with the logs emitted inside the request span (they carry its trace context).
fn play_spans(
    provider: &SdkTracerProvider,
    scope: &InstrumentationScope,
    logger: Option<&opentelemetry_sdk::logs::SdkLogger>,
    round: u32,
) {
    let tracer = provider.tracer_with_scope(scope.clone());
    let t0 = SystemTime::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);

    let root = tracer
        .span_builder("GET /checkout")
        .with_kind(SpanKind::Server)
        .with_start_time(ms(0))
        .with_attributes(vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("url.full", "https://shop.example/checkout?id=1042"),
            KeyValue::new("http.response.status_code", 500_i64),
            KeyValue::new("app.tenant", "acme"),
            KeyValue::new("app.cached", false),
            KeyValue::new("app.items", 3_i64),
            KeyValue::new("app.ratio", 0.75_f64),
            KeyValue::new("app.round", round as i64),
            KeyValue::new("app.flags", Value::Array(Array::String(vec![StringValue::from("x"), StringValue::from("y")]))),
        ])
        .start(&tracer);
    let root_cx = Context::current_with_span(root);
    let root_sc = root_cx.span().span_context().clone();

    if let Some(logger) = logger {
        play_logs(logger, Some(&root_sc), round);
    }

    // A client child that succeeds (status Ok), with well-known database attributes and an event.
    let mut db = tracer
        .span_builder("SELECT orders")
        .with_kind(SpanKind::Client)
        .with_start_time(ms(5))
        .with_attributes(vec![
            KeyValue::new("db.system.name", "postgresql"),
            KeyValue::new("db.namespace", "shop"),
            KeyValue::new("db.query.text", "SELECT * FROM orders WHERE id = $1"),
        ])
        .start_with_context(&tracer, &root_cx);
    db.add_event_with_timestamp("rows.fetched", ms(700), vec![KeyValue::new("rows", 12_i64)]);
    db.set_status(Status::Ok);
    db.end_with_timestamp(ms(755)); // a slow query: 750 ms

    // An internal child that fails (status Error with a message).
    let mut charge = tracer
        .span_builder("charge card")
        .with_kind(SpanKind::Internal)
        .with_start_time(ms(760))
        .with_attributes(vec![KeyValue::new("payment.provider", "cardco"), KeyValue::new("amount", 99.5_f64)])
        .start_with_context(&tracer, &root_cx);
    charge.add_event_with_timestamp("retry", ms(780), vec![KeyValue::new("attempt", 2_i64)]);
    charge.set_status(Status::error("card declined"));
    charge.end_with_timestamp(ms(800));

    // A producer child linked to the request, and a consumer in a new trace linked back to the producer.
    let mut produce = tracer
        .span_builder("publish order.failed")
        .with_kind(SpanKind::Producer)
        .with_start_time(ms(801))
        .with_attributes(vec![
            KeyValue::new("messaging.system", "kafka"),
            KeyValue::new("messaging.destination.name", "orders"),
        ])
        .start_with_context(&tracer, &root_cx);
    let produce_sc = produce.span_context().clone();
    produce.end_with_timestamp(ms(805));

    let mut consume = tracer
        .span_builder("process order.failed")
        .with_kind(SpanKind::Consumer)
        .with_start_time(ms(810))
        .with_links(vec![
            Link::with_context(produce_sc),
            Link::new(root_sc.clone(), vec![KeyValue::new("link.reason", "caused-by")], 0),
        ])
        .start_with_context(&tracer, &Context::new());
    consume.set_status(Status::Ok);
    consume.end_with_timestamp(ms(830));

    // The request ends with an error status (HTTP 500 is set, so the exporter writes no statusMessage).
    root_cx.span().set_status(Status::error("upstream failed"));
    root_cx.span().end_with_timestamp(ms(840));
}

/// The metric part: every synchronous instrument kind, with attributes; one collection (export) per round.
fn play_metrics(provider: &SdkMeterProvider, scope: &InstrumentationScope, round: u32) {
    let meter = provider.meter_with_scope(scope.clone());
    let orders = meter.u64_counter("orders.placed").with_description("orders accepted").with_unit("{order}").build();
    let sent = meter.f64_counter("bytes.sent").with_unit("By").build();
    let queue = meter.i64_up_down_counter("queue.depth").with_description("jobs waiting").build();
    let latency = meter
        .f64_histogram("request.duration")
        .with_unit("ms")
        .with_boundaries(vec![10.0, 50.0, 100.0, 500.0, 1000.0])
        .build();
    let temperature = meter.f64_gauge("cpu.temperature").with_unit("Cel").build();
    let free = meter.i64_gauge("pool.free").build();

    let eu = [KeyValue::new("region", "eu"), KeyValue::new("tier", "gold")];
    let us = [KeyValue::new("region", "us"), KeyValue::new("tier", "free")];
    let r = round as u64;
    orders.add(3 + r, &eu);
    orders.add(2, &eu);
    orders.add(7, &us);
    sent.add(1536.5, &[KeyValue::new("peer", "db")]);
    queue.add(10, &[]);
    queue.add(-4, &[]);
    for v in [5.0, 42.0, 42.0, 120.0, 750.0, 2500.0] {
        latency.record(v, &[KeyValue::new("http.route", "/checkout"), KeyValue::new("ok", v < 1000.0)]);
    }
    temperature.record(71.5 + round as f64, &[KeyValue::new("core", 0_i64)]);
    free.record(-2, &[KeyValue::new("pool", "db")]);
    let _ = provider.force_flush();
}

/// The dynamic-telemetry part: Info and Debug records at a steady pace, each written only while its level is
/// enabled. Prints one line per second of counts on stderr.
fn debug_loop(logger: &opentelemetry_sdk::logs::SdkLogger, seconds: f64, interval_ms: u64) {
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tick: i64 = 0;
    while Instant::now() < end {
        for (severity, text) in [(Severity::Info, "INFO"), (Severity::Debug, "DEBUG")] {
            let mut r = logger.create_log_record();
            r.set_timestamp(SystemTime::now());
            r.set_severity_number(severity);
            r.set_severity_text(text);
            r.set_event_name("tick");
            r.set_body(AnyValue::from(format!("{text} tick {tick}")));
            r.add_attribute("tick", tick);
            emit(logger, r);
        }
        tick += 1;
        std::thread::sleep(Duration::from_millis(interval_ms));
    }
}
