"""Live EventHeader events: the highest rate dyntel's live source takes with 0 lost, beside `perf record` on the
same tracepoint in the same machine. Needs a kernel with user_events (the VM of docs/vm.md) and root.

A producer process registers an EventHeader user_events tracepoint and writes, at a paced rate in 1 ms slices, a
log-like event (name, a sequence number, a severity, a message string, two attribute strings) with one writev each:
benchmarks/live_eventheader_producer.c, compiled with gcc when the benchmark starts (a Python producer,
--python-producer, makes only about 2k events/s in the emulated VM and would be what limits the rate).
Then, for each rate of --steps in turn, until one loses events or the producer cannot make its rate:

  dyntel   PerfLiveSource on user_events:NAME, every event decoded (EventHeader header, metadata, payload: the
           native path where it is built) and consumed on the main thread as an engine would
  perf     `perf record -e user_events:NAME` to a file (enabled through its control FIFO once it is up), its
           samples and PERF_RECORD_LOST counted afterwards by `perf report --stats`

and prints, per side, the highest rate held with 0 lost, and their ratio. In the VM the machine is emulated (TCG):
absolute rates mean little there, the ratio is the figure.

    python -m benchmarks.live_eventheader [--steps 500,1000,...] [--step-duration 5] [--only dyntel|perf]

In the VM (results and output in the directory printed):

    scripts/vm/run-tests.py --timeout 1500 -- -s benchmarks/live_eventheader.py::test_in_vm
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

NAME = "DyntelBench_L4K1"

PRODUCER = r"""
import struct, sys, time
from dyntel.sources.perf.user_events import UserEventsData

name, rate, duration = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
meta = (b"LogRecord\0" + b"seq\0\x05" + b"severity\0\x82\x02" + b"body\0\x07" + b"http.method\0\x07"
        + b"http.route\0\x07")
head = struct.pack("<BBHHBB", 0x07, 0, 1, 0, 0, 4) + struct.pack("<HH", len(meta), 1) + meta
tail = b"GET\0/api/v1/orders/{id}\0"
data = UserEventsData()
tp = data.register_eventheader(name)
print("ready", flush=True)
sys.stdin.readline()  # the listener is open
t0 = time.monotonic()
while not tp.is_enabled and time.monotonic() - t0 < 30:
    time.sleep(0.01)
pack = struct.Struct("<Qb").pack
write = tp.write
sent = written = 0
t0 = time.monotonic()
while True:
    now = time.monotonic() - t0
    if now >= duration:
        break
    target = int(now * rate)
    for _ in range(target - sent):
        written += write(head, pack(sent, 9), b"request %d served in 12 ms\0" % sent, tail)
        sent += 1
    time.sleep(0.001)
print(sent, written, time.monotonic() - t0, flush=True)
sys.stdin.readline()
data.close()
"""


@dataclass
class Step:
    side: str
    rate: float
    sent: int = 0
    written: int = 0
    seconds: float = 0.0
    seen: int = 0
    lost: int = 0

    @property
    def made(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    @property
    def clean(self) -> bool:
        # perf record was once seen to list one sample more than the producer wrote: more is not a loss.
        return self.lost == 0 and self.seen >= self.written == self.sent

    def line(self) -> str:
        return (f"{self.side:>6} {self.rate / 1e3:7.1f}k/s: made {self.sent} ({self.made / 1e3:.1f}k/s), written "
                f"{self.written}, seen {self.seen}, lost {self.lost}")


PRODUCER_C = Path(__file__).resolve().parent / "live_eventheader_producer.c"
_producer_binary: list[str] = []


def build_producer(tmp: Path) -> str:
    binary = tmp / "live_eventheader_producer"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(PRODUCER_C)], check=True)
    return str(binary)


def _producer(rate: float, duration: float) -> subprocess.Popen[str]:
    if _producer_binary:
        from dyntel.sources.perf.user_events import eventheader_command

        argv = [_producer_binary[0], NAME, eventheader_command(NAME), str(rate), str(duration)]
    else:
        argv = [sys.executable, "-c", PRODUCER, NAME, str(rate), str(duration)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("the producer did not register its tracepoint")
    return proc


def _finish(proc: subprocess.Popen[str], step: Step) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    sent, written, seconds = proc.stdout.readline().split()
    step.sent, step.written, step.seconds = int(sent), int(written), float(seconds)


def dyntel_step(rate: float, duration: float) -> Step:
    from dyntel.sources.perf.live import PerfLiveSource

    step = Step("dyntel", rate)
    proc = _producer(rate, duration)
    src = PerfLiveSource()
    try:
        src.add(f"user_events:{NAME}")

        def wait() -> None:
            _finish(proc, step)
            time.sleep(0.5)  # the last wake-up's worth
            src.stop()

        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        seen = 0
        for event in src.events():
            if event.name == "LogRecord":
                seen += 1
        waiter.join()
        step.seen = seen
        # PERF_RECORD_LOST records and the per-event PERF_FORMAT_LOST counts tell of the same losses.
        step.lost = max(src.stats.lost, sum(src.lost().values()))
    finally:
        src.close()
        _end(proc)
    return step


def perf_step(rate: float, duration: float, tmp: Path) -> Step:
    """perf record started with its events disabled (-D -1), enabled through its control FIFO once it is up, and
    the producer let go only after perf's ack: a perf that is still starting (seconds in the emulated VM) would
    otherwise drop the first events unrecorded and uncounted, since the enable bit turns on when perf opens the
    event, before it enables it."""
    step = Step("perf", rate)
    out = tmp / "perf.data"
    ctl, ack = tmp / "ctl", tmp / "ack"
    for fifo in (ctl, ack):
        fifo.unlink(missing_ok=True)
        os.mkfifo(fifo)
    proc = _producer(rate, duration)
    ack_fd = os.open(ack, os.O_RDONLY | os.O_NONBLOCK)
    rec = subprocess.Popen(["perf", "record", "-q", "-D", "-1", "--control", f"fifo:{ctl},{ack}", "-e",
                            f"user_events:{NAME}", "-o", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        ctl_fd = os.open(ctl, os.O_WRONLY)  # returns once perf has opened its end
        os.write(ctl_fd, b"enable\n")
        deadline = time.monotonic() + 120
        answer = b""
        while b"ack" not in answer and time.monotonic() < deadline:
            select.select([ack_fd], [], [], 1.0)
            got = b""
            with contextlib.suppress(BlockingIOError):
                got = os.read(ack_fd, 64)
            answer += got
            if not got:
                time.sleep(0.05)  # no writer yet: the FIFO reads as empty at once
        if b"ack" not in answer:
            raise RuntimeError("perf record did not acknowledge 'enable'")
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        _finish(proc, step)
        time.sleep(0.5)
        rec.send_signal(signal.SIGINT)
        _, err = rec.communicate(timeout=120)
        os.close(ctl_fd)
        stats = subprocess.run(["perf", "report", "-i", str(out), "--stats"], capture_output=True, text=True,
                               check=False).stdout
        step.seen = _stat(stats, "SAMPLE events")
        step.lost = _stat(stats, "LOST events") + _stat(stats, "LOST_SAMPLES events")
        lost_chunks = re.search(r"lost (\d+) chunks", err)
        if lost_chunks:
            step.lost += int(lost_chunks.group(1))
        if step.seen < step.written:
            print(f"  perf record said: {err.strip()[-500:]!r}\n  perf report --stats said: {stats.strip()[-800:]!r}",
                  flush=True)
    finally:
        os.close(ack_fd)
        if rec.poll() is None:
            rec.kill()
        _end(proc)
        out.unlink(missing_ok=True)
    return step


def _stat(text: str, label: str) -> int:
    m = re.search(rf"^\s*{label}:\s+(\d+)", text, re.MULTILINE)
    return int(m.group(1)) if m else 0


def _end(proc: subprocess.Popen[str]) -> None:
    try:
        if proc.stdin is not None:
            proc.stdin.write("\n")
            proc.stdin.close()
        proc.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()


def highest(side: str, steps: list[float], duration: float) -> float:
    held = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for rate in steps:
            step = dyntel_step(rate, duration) if side == "dyntel" else perf_step(rate, duration, Path(tmp))
            print(step.line(), flush=True)
            if not step.clean:
                break
            if step.made < 0.95 * rate:
                print(f"  the producer made only {step.made / 1e3:.1f}k/s; stopping here", flush=True)
                held = max(held, step.made)
                break
            held = rate
    print(f"{side}: highest rate held with 0 lost: {held / 1e3:g}k events/s", flush=True)
    return held


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default="500,1000,2000,5000,7500,10000,15000,20000,50000,100000,200000")
    ap.add_argument("--step-duration", type=float, default=5.0)
    ap.add_argument("--only", choices=("dyntel", "perf"), action="append")
    ap.add_argument("--python-producer", action="store_true", help="the Python producer instead of the C one")
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="dyntel-live-eh-")
    if not args.python_producer:
        _producer_binary[:] = [build_producer(Path(tmp))]
    steps = [float(r) for r in args.steps.split(",")]
    sides = args.only or ["dyntel", "perf"]
    print(f"kernel {os.uname().release}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    try:
        from dyntel import _eventheader  # type: ignore[attr-defined]  # noqa: F401
        print("dyntel's native EventHeader decoder: built", flush=True)
    except ImportError:
        print("dyntel's native EventHeader decoder: NOT built (pure Python)", flush=True)
    try:
        held = {side: highest(side, steps, args.step_duration) for side in sides}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"producer: {'Python' if args.python_producer else 'C'}", flush=True)
    if len(held) == 2 and held["perf"]:
        print(f"ratio (dyntel's highest clean rate / perf record's): {held['dyntel'] / held['perf']:.2f}", flush=True)
    return 0


def test_in_vm() -> None:
    """The benchmark as a pytest item, so that scripts/vm/run-tests.py can run it in the VM (see the docstring);
    arguments from $DYNTEL_BENCH_ARGS."""
    assert main(os.environ.get("DYNTEL_BENCH_ARGS", "").split()) == 0


if __name__ == "__main__":
    sys.exit(main())
