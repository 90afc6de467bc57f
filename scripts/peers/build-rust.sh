#!/usr/bin/env bash
# Build a Rust peer program under tests/peers/NAME (a real component the tests put on the other side of an
# interface: the OpenTelemetry Rust exporters as a producer, LinuxTracepoints' crates as a decoding oracle) and
# print the directory holding its release binaries, last on stdout.
#
# Cache: ${DYNTEL_PEERS_CACHE:-${XDG_CACHE_HOME:-~/.cache}/dyntel/peers}/NAME-<key>/bin, where <key> hashes the
# peer's Cargo.toml, Cargo.lock, its sources and the rustc version: a changed lock file or source builds anew,
# anything else is reused. The cargo target directory is kept per peer so that a rebuild is incremental.
#
# Usage: build-rust.sh NAME            build if needed (reaches the crate registry the first time)
#        build-rust.sh --cached NAME   never build: print the cached directory or exit 3
set -euo pipefail

cached_only=0
if [ "${1:-}" = "--cached" ]; then cached_only=1; shift; fi
[ $# -eq 1 ] || { echo "usage: $0 [--cached] NAME" >&2; exit 2; }
name="$1"
root="$(cd "$(dirname "$0")/../.." && pwd)"
src="$root/tests/peers/$name"
[ -f "$src/Cargo.toml" ] || { echo "build-rust: no $src/Cargo.toml" >&2; exit 2; }
[ -f "$src/Cargo.lock" ] || { echo "build-rust: $src/Cargo.lock is missing: commit the lock file" >&2; exit 2; }
command -v cargo >/dev/null || { echo "build-rust: cargo not found (rustup's ~/.cargo/bin on PATH?)" >&2; exit 1; }

cache_root="${DYNTEL_PEERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dyntel/peers}"
key="$( (cd "$src" && find . -path ./target -prune -o -type f -print | LC_ALL=C sort | xargs sha256sum; rustc --version) \
  | sha256sum | cut -c1-16)"
out="$cache_root/$name-$key"
if [ -f "$out/built" ]; then echo "$out/bin"; exit 0; fi
if [ "$cached_only" = 1 ]; then echo "build-rust: $name is not built for key $key" >&2; exit 3; fi

echo "build-rust: building $name (key $key)" >&2
target="$cache_root/target-$name"
mkdir -p "$target"
# --locked: the committed lock file is the version pin; a build that would change it fails instead.
nice -n 10 cargo build --release --locked --manifest-path "$src/Cargo.toml" --target-dir "$target" >&2
mkdir -p "$out/bin"
# Every executable the package builds (bins and examples) goes into the cache entry.
find "$target/release" "$target/release/examples" -maxdepth 1 -type f -perm -u+x ! -name '*.so' ! -name '*.d' \
  ! -name '*-[0-9a-f]*[0-9a-f]' -exec cp -p {} "$out/bin/" \; 2>/dev/null || true
date -u +%FT%TZ >"$out/built"
echo "$out/bin"
