"""The workload the recordings of tests/data are made of (see make-recordings.sh): a process that renames itself
with every JSON-escaped control character in its name, sleeps and forks, so that sched_switch/sched_wakeup samples
carry those names in their char[16] comm fields (perf-decode writes them as \\t \\n \\r \\b \\f and \\u00XX)."""

import ctypes
import os
import time

libc = ctypes.CDLL(None)
names = [b"esc\t\n\r\x08\x0c", b"ctl\x01\x1f\"\\\x7f", b"latin1\xe9\xff", b"plain-workload"]
for name in names:
    libc.prctl(15, name, 0, 0, 0)  # PR_SET_NAME: what the comm fields show
    for _ in range(5):
        time.sleep(0.002)
    pid = os.fork()
    if pid == 0:
        time.sleep(0.001)
        os._exit(0)
    os.waitpid(pid, 0)
