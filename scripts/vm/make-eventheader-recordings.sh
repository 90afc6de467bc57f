#!/usr/bin/env bash
# Remake tests/data/eh-writer.perf.data (file mode, -k monotonic) and eh-writer-pipe.perf.data (pipe mode): the
# EventHeader writer (tests/peers/eventheader-writer) under perf record in the user_events VM. Builds the writer
# and the Rust oracle on the host first; the VM test (tests/vm/test_eventheader_writer.py) records, checks dyntel
# against the oracle, and leaves the recordings in the results export, from where they are copied here.
# Usage: scripts/vm/make-eventheader-recordings.sh [run-tests.py options, e.g. --kernel BZIMAGE]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
"$root/scripts/peers/build-rust.sh" eventheader-writer >/dev/null
"$root/scripts/peers/build-rust.sh" tracepoint-rs >/dev/null
results="$(mktemp -d /var/tmp/dyntel-eh-XXXXXX)"
mkdir "$results/eh-recordings"
"$root/scripts/vm/run-tests.py" --results "$results" "$@" -- -m user_events -s \
  "$root/tests/vm/test_eventheader_writer.py" || { cat "$results/output.txt" >&2; exit 1; }
cat "$results/output.txt"
cp "$results"/eh-recordings/eh-writer*.perf.data "$root/tests/data/"
chmod 644 "$root"/tests/data/eh-writer*.perf.data
rm -rf "$results"
ls -l "$root"/tests/data/eh-writer*.perf.data
