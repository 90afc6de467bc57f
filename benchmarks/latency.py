"""Event -> action latency of the whole `dyntel run`, measured from outside dyntel.

A probe process makes a getppid() call every --interval (50 ms); `dyntel run` runs one rule on
`syscalls:sys_enter_getppid` with `condition: pid == PROBE` and a `signal: USR1` action. The probe blocks SIGUSR1,
reads CLOCK_MONOTONIC just before each call and waits for the signal in sigtimedwait(): the difference is what a
user of dyntel sees, from the event to its action's effect (the source's wait, the reorder window, decoding, the
engine, the action queue, the worker, the kill). A background process makes getppid() calls of its own at each
--loads rate (20/s, 1k/s, 50k/s by default): same tracepoint, another pid, so dyntel reads, decodes and evaluates
them and never fires on them.

`--action stacks` measures when a `stacks` capture starts instead: the probe calls every --stacks-interval and
does not wait; this benchmark reads syscalls:sys_enter_ptrace and sys_enter_process_vm_readv filtered on the
probe's pid (with dyntel's live source, in this process, not dyntel's) and takes the first such call after each
getppid (both clocks are CLOCK_MONOTONIC). The action log gives how long each action ran (`signal` and `log` in
microseconds).

    python -m benchmarks.latency                                  # signal, 20/s, 1k/s, 50k/s, 200 probes each
    python -m benchmarks.latency --samples 100 --loads 1000
    python -m benchmarks.latency --action stacks --loads 20 --samples 10
    python -m benchmarks.latency --latency throughput             # the config's sources.latency
    python -m benchmarks.latency --nice -10                       # dyntel and the probe ahead of other load
    python -m benchmarks.latency --tree /path/to/other/checkout   # another dyntel (before/after): PYTHONPATH

Prints p50/p99/max per load, probes missed (no signal within --timeout), dyntel's CPU share (psutil) and the load
average and CPU pressure (the figures depend on them). Needs root (or CAP_PERFMON and CAP_KILL) and tracefs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks.live import cpu_pressure, prioritize

PROBE = r"""
import json, os, select, signal, sys, time
interval, count, timeout, wait = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "wait"
USR1 = signal.SIGUSR1
signal.pthread_sigmask(signal.SIG_BLOCK, {USR1})
mono = time.CLOCK_MONOTONIC
print(os.getpid(), flush=True)
sys.stdin.readline()
# Warm-up: call until dyntel answers (it is listening), then let stray signals arrive and drop them. Without
# signals (stacks), until the benchmark says a capture has started.
deadline = time.monotonic() + 60
while True:
    os.getppid()
    if wait and signal.sigtimedwait([USR1], 0.2) is not None:
        break
    if not wait and select.select([sys.stdin], [], [], 1.0)[0] and sys.stdin.readline().strip() == "start":
        time.sleep(max(interval, 3.0))  # the warm-up's captures end
        break
    if time.monotonic() > deadline:
        print(json.dumps({"error": "no signal within 60 s: is dyntel running?"}), flush=True)
        sys.exit(1)
time.sleep(max(interval, 0.5))
while signal.sigtimedwait([USR1], 0) is not None:
    pass
print("ready", flush=True)
starts, lat, missed = [], [], 0
nxt = time.monotonic()
for _ in range(count):
    nxt += interval
    delay = nxt - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    t0 = time.clock_gettime_ns(mono)
    os.getppid()
    starts.append(t0)
    if wait:
        got = signal.sigtimedwait([USR1], timeout)
        t1 = time.clock_gettime_ns(mono)
        if got is None:
            missed += 1
        else:
            lat.append(t1 - t0)
        while signal.sigtimedwait([USR1], 0) is not None:  # a late one from a missed probe
            pass
print(json.dumps({"starts": starts, "latencies_ns": lat, "missed": missed}), flush=True)
"""

BACKGROUND = r"""
import os, signal, sys, time
rate = float(sys.argv[1])
g = os.getppid
sent = 0
t0 = time.monotonic()
def done(*_):
    print(sent / (time.monotonic() - t0), flush=True)
    os._exit(0)
signal.signal(signal.SIGTERM, done)
while True:
    target = int((time.monotonic() - t0) * rate)
    for _ in range(target - sent):
        g()
    sent = max(sent, target)
    time.sleep(0.001)
"""


@dataclass
class Result:
    load: float
    latencies_ms: list[float] = field(default_factory=list)
    missed: int = 0
    dyntel_cpu: float = 0.0  # share of one core during the probes
    action_ms: dict[str, list[float]] = field(default_factory=dict)
    note: str = ""
    made: float = 0.0  # background calls a second the load process made

    def pct(self, p: float) -> float:
        xs = sorted(self.latencies_ms)
        if not xs:
            return float("nan")
        return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]

    def line(self, what: str) -> str:
        acts = "  ".join(f"{k} ran p50 {1e3 * _median(v):.0f} us" for k, v in sorted(self.action_ms.items()) if v)
        return (f"{what} at {self.load:>7g}/s background (made {self.made:7.0f}/s): n={len(self.latencies_ms):>4}  "
                f"p50 {self.pct(50):7.2f} ms  "
                f"p99 {self.pct(99):7.2f} ms  max {max(self.latencies_ms, default=float('nan')):7.2f} ms  "
                f"over 10 ms {sum(1 for x in self.latencies_ms if x > 10):>3}  "
                f"missed {self.missed}  dyntel CPU {100 * self.dyntel_cpu:5.1f}% of a core  {acts}{self.note}")


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2] if s else float("nan")


def rule_text(pid: int, action: str) -> str:
    act = "- signal: USR1" if action == "signal" else "- stacks: {native: true, python: false}"
    return (f"version: 1\nrules:\n  - name: latency-probe\n    match: {{provider: syscalls, event: sys_enter_getppid}}"
            f"\n    condition: pid == {pid}\n    actions:\n      {act}\n      - log: \"probe {{pid}}\"\n")


@dataclass(frozen=True)
class Workload:
    """What makes the events: the probe's command (interval, samples, timeout, wait -> argv; it speaks PROBE's
    protocol), the background load's (rate -> argv; prints the rate it made when terminated) and the rule that
    answers the probe (pid, action -> YAML). benchmarks/latency_user_events.py has an EventHeader one."""

    what: str
    probe: Callable[[float, int, float, bool], list[str]]
    background: Callable[[float], list[str]]
    rule: Callable[[int, str], str]
    actions: tuple[str, ...] = ("signal", "stacks")
    doc: str = ""


SYSCALLS = Workload(
    "getppid() on syscalls:sys_enter_getppid",
    lambda interval, samples, timeout, wait: [sys.executable, "-c", PROBE, str(interval), str(samples), str(timeout),
                                              "wait" if wait else "nowait"],
    lambda rate: [sys.executable, "-c", BACKGROUND, str(rate)],
    rule_text,
    doc=__doc__ or "",
)


def measure(load: float, args: argparse.Namespace, tmp: Path, workload: Workload = SYSCALLS) -> Result:
    result = Result(load)
    wait = args.action == "signal"
    interval = args.interval if wait else args.stacks_interval
    background = subprocess.Popen(workload.background(load), stdout=subprocess.PIPE,
                                  text=True) if load > 0 else None
    probe = subprocess.Popen(workload.probe(interval, args.samples, args.timeout, wait), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, start_new_session=bool(args.nice))
    if args.nice:
        prioritize(probe.pid, args.nice)
    assert probe.stdin is not None and probe.stdout is not None
    pid = int(probe.stdout.readline())
    rules = tmp / f"rules-{int(load)}.yaml"
    rules.write_text(workload.rule(pid, "signal" if wait else "stacks"))
    rules.chmod(0o600)
    actions_log = tmp / f"actions-{int(load)}.jsonl"
    env = dict(os.environ, DYNTEL_ACTIONS_LOG=str(actions_log), DYNTEL_ARTIFACTS_DIR=str(tmp / "artifacts"))
    if args.tree:
        env["PYTHONPATH"] = args.tree
    if args.latency:
        env["DYNTEL_SOURCES_LATENCY"] = args.latency
    if args.max_wait:
        env["DYNTEL_SOURCES_MAX_WAIT"] = args.max_wait
    cmd = [sys.executable, "-c", "import sys; from dyntel.cli import main; sys.exit(main())", "run", "--rules",
           str(rules), "--no-reload"]
    # From the tree's own directory: `python -c` puts the working directory ahead of PYTHONPATH.
    dyntel = subprocess.Popen(cmd, env=env, cwd=args.tree.split(os.pathsep)[0] if args.tree else None,
                              stdout=subprocess.DEVNULL,
                              stderr=open(tmp / f"dyntel-{int(load)}.err", "w"),  # noqa: SIM115
                              start_new_session=bool(args.nice))
    if args.nice:
        prioritize(dyntel.pid, args.nice)
    observer = _Observer(pid) if not wait else None
    try:
        if observer is not None:
            observer.start()
        probe.stdin.write("go\n")
        probe.stdin.flush()
        if observer is not None:
            deadline = time.monotonic() + 60
            while not observer.times and time.monotonic() < deadline:
                time.sleep(0.1)
            observer.times.clear()
            probe.stdin.write("start\n")
            probe.stdin.flush()
        # dyntel's CPU from the first answer on (its start-up is not what is measured).
        proc = psutil.Process(dyntel.pid)
        out = probe.stdout.readline()
        c0, t0 = _cpu(proc), time.monotonic()
        if out.strip() == "ready":
            out = probe.stdout.readline()
        c1, t1 = _cpu(proc), time.monotonic()
        result.dyntel_cpu = (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0
        data: dict[str, Any] = json.loads(out) if out else {"error": "the probe ended without a result"}
        if "error" in data:
            err = (tmp / f"dyntel-{int(load)}.err").read_text().strip().splitlines()[-5:]
            result.note = f"  ERROR: {data['error']} (dyntel's stderr: {' | '.join(err)})"
            return result
        result.missed = data["missed"]
        if os.environ.get("DYNTEL_LATENCY_KEEP"):  # dyntel's stderr, to look into
            print((tmp / f"dyntel-{int(load)}.err").read_text(), file=sys.stderr)
        if wait:
            result.latencies_ms = [x / 1e6 for x in data["latencies_ns"]]
        else:
            assert observer is not None
            time.sleep(min(5.0, interval))
            result.latencies_ms, result.missed = observer.starts_after(data["starts"])
    finally:
        if observer is not None:
            observer.stop()
        if background is not None:
            background.terminate()
            made, _ = background.communicate(timeout=10)
            result.made = float(made or 0)
        dyntel.terminate()
        try:
            dyntel.wait(30)
        except subprocess.TimeoutExpired:
            dyntel.kill()
        for p in (probe, background):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    # Its exit summary: events the kernel dropped because dyntel fell behind (the ring was full).
    lost = re.search(r"(\d+) sample\(s\) lost by the kernel", (tmp / f"dyntel-{int(load)}.err").read_text())
    if lost and int(lost.group(1)):
        result.note += f"  dyntel lost {lost.group(1)} events (full ring)"
    if actions_log.exists():
        for line in actions_log.read_text().splitlines():
            rec = json.loads(line)
            result.action_ms.setdefault(rec["type"], []).append(rec["duration_ms"])
    return result


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


class _Observer:
    """The probe's first ptrace / process_vm_readv call after each getppid: when a capture starts to touch it."""

    def __init__(self, pid: int) -> None:
        from dyntel.sources.perf.live import PerfLiveSource

        self.src = PerfLiveSource(flush_interval=0.05)
        for name in ("sys_enter_ptrace", "sys_enter_process_vm_readv"):
            self.src.add(f"syscalls:{name}", filter=f"pid == {pid}")
        self.times: list[int] = []
        self.thread = threading.Thread(target=self._read, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _read(self) -> None:
        offset = self.src._offset
        for event in self.src.events():
            if event.time is not None:
                self.times.append(event.time - offset)

    def stop(self) -> None:
        self.src.stop()
        self.thread.join(5)
        self.src.close()

    def starts_after(self, starts: list[int]) -> tuple[list[float], int]:
        import bisect

        times = sorted(self.times)
        out: list[float] = []
        missed = 0
        for i, t0 in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else 1 << 62
            j = bisect.bisect_left(times, t0)
            if j < len(times) and times[j] < end:
                out.append((times[j] - t0) / 1e6)
            else:
                missed += 1  # skipped (one capture at a time) or never started
        return out, missed


def parser(workload: Workload = SYSCALLS) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=workload.doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loads", default="20,1000,50000",
                    help="background events per second (default 20,1000,50000)")
    ap.add_argument("--samples", type=int, default=200, help="probes per load (default 200)")
    ap.add_argument("--interval", type=float, default=0.05, help="seconds between probes (default 0.05)")
    ap.add_argument("--stacks-interval", type=float, default=2.0, help="seconds between probes for stacks")
    ap.add_argument("--timeout", type=float, default=1.0, help="a probe with no signal by then is missed")
    ap.add_argument("--action", choices=workload.actions, default=workload.actions[0])
    ap.add_argument("--latency", choices=("low", "throughput"), help="sources.latency for dyntel (default: its own)")
    ap.add_argument("--max-wait", help="sources.max_wait for dyntel, e.g. 5ms")
    ap.add_argument("--nice", type=int, default=0,
                    help="run dyntel and the probe at this niceness, each in a session of its own (e.g. -10: ahead "
                         "of the other load of a shared machine; the background load stays at 0)")
    ap.add_argument("--tree", help="run the dyntel of this checkout (PYTHONPATH) instead of the installed one")
    return ap


def main(argv: list[str] | None = None, workload: Workload = SYSCALLS) -> int:
    args = parser(workload).parse_args(argv)
    print(f"kernel {os.uname().release}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}, "
          f"dyntel from {args.tree or 'this checkout'}, latency {args.latency or 'default'}, nice {args.nice}, "
          f"load average {os.getloadavg()[0]:.2f}, {cpu_pressure()}; {workload.what}", flush=True)
    with tempfile.TemporaryDirectory(prefix="dyntel-latency-") as d:
        tmp = Path(d)
        for load in (float(x) for x in args.loads.split(",")):
            r = measure(load, args, tmp, workload)
            print(r.line(args.action), f"(load average {os.getloadavg()[0]:.2f})", flush=True)
    print(f"at the end: load average {os.getloadavg()[0]:.2f}, {cpu_pressure()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
