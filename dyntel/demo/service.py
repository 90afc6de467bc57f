"""The demo's stand-in for a production service: a Python process with named worker threads, one waiting on a
socket read (a libc call), one in a handler that sleeps, one idle. `dyntel demo` dumps it and takes its stacks.

Run as `python -m dyntel.demo.service`; it prints its pid, then lives until stdin closes.
"""

from __future__ import annotations

import os
import sys
import threading
import time


def handle_request() -> None:
    while True:
        time.sleep(0.2)  # "work"


def wait_for_upstream(fd: int) -> None:
    os.read(fd, 1)  # blocked in libc read, as a worker waiting on a slow upstream would be


def idle_worker(stop: threading.Event) -> None:
    stop.wait()


def main() -> None:
    read_fd, _write_fd = os.pipe()
    stop = threading.Event()
    threading.Thread(target=handle_request, name="request-handler", daemon=True).start()
    threading.Thread(target=wait_for_upstream, args=(read_fd,), name="upstream-client", daemon=True).start()
    threading.Thread(target=idle_worker, args=(stop,), name="idle-worker", daemon=True).start()
    time.sleep(0.05)
    print(os.getpid(), flush=True)
    sys.stdin.read()  # until the demo closes our stdin
    stop.set()


if __name__ == "__main__":
    main()
