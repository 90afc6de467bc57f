"""The live source under a known load: lost records, the highest rate held with none lost, and dyntel's CPU use.

A generator process calls getppid() at a paced rate (in 1 ms slices); dyntel's live source reads
raw_syscalls:sys_enter with a tracefs filter (`common_pid == GENERATOR && id == 110`), so the kernel writes exactly
one sample per call into the default-sized rings, and the benchmark's main thread consumes every Event as an engine
would. For each rate it prints what the generator made, what dyntel saw, samples lost (PERF_RECORD_LOST, and the
per-event PERF_FORMAT_LOST counts), and dyntel's own CPU time (user + system, psutil) as a share of one core and as
events per CPU-second. Needs root (or CAP_PERFMON) and tracefs.

    python -m benchmarks.live                       # 10k/s and 100k/s for 60 s each, a step-up, max, idle
    python -m benchmarks.live --duration 10 --step-duration 3 --idle 10
    python -m benchmarks.live --only max --profile  # where the time goes at full speed

Steps: rates from --steps are run for --step-duration each, in order, until one loses samples or the generator
cannot make its rate; the last clean one is "the highest rate held with 0 lost". "max" has the generator make
--max-events as fast as it can into rings large enough to hold them all (so none is lost whatever the machine's
load), and reports events per CPU-second of dyntel: its capacity per core.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import os
import pstats
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import psutil

from dyntel.sources.perf_live import PerfLiveSource, default_ring_pages
from dyntel.sources.tracefs import online_cpus

SYS_GETPPID = 110  # x86-64

GENERATOR = r"""
import os, sys, time
rate, duration = float(sys.argv[1]), float(sys.argv[2])
sys.stdin.readline()
g = os.getppid
sent = 0
t0 = time.monotonic()
if rate <= 0:  # unpaced: `duration` is a count
    for _ in range(int(duration)):
        g()
    sent = int(duration)
else:
    while True:
        now = time.monotonic() - t0
        if now >= duration:
            break
        target = int(now * rate)
        for _ in range(target - sent):
            g()
        sent = max(sent, target)
        time.sleep(0.001)
print(sent, time.monotonic() - t0, flush=True)
"""


@dataclass
class Run:
    label: str
    target: float  # events/s asked for; 0 = as fast as possible
    duration: float
    sent: int = 0
    gen_seconds: float = 0.0
    seen: int = 0
    lost_records: int = 0
    lost_exact: int = 0
    cpu: float = 0.0  # dyntel's CPU seconds during the run
    max_gap: float = 0.0  # longest time between two drains, seconds
    wall: float = 0.0

    @property
    def made_rate(self) -> float:
        return self.sent / self.gen_seconds if self.gen_seconds else 0.0

    @property
    def cpu_share(self) -> float:
        return self.cpu / self.wall if self.wall else 0.0

    def line(self) -> str:
        per_cpu = self.seen / self.cpu if self.cpu else 0.0
        return (f"{self.label:>10}: made {self.sent:>9} ({self.made_rate / 1e3:7.1f}k/s)  seen {self.seen:>9}  "
                f"lost {self.lost_records:>7} (exact {self.lost_exact:>7})  dyntel CPU {100 * self.cpu_share:5.1f}% "
                f"of a core, {per_cpu / 1e3:6.1f}k events per CPU-second, longest gap between drains "
                f"{1e3 * self.max_gap:.0f} ms")


def cpu_pressure() -> str:
    """How contended the CPUs are (PSI: share of time some task waited for a CPU), as the figures depend on it."""
    try:
        with open("/proc/pressure/cpu") as f:
            some = f.readline().split()
    except OSError:
        return "CPU pressure unknown"
    fields = dict(part.split("=") for part in some[1:])
    return f"CPU pressure (some) {fields.get('avg10', '?')}% over 10 s, {fields.get('avg60', '?')}% over 60 s"


def cpu_seconds() -> float:
    t = psutil.Process().cpu_times()
    return float(t.user + t.system)


def run(label: str, rate: float, duration: float, ring_pages: int, profile: bool = False) -> Run:
    result = Run(label, rate, duration)
    gen = subprocess.Popen([sys.executable, "-c", GENERATOR, str(rate), str(duration)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    src = PerfLiveSource(ring_pages=ring_pages or None)
    try:
        src.add("raw_syscalls:sys_enter", filter=f"common_pid == {gen.pid} && id == {SYS_GETPPID}")
        done = threading.Event()

        def wait_generator() -> None:
            out, _ = gen.communicate("go\n")
            sent, seconds = out.split()
            result.sent, result.gen_seconds = int(sent), float(seconds)
            time.sleep(0.3)  # the last wake-up's worth
            done.set()
            src.stop()

        waiter = threading.Thread(target=wait_generator, daemon=True)
        prof = cProfile.Profile() if profile else None
        c0, t0 = cpu_seconds(), time.monotonic()
        waiter.start()
        if prof is not None:
            prof.enable()
        seen = 0
        for _event in src.events():
            seen += 1
        if prof is not None:
            prof.disable()
        result.cpu, result.wall = cpu_seconds() - c0, time.monotonic() - t0
        waiter.join()
        result.seen = seen
        result.lost_records = src.stats.lost
        result.lost_exact = sum(src.lost().values())
        result.max_gap = src.stats.max_drain_gap_ns / 1e9
        if prof is not None:
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    finally:
        src.close()
        if gen.poll() is None:
            gen.kill()
    return result


def idle(seconds: float) -> tuple[float, float, float]:
    """dyntel's CPU share with a tracepoint open that nothing hits and a user_events pattern watched for:
    (share by psutil, share by the process CPU clock, wake-ups per second). psutil reads clock ticks (10 ms), coarse
    next to an idle process's few milliseconds a second; CLOCK_PROCESS_CPUTIME_ID is exact."""
    sleeper = subprocess.Popen(["sleep", str(seconds + 5)])
    src = PerfLiveSource()
    quiet = logging.getLogger("dyntel.live")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "this kernel has no user_events" is expected here
    try:
        src.add("raw_syscalls:sys_enter", filter=f"common_pid == {sleeper.pid}")
        src.add("user_events:dyntel_bench_*")  # watched for, never there
        threading.Timer(seconds, src.stop).start()
        c0, p0, t0 = cpu_seconds(), time.process_time(), time.monotonic()
        for _event in src.events():
            pass
        cpu, exact, wall = cpu_seconds() - c0, time.process_time() - p0, time.monotonic() - t0
        return cpu / wall, exact / wall, src.stats.wakeups / wall
    finally:
        quiet.setLevel(level)
        src.close()
        sleeper.kill()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds at each of --rates (default 60)")
    ap.add_argument("--rates", default="10000,100000", help="events/s held for --duration (default 10000,100000)")
    ap.add_argument("--steps", default="50000,100000,150000,200000,250000,300000,400000,500000",
                    help="rates tried in order for the highest rate with 0 lost")
    ap.add_argument("--step-duration", type=float, default=10.0)
    ap.add_argument("--idle", type=float, default=30.0, help="seconds of idle measurement (default 30)")
    ap.add_argument("--max-events", type=int, default=500_000, help="events the 'max' run makes")
    ap.add_argument("--ring-pages", type=int, default=0, help="data pages a CPU (default: the source's own choice)")
    ap.add_argument("--only", choices=("rates", "steps", "max", "idle"), action="append")
    ap.add_argument("--profile", action="store_true", help="cProfile the consumer during 'max'")
    args = ap.parse_args(argv)
    parts = args.only or ["rates", "steps", "max", "idle"]
    page_kib = os.sysconf("SC_PAGE_SIZE") // 1024
    shown_pages = args.ring_pages or default_ring_pages(len(online_cpus()))
    print(f"kernel {os.uname().release}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}, "
          f"ring {shown_pages} pages ({shown_pages * page_kib} KiB) per CPU, "
          f"load average {os.getloadavg()[0]:.2f}, {cpu_pressure()}", flush=True)
    if "rates" in parts:
        for rate in (float(r) for r in args.rates.split(",")):
            print(run(f"{rate / 1e3:g}k/s", rate, args.duration, args.ring_pages).line(), flush=True)
    if "steps" in parts:
        held = 0.0
        for rate in (float(r) for r in args.steps.split(",")):
            r = run(f"step {rate / 1e3:g}k", rate, args.step_duration, args.ring_pages)
            print(r.line(), flush=True)
            if r.lost_records or r.lost_exact or r.seen != r.sent:
                break
            if r.made_rate < 0.95 * rate:
                print(f"  the generator made only {r.made_rate / 1e3:.1f}k/s of {rate / 1e3:g}k/s; stopping here")
                held = max(held, r.made_rate)
                break
            held = rate
        print(f"highest rate held with 0 lost: {held / 1e3:g}k events/s", flush=True)
    if "max" in parts:
        # 112-byte samples: 16384 pages (64 MiB) a CPU hold 500k of them
        pages = max(shown_pages, 1 << (args.max_events * 112 // os.sysconf("SC_PAGE_SIZE")).bit_length())
        r = run("max", 0, args.max_events, pages, args.profile)
        print(r.line(), flush=True)
    if "idle" in parts:
        share, exact, wakeups = idle(args.idle)
        print(f"idle: dyntel CPU {100 * share:.3f}% of a core by psutil, {100 * exact:.3f}% by the process CPU "
              f"clock ({wakeups:.1f} wake-ups/s, one tracepoint open, one user_events pattern watched)", flush=True)
    print(f"at the end: load average {os.getloadavg()[0]:.2f}, {cpu_pressure()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
