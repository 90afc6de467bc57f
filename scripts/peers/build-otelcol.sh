#!/usr/bin/env bash
# Build the OpenTelemetry Collector the tests deliver OTLP to (tests/peers/otelcol/builder-config.yaml) with the
# official builder (go.opentelemetry.io/collector/cmd/builder at the version in tests/peers/otelcol/builder.version,
# installed through the Go module proxy) and print the directory holding the binary `otelcol-dyntel`, last on stdout.
#
# Cache: ${DYNTEL_PEERS_CACHE:-${XDG_CACHE_HOME:-~/.cache}/dyntel/peers}/otelcol-<key>/bin, where <key> hashes the
# committed files under tests/peers/otelcol (the manifest pins every component's version, builder.version the
# builder's) and the go version: a changed manifest or a new go builds anew, anything else is reused. The builder
# itself is kept in otelcol-builder-<version>/, the modules in go's own module cache.
#
# Usage: build-otelcol.sh            build if needed (reaches the Go module proxy the first time)
#        build-otelcol.sh --cached   never build: print the cached directory or exit 3
set -euo pipefail

cached_only=0
if [ "${1:-}" = "--cached" ]; then cached_only=1; shift; fi
[ $# -eq 0 ] || { echo "usage: $0 [--cached]" >&2; exit 2; }
root="$(cd "$(dirname "$0")/../.." && pwd)"
src="$root/tests/peers/otelcol"
manifest="$src/builder-config.yaml"
[ -f "$manifest" ] || { echo "build-otelcol: no $manifest" >&2; exit 2; }
builder_version="$(tr -d '[:space:]' <"$src/builder.version")"
command -v go >/dev/null || { echo "build-otelcol: go not found (install Go 1.26 or newer)" >&2; exit 1; }

cache_root="${DYNTEL_PEERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dyntel/peers}"
key="$( (cd "$src" && find . -type f -print | LC_ALL=C sort | xargs sha256sum; go version) | sha256sum | cut -c1-16)"
out="$cache_root/otelcol-$key"
if [ -f "$out/built" ]; then echo "$out/bin"; exit 0; fi
if [ "$cached_only" = 1 ]; then echo "build-otelcol: the collector is not built for key $key" >&2; exit 3; fi

# Two cores shared with other work: at most two compile jobs, at low priority. GOTOOLCHAIN=local: the installed go
# builds it or the build fails saying so, rather than go fetching another toolchain behind our back.
export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:+$GOFLAGS }-p=2"
start=$(date +%s)
tools="$cache_root/otelcol-builder-$builder_version"
if [ ! -x "$tools/builder" ]; then
  echo "build-otelcol: installing the collector builder $builder_version" >&2
  mkdir -p "$tools"
  GOBIN="$tools" nice -n 10 go install "go.opentelemetry.io/collector/cmd/builder@$builder_version" >&2
fi

echo "build-otelcol: building the collector (key $key)" >&2
work="$cache_root/otelcol-work"
rm -rf "$work"
mkdir -p "$work"
cp "$manifest" "$work/builder-config.yaml"
# The builder writes the distribution's sources, resolves its modules (`go mod tidy`) and runs `go build`, all
# inside output_path (./build, relative to here).
(cd "$work" && nice -n 10 "$tools/builder" --config builder-config.yaml >&2)
[ -x "$work/build/otelcol-dyntel" ] || { echo "build-otelcol: the builder made no $work/build/otelcol-dyntel" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out/bin"
cp -p "$work/build/otelcol-dyntel" "$out/bin/"
# What it was built from, for the record (docs/otel.md names the versions).
cp -p "$work/build/go.mod" "$out/go.mod"
cp -p "$manifest" "$out/builder-config.yaml"
rm -rf "$work"
echo "built $(date -u +%FT%TZ) in $(( $(date +%s) - start )) s with $(go version)" >"$out/built"
echo "$out/bin"
