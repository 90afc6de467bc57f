"""The live source, and the whole `dyntel run`, under a known load: lost records, the highest rate held with none
lost, events per CPU-second, idle CPU and memory.

A generator process calls getppid() at a paced rate (in 1 ms slices); dyntel's live source reads
raw_syscalls:sys_enter with a tracefs filter (`common_pid == GENERATOR && id == 110`), so the kernel writes exactly
one sample per call into the default-sized rings, and the benchmark's main thread consumes every Event as an engine
would. For each rate it prints what the generator made, what dyntel saw, samples lost (PERF_RECORD_LOST, and the
per-event PERF_FORMAT_LOST counts), and dyntel's own CPU time (user + system, psutil) as a share of one core and as
events per CPU-second. Needs root (or CAP_PERFMON) and tracefs.

    python -m benchmarks.live                       # 10k/s and 100k/s for 60 s each, a step-up, max, idle
    python -m benchmarks.live --duration 10 --step-duration 3 --idle 10
    python -m benchmarks.live --only max --profile  # where the time goes at full speed

The whole run ("run", "run-steps", "run-idle"): `dyntel run` itself, in a process of its own, with the ten rules of
RULES (four of them candidates for every getppid event, each with a test of a payload field, two with count windows;
six on other tracepoints), none of which fires, on syscalls:sys_enter_getppid while the generator calls getppid() at
each rate. Its /metrics (engine events, LOST) is read before and after; its CPU time (psutil) gives events per CPU-
second of the whole pipeline: source, decode, index, conditions, windows (events per CPU-second counts the samples
read, whether the pre-filter or the engine passed them over). The native pre-filter drops in C the events every
candidate rule's field test rejects; --every-event adds a rule that counts every getppid call, so that each is
decoded and evaluated in Python. "run-steps" is the highest rate of --steps the run holds with 0 lost; "run- idle"
is its CPU share and RSS with no load for --idle seconds. --latency picks sources.latency; --tree another checkout
(before/after).

    python -m benchmarks.live --only run --rates 100000 --duration 20
    python -m benchmarks.live --only run-steps --step-duration 5
    python -m benchmarks.live --only run-idle --idle 30

Steps: rates from --steps are run for --step-duration each, in order, until one loses samples or the generator
cannot make its rate; the last clean one is "the highest rate held with 0 lost". "max" has the generator make
--max-events as fast as it can into rings large enough to hold them all (so none is lost whatever the machine's
load), and reports events per CPU-second of dyntel: its capacity per core.
"""

from __future__ import annotations

import argparse
import contextlib
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

from dyntel.sources.perf.live import PerfLiveSource, default_ring_pages
from dyntel.sources.perf.tracefs import online_cpus

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


def prioritize(pid: int, nice: int) -> None:
    """Give a process started with start_new_session=True the niceness `nice` for its whole session: with
    sched_autogroup on (as here), each session is scheduled as one group and a process's own nice counts only inside
    its group, so on a shared machine the group's nice is what gives it its share (as a service's own cgroup does)."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/autogroup", "w") as f:
        f.write(str(nice))
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, nice)


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


RULES = """version: 1
rules:
  - name: bench-pid
    match: {provider: syscalls, event: sys_enter_getppid}
    condition: fields.__syscall_nr == 998 and pid == 1
    actions: [{log: "never"}]
  - name: bench-field
    match: {provider: syscalls, event: sys_enter_getppid}
    condition: fields.__syscall_nr == 999
    actions: [{log: "never"}]
  - name: bench-window
    match: {provider: syscalls, event: sys_enter_getppid}
    condition: fields.__syscall_nr in [997, 998]
    window: {count: 100000000, within: 1s, group_by: [pid]}
    actions: [{log: "never"}]
  - name: bench-threshold
    match: {provider: syscalls, event: sys_enter_getppid}
    condition: fields.__syscall_nr > 1000 and tid != 0
    window: {count: 100000000, within: 10s}
    actions: [{log: "never"}]
  - name: bench-exec
    match: {provider: sched, event: sched_process_exec}
    condition: fields.filename == "/nonexistent/never"
    actions: [{log: "never"}]
  - name: bench-kill
    match: {provider: signal, event: signal_generate}
    condition: fields.sig == 9 and fields.pid == 1
    actions: [{log: "never"}]
  - name: bench-exit
    match: {provider: sched, event: sched_process_exit}
    condition: fields.prio > 1000
    actions: [{log: "never"}]
  - name: bench-fork-burst
    match: {provider: sched, event: sched_process_fork}
    window: {count: 100000000, within: 1s}
    actions: [{log: "never"}]
  - name: bench-kill-failed
    match: {provider: syscalls, event: sys_exit_kill}
    condition: fields.ret == -999
    actions: [{log: "never"}]
  - name: bench-user-events
    match: {provider: DyntelBench, event: Never}
    actions: [{log: "never"}]
"""


# The same, but one rule counts every getppid call (no condition): every event is decoded and evaluated in Python.
RULES_EVERY_EVENT = RULES.replace("    condition: fields.__syscall_nr in [997, 998]\n", "")


@dataclass
class WholeRun:
    label: str
    sent: int = 0
    gen_seconds: float = 0.0
    read: int = 0  # samples dyntel's source read meanwhile (the generator's and any other process's calls)
    events: int = 0  # what dyntel's engine evaluated of them (the rest the native pre-filter dropped)
    lost: int = 0
    cpu: float = 0.0
    wall: float = 0.0
    rss: int = 0

    def line(self) -> str:
        made = self.sent / self.gen_seconds if self.gen_seconds else 0.0
        per_cpu = self.read / self.cpu if self.cpu else 0.0
        return (f"{self.label:>14}: made {self.sent:>9} ({made / 1e3:7.1f}k/s)  read {self.read:>9}  "
                f"engine evaluated {self.events:>9}  "
                f"lost {self.lost:>7}  dyntel run CPU {100 * self.cpu / self.wall if self.wall else 0:5.1f}% of a "
                f"core, {per_cpu / 1e3:6.1f}k events per CPU-second, RSS {self.rss / 2**20:.0f} MiB")


class _Dyntel:
    """`dyntel run` with RULES in a process of its own, its /metrics on a free port."""

    def __init__(self, tmp: str, args: argparse.Namespace) -> None:
        import socket

        rules = os.path.join(tmp, "bench-rules.yaml")
        with open(rules, "w") as f:
            f.write(RULES_EVERY_EVENT if args.every_event else RULES)
        os.chmod(rules, 0o600)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = dict(os.environ)
        if args.tree:
            env["PYTHONPATH"] = args.tree
        if args.latency:
            env["DYNTEL_SOURCES_LATENCY"] = args.latency
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from dyntel.cli import main; sys.exit(main())", "run", "--rules",
             rules, "--no-reload", "--metrics-listen", f"127.0.0.1:{self.port}"],
            env=env, cwd=args.tree.split(os.pathsep)[0] if args.tree else None,  # ahead of PYTHONPATH for -c
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "dyntel.err"), "w"),  # noqa: SIM115
            start_new_session=bool(args.nice))
        if args.nice:
            prioritize(self.proc.pid, args.nice)
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 60
        while not self._get("/readyz"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                with open(os.path.join(tmp, "dyntel.err")) as f:
                    raise SystemExit(f"dyntel run did not start: {f.read()[-2000:]}")
            time.sleep(0.2)

    def _get(self, path: str) -> str:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return str(r.read().decode())
        except OSError:
            return ""

    def counters(self) -> tuple[float, int, int, int]:
        """(CPU seconds, samples read, engine events, samples lost) now."""
        text = self._get("/metrics")
        values = {}
        for line in text.splitlines():
            if line.startswith(("dyntel_engine_events_total ", "dyntel_events_lost_total ",
                                "dyntel_events_read_total ")):
                name, value = line.split()
                values[name] = int(float(value))
        t = self.ps.cpu_times()
        return (float(t.user + t.system), values.get("dyntel_events_read_total", 0),
                values.get("dyntel_engine_events_total", 0),
                values.get("dyntel_events_lost_total", 0))

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run_whole(label: str, rate: float, duration: float, args: argparse.Namespace) -> WholeRun:
    import tempfile

    result = WholeRun(label)
    with tempfile.TemporaryDirectory(prefix="dyntel-live-") as tmp:
        dyntel = _Dyntel(tmp, args)
        try:
            time.sleep(1.0)  # settle
            spy = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "py-spy"), "record", "--format",
                                    "raw", "-o", args.py_spy, "--pid", str(dyntel.proc.pid), "--rate", "250",
                                    "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) \
                if args.py_spy else None
            c0, r0, e0, l0 = dyntel.counters()
            t0 = time.monotonic()
            if rate > 0:
                gen = subprocess.Popen([sys.executable, "-c", GENERATOR, str(rate), str(duration)],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                       start_new_session=bool(args.nice))
                if args.nice:
                    prioritize(gen.pid, args.nice)
                out, _ = gen.communicate("go\n")
                sent, seconds = out.split()
                result.sent, result.gen_seconds = int(sent), float(seconds)
                time.sleep(0.5)  # the last batch's worth
            else:
                time.sleep(duration)
            c1, r1, e1, l1 = dyntel.counters()
            result.wall = time.monotonic() - t0
            result.cpu, result.read, result.events, result.lost = c1 - c0, r1 - r0, e1 - e0, l1 - l0
            result.rss = dyntel.ps.memory_info().rss
            if spy is not None:
                spy.send_signal(2)
                spy.wait(30)
        finally:
            dyntel.close()
    return result


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
    ap.add_argument("--only", choices=("rates", "steps", "max", "idle", "run", "run-steps", "run-idle"),
                    action="append")
    ap.add_argument("--latency", choices=("low", "throughput"), help="the whole run's sources.latency")
    ap.add_argument("--tree", help="run the dyntel of this checkout (PYTHONPATH) for the whole run")
    ap.add_argument("--every-event", action="store_true",
                    help="the whole run's rules include one that counts every event (nothing for the native "
                         "pre-filter to drop)")
    ap.add_argument("--nice", type=int, default=0,
                    help="the whole run's and its generator's niceness, each in a session of its own (e.g. -10: "
                         "ahead of the other load of a shared machine; see prioritize())")
    ap.add_argument("--py-spy", metavar="FILE", help="py-spy record the whole run into FILE (collapsed stacks)")
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
    if "run" in parts:
        for rate in (float(r) for r in args.rates.split(",")):
            print(run_whole(f"run {rate / 1e3:g}k/s", rate, args.duration, args).line(), flush=True)
    if "run-steps" in parts:
        held = 0.0
        for rate in (float(r) for r in args.steps.split(",")):
            w = run_whole(f"run step {rate / 1e3:g}k", rate, args.step_duration, args)
            print(w.line(), flush=True)
            made = w.sent / w.gen_seconds if w.gen_seconds else 0.0
            if w.lost or w.read < w.sent:
                break
            if made < 0.95 * rate:
                print(f"  the generator made only {made / 1e3:.1f}k/s of {rate / 1e3:g}k/s; stopping here")
                held = max(held, made)
                break
            held = rate
        print(f"whole run: highest rate held with 0 lost: {held / 1e3:g}k events/s", flush=True)
    if "run-idle" in parts:
        print(run_whole("run idle", 0, args.idle, args).line(), flush=True)
    if "idle" in parts:
        share, exact, wakeups = idle(args.idle)
        print(f"idle: dyntel CPU {100 * share:.3f}% of a core by psutil, {100 * exact:.3f}% by the process CPU "
              f"clock ({wakeups:.1f} wake-ups/s, one tracepoint open, one user_events pattern watched)", flush=True)
    print(f"at the end: load average {os.getloadavg()[0]:.2f}, {cpu_pressure()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
