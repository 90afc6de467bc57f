#!/usr/bin/env bash
# Remakes the recordings of the real OpenTelemetry Rust exporters (tests/peers/otel-rust) that the host tests and
# `dyntel demo` replay: in the user_events VM (docs/vm.md), the peer plays its scripted workload (logs at every
# severity, spans, metrics) while `perf record -k CLOCK_MONOTONIC -a` records its seven tracepoints
# (otel_rust_logs_L1K1..L5K1, otel_rust_traces_L4K1, otlp_metrics); the peer writes the SDK's own OTLP JSON lines
# of the same run beside it (tests/vm/otelrust.py does the recording).
#
# Writes tests/data/otel-rust/{otel-rust.perf.data,otel-rust.sdk.jsonl} and dyntel/data/otel-rust.perf.data.
# Needs: the VM kernel (scripts/vm/build-kernel.sh), qemu, the checkout's .venv, and the network once for the peer.
# Re-run it only to change the workload or the exporter versions; the files are committed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/peers/build-rust.sh" otel-rust >/dev/null
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$root/scripts/vm/run-tests.py" --results "$work" -- -q -m user_events "$root/tests/vm/make_otel_rust_recording.py"
mkdir -p "$root/tests/data/otel-rust"
cp "$work/otel-rust/otel-rust.perf.data" "$work/otel-rust/otel-rust.sdk.jsonl" "$root/tests/data/otel-rust/"
cp "$work/otel-rust/otel-rust.perf.data" "$root/dyntel/data/otel-rust.perf.data"
cat "$work/otel-rust/summary.json"
ls -l "$root/tests/data/otel-rust/" "$root/dyntel/data/otel-rust.perf.data"
