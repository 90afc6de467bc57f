#!/usr/bin/env bash
# Remake the host recordings of tests/data with this machine's perf (run as root; needs tracefs):
#   escape.perf.data        file mode: sched samples whose comm fields hold control characters (workload.py)
#   escape-pipe.perf.data   the same workload, pipe mode (perf record -o -): perf 6.1 writes its tracing data as
#                           a HEADER_TRACING_DATA record with a 16-byte header, which perf-decode cannot read
#   zstd.perf.data          file mode, zstd-compressed (perf record -z): PERF_RECORD_COMPRESSED records
#   zstd-pipe.perf.data     pipe mode, zstd-compressed
# Two events per recording, so perf adds PERF_SAMPLE_IDENTIFIER (the Rust oracle needs sample ids). Small on
# purpose (one process, not -a). The tests compare dyntel with `perf script` and the Rust oracle on these files.
set -euo pipefail
cd "$(dirname "$0")"
events=(-e sched:sched_switch -e sched:sched_process_exit -e sched:sched_process_fork)
perf record -q "${events[@]}" -o escape.perf.data -- python3 workload.py
perf record -q "${events[@]}" -o - -- python3 workload.py >escape-pipe.perf.data
perf record -q -z "${events[@]}" -o zstd.perf.data -- python3 workload.py
perf record -q -z "${events[@]}" -o - -- python3 workload.py >zstd-pipe.perf.data
chmod 644 ./*.perf.data
ls -l ./*.perf.data
