#!/usr/bin/env bash
# Records dyntel/data/demo.perf.data: the bundled default recording that the README's quick start decodes
# and the bundled rule pack is tested against. Needs root (perf_event_open on tracepoints, tracefs).
# A small shell "service" starts workers that open files that are missing (openat fails with ENOENT),
# and one worker that is killed with SIGKILL, so rules about errors, bursts and process deaths have
# something to find. Re-run it only to change the demo; the file is committed.
set -euo pipefail
out=${1:-"$(dirname "$0")/../dyntel/data/demo.perf.data"}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/service.sh" <<'SVC'
#!/bin/sh
i=0
while [ $i -lt 40 ]; do
  cat /etc/hostname > /dev/null
  cat "/nonexistent/config-$i" 2>/dev/null || true
  i=$((i + 1))
done
sleep 30 &
victim=$!
sleep 0.2
kill -9 "$victim"
wait 2>/dev/null || true
SVC
chmod +x "$work/service.sh"
rm -f "$out"
perf record -q -k CLOCK_MONOTONIC -o "$out" \
  -e sched:sched_process_exec -e sched:sched_process_exit \
  -e syscalls:sys_enter_openat -e syscalls:sys_exit_openat \
  -e signal:signal_generate \
  -- "$work/service.sh"
chmod 0644 "$out"
