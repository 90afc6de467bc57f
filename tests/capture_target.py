"""A process to capture: known threads in known functions, a known value at a known address, a heartbeat.

Run as a script (`python capture_target.py [--alloc-mb N]`); it prints one JSON line, then answers commands on
stdin, one line each:

    mark    start a new heartbeat measurement
    report  print {"beats": N, "max_gap_ms": X, "p99_gap_ms": Y, "gaps_ms": [...]} for the gaps since `mark`
    quit    exit

The first line holds: pid, magic_addr (address of 8 bytes holding magic_value, little-endian), magic_value,
threads: [{"tid", "name", "function"}] for every thread the target started (the main thread included), the tid of
the thread blocked in libc `read` (reader_tid), and the native libraries it loaded on purpose (libraries).

Threads (no thread spins, so the heartbeat's gaps measure what a capture does to the process, not the GIL):
- MainThread in `main_loop` reading stdin;
- "sleeper" in `sleeper_loop`, in time.sleep (libc clock_nanosleep);
- "reader" in `reader_blocked`, in os.read on a pipe nobody writes (libc read);
- "waiter" in `waiter_parked`, in threading.Event.wait (a futex);
- "heartbeat" in `heartbeat_loop`: sleeps 1 ms and records the time between wake-ups.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import threading
import time
import zlib

MAGIC = 0x5D1E_7E1_C0FFEE_42
HEARTBEAT_S = 0.001

_gaps: list[float] = []
_gaps_lock = threading.Lock()
_started = threading.Event()
_tids: dict[str, int] = {}


def _note_tid(name: str) -> None:
    _tids[name] = threading.get_native_id()


def sleeper_loop() -> None:
    _note_tid("sleeper")
    while True:
        time.sleep(0.25)


def reader_blocked(fd: int) -> None:
    _note_tid("reader")
    os.read(fd, 1)  # nobody writes: the thread stays in libc read


def waiter_parked(event: threading.Event) -> None:
    _note_tid("waiter")
    event.wait()


def heartbeat_loop() -> None:
    _note_tid("heartbeat")
    last = time.perf_counter()
    while True:
        time.sleep(HEARTBEAT_S)
        now = time.perf_counter()
        with _gaps_lock:
            _gaps.append(now - last)
        last = now


def _report() -> dict[str, object]:
    with _gaps_lock:
        gaps = sorted(_gaps)
    ms = [g * 1000.0 for g in gaps]
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))] if ms else 0.0
    return {"beats": len(ms), "max_gap_ms": ms[-1] if ms else 0.0, "p99_gap_ms": p99, "gaps_ms": ms[-20:]}


def main_loop(info: dict[str, object]) -> None:
    _note_tid("MainThread")
    print(json.dumps(info), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "mark":
            with _gaps_lock:
                _gaps.clear()
            print(json.dumps({"marked": True}), flush=True)
        elif command == "report":
            print(json.dumps(_report()), flush=True)
        elif command == "quit":
            break


def main() -> None:
    alloc_mb = int(sys.argv[sys.argv.index("--alloc-mb") + 1]) if "--alloc-mb" in sys.argv else 0
    # Resident, written memory of a chosen size (a dump of "a 100 MB process" must copy it).
    ballast = bytearray(alloc_mb << 20)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    magic = ctypes.c_uint64(MAGIC)
    libz = ctypes.CDLL(zlib.__file__) if zlib.__file__ else None  # noqa: F841 - keep the module's library mapped
    libm = ctypes.CDLL("libm.so.6")
    read_fd, _write_fd = os.pipe()
    event = threading.Event()
    threads = [
        threading.Thread(target=sleeper_loop, name="sleeper", daemon=True),
        threading.Thread(target=reader_blocked, args=(read_fd,), name="reader", daemon=True),
        threading.Thread(target=waiter_parked, args=(event,), name="waiter", daemon=True),
        threading.Thread(target=heartbeat_loop, name="heartbeat", daemon=True),
    ]
    for t in threads:
        t.start()
    functions = {"sleeper": "sleeper_loop", "reader": "reader_blocked", "waiter": "waiter_parked",
                 "heartbeat": "heartbeat_loop", "MainThread": "main_loop"}
    _note_tid("MainThread")
    deadline = time.monotonic() + 5
    while len(_tids) < len(functions) and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)  # let the reader reach read(2)
    info = {
        "pid": os.getpid(),
        "magic_addr": ctypes.addressof(magic),
        "magic_value": MAGIC,
        "threads": [{"tid": _tids[name], "name": name, "function": functions[name]} for name in functions],
        "reader_tid": _tids["reader"],
        "libraries": [libm._name],
        "alloc_mb": alloc_mb,
    }
    main_loop(info)
    del ballast, libm


if __name__ == "__main__":
    main()
