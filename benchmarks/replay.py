"""Replay speed: `dyntel replay` against `perf script -s` (perf's Python scripting) on the same perf.data, same run.

Records about a million tracepoint samples of several kinds (needs root and perf): syscalls entering and leaving,
and the scheduler's switches and wake-ups, from a ping-pong over a pipe (`perf bench sched pipe`), plus a few execs.
Then:

1. A pack of 100 rules of the kind production runs, where most events match no rule: one on raw_syscalls:sys_enter
   (`fields.id == 59`, an execve: rare), nine with rare conditions on other recorded events, and ninety on events
   the recording does not have (services' user_events, tracepoints nobody enabled).
   `dyntel replay --rules pack.yaml FILE --format json > /dev/null` is timed against
   `perf script -i FILE -s filter.py`, where filter.py has one handler, for sys_enter, that evaluates the same
   condition and counts. Both must find the same number of execve events; the script checks that.
2. Events/s with 1, 10, 100 and 1000 rules on the same file: the one sys_enter rule and the rest on absent events,
   so that every event can match at most one rule; the cost should not grow with the pack. And, for contrast, with
   1, 10 and 100 rules that all match every sys_enter (conditions the native pre-filter cannot read), where it must.

Times are the best of --repeat runs: wall-clock, and the CPU time (user + system) of the child, which is steadier on
a busy machine. Samples/s count every sample in the file, filtered or not.

    python benchmarks/replay.py [--samples 1000000] [--repeat 3] [--keep FILE] [--profile]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EVENTS = ("raw_syscalls:sys_enter", "raw_syscalls:sys_exit", "sched:sched_switch", "sched:sched_wakeup",
          "sched:sched_waking", "sched:sched_process_exec", "sched:sched_process_exit")
SAMPLES_PER_LOOP = 10.8  # what one round trip of `perf bench sched pipe` records of EVENTS, measured

EXECVE_RULE = """\
  - name: execve
    description: a process execs (raw syscall 59 on x86-64)
    match: {provider: raw_syscalls, event: sys_enter}
    condition: fields.id == 59
    actions:
      - log: {message: "execve in {pid}"}
"""

# Rare conditions on events the recording has. Integer comparisons the native pre-filter reads on the raw bytes,
# and string conditions on rare events that it leaves to Python.
RARE_RULES = [
    ("raw_syscalls", "sys_exit", "fields.ret == -12", None),  # ENOMEM
    ("raw_syscalls", "sys_exit", "fields.id == 62 and fields.ret == 0", None),  # a kill that worked
    ("sched", "sched_switch", "fields.next_prio < 50 and fields.prev_prio < 50", None),  # RT to RT
    ("sched", "sched_switch", "fields.prev_state == 1024", "{count: 100, within: 1s, group_by: [fields.prev_comm]}"),
    ("sched", "sched_wakeup", "fields.target_cpu >= 512", None),
    ("sched", "sched_waking", "fields.prio < 10", "{count: 10, within: 10s, group_by: [fields.comm]}"),
    ("sched", "sched_process_exec", 'endswith(fields.filename, "/nc")', None),
    ("sched", "sched_process_exec", 'contains(fields.filename, "/tmp/")', None),
    ("sched", "sched_process_exit", 'fields.comm == "sshd" and fields.prio < 100', None),
]

# Events the recording does not have: services' user_events and tracepoints that were not enabled.
ABSENT_EVENTS = [
    ("MyService", "RequestDone", "fields.status >= 500"),
    ("MyService", "Exception", 'fields.type == "OutOfMemoryError"'),
    ("Payments", "Charge", "fields.amount > 100000"),
    ("Auth", "LoginFailed", "fields.attempts >= 5"),
    ("block", "block_rq_issue", "fields.bytes > 1048576"),
    ("net", "netif_receive_skb", "fields.len > 9000"),
    ("oom", "mark_victim", "fields.pid > 0"),
    ("signal", "signal_deliver", "fields.sig == 11"),
    ("kmem", "mm_page_alloc", "fields.order >= 9"),
    ("tcp", "tcp_retransmit_skb", "fields.sport == 443"),
]


def absent_rule(i: int) -> str:
    provider, event, condition = ABSENT_EVENTS[i % len(ABSENT_EVENTS)]
    # Distinct providers, as many services would have: the index must not scan them per event.
    return (f"  - name: absent-{i}\n"
            f"    match: {{provider: {provider}{i}, event: {event}}}\n"
            f"    condition: {condition}\n"
            f"    window: {{count: 3, within: 1m, group_by: [pid]}}\n"
            f"    actions:\n      - log: {{message: \"{provider}{i} {event}\"}}\n")


def rare_rule(i: int) -> str:
    provider, event, condition, window = RARE_RULES[i % len(RARE_RULES)]
    text = (f"  - name: rare-{i}\n"
            f"    match: {{provider: {provider}, event: {event}}}\n"
            f"    condition: '{condition}'\n")
    if window:
        text += f"    window: {window}\n"
    return text + "    actions:\n      - log: {}\n"


def pack(n: int, rare: int) -> str:
    rules = [EXECVE_RULE] + [rare_rule(i) for i in range(rare)] + [absent_rule(i) for i in range(n - 1 - rare)]
    return "version: 1\nrules:\n" + "".join(rules)


def matching_pack(n: int) -> str:
    """n rules that each take every sys_enter (a condition on the process id, which no pre-filter reads)."""
    return "version: 1\nrules:\n" + "".join(
        f"  - name: every-{i}\n    match: {{provider: raw_syscalls, event: sys_enter}}\n"
        f"    condition: pid == {1_000_000 + i}\n    actions:\n      - log: {{}}\n" for i in range(n))


PERF_FILTER = """\
# perf script -s: the pack's one rule on the recorded hot event, in perf's Python scripting.
import sys

count = 0


def raw_syscalls__sys_enter(event_name, context, common_cpu, common_secs, common_nsecs, common_pid, common_comm,
                            common_callchain, id, args, perf_sample_dict):
    global count
    if id == 59:
        count += 1


def trace_end():
    sys.stdout.write("execve %d\\n" % count)
"""


def record(path: Path, samples: int) -> None:
    loops = max(10, int(samples / SAMPLES_PER_LOOP))
    argv = ["perf", "record", "-q", "-m", "8192", "-k", "CLOCK_MONOTONIC"]
    for e in EVENTS:
        argv += ["-e", e]
    workload = f"perf bench sched pipe -l {loops} > /dev/null; for i in 1 2 3; do /bin/true; done"
    subprocess.run([*argv, "-o", str(path), "--", "sh", "-c", workload], check=True, stderr=subprocess.DEVNULL)


def composition(path: Path) -> tuple[int, dict[str, int]]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from dyntel.sources.recordings import open_recording

    source = open_recording(str(path))
    counts: dict[str, int] = {}
    for e in source.events():
        key = f"{e.provider}:{e.name}"
        counts[key] = counts.get(key, 0) + 1
    return sum(counts.values()), counts


def timed(argv: list[str], repeat: int, stdout: int | None = None) -> tuple[float, float, str]:
    """(best wall seconds, best CPU seconds of the child, stdout of the last run when not discarded)."""
    best_wall = best_cpu = float("inf")
    text = ""
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        if stdout is None:
            proc = subprocess.run(argv, capture_output=True, text=True, check=True)
            text = proc.stdout
        else:
            subprocess.run(argv, stdout=stdout, stderr=subprocess.DEVNULL, check=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu)
    return best_wall, best_cpu, text


def replay_argv(rules: Path, data: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dyntel.cli", "replay", "--rules", str(rules), str(data), "--format", "json",
            "-q", *extra]


def inner(rules_path: str, data: str, native: bool) -> None:
    """In a fresh process: import and load the rules, replay, and print (CPU s for the imports and the rules, CPU s
    for the replay, firings), so that the per-event cost is seen apart from the interpreter's start and the rule
    loader's."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    t0 = time.process_time()
    from dyntel.replay import ReplayOptions, replay
    from dyntel.rules.loader import load_rules

    rules = load_rules([rules_path])
    t1 = time.process_time()
    fired = [0]

    def on_firing(firing: object, source: object) -> None:
        fired[0] += 1

    with open(os.devnull, "w") as null:
        replay(rules, data, on_firing, ReplayOptions(dry_run=True, native=native, log=null))
    t2 = time.process_time()
    print(f"{t1 - t0:.6f} {t2 - t1:.6f} {fired[0]}")


def split_times(rules: Path, data: Path, repeat: int, native: bool = True) -> tuple[float, float, int]:
    """Best (load CPU s, replay CPU s) of `repeat` fresh processes, and the firings."""
    best_load = best_replay = float("inf")
    fired = 0
    for _ in range(repeat):
        argv = [sys.executable, __file__, "--inner", str(rules), str(data)] + ([] if native else ["--no-native"])
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()
        best_load, best_replay = min(best_load, float(out[0])), min(best_replay, float(out[1]))
        fired = int(out[2])
    return best_load, best_replay, fired


def main() -> int:
    if len(sys.argv) >= 4 and sys.argv[1] == "--inner":
        inner(sys.argv[2], sys.argv[3], "--no-native" not in sys.argv)
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="keep the recording here (and reuse it if it exists)")
    ap.add_argument("--profile", action="store_true", help="also print a cProfile of one replay of the pack")
    args = ap.parse_args()
    if shutil.which("perf") is None:
        print("perf is not installed (Debian: apt-get install linux-perf)", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="dyntel-replay-bench-"))
    data = args.keep or tmp / "mix.perf.data"
    try:
        if not data.exists():
            record(data, args.samples)
        n, counts = composition(data)
        print(f"recording: {data} ({data.stat().st_size / 1e6:.1f} MB, {n} samples)")
        for name, c in sorted(counts.items(), key=lambda kv: -kv[1]):
            print(f"  {name:<28} {c:>9}  {100 * c / n:5.1f}%")

        pack100 = tmp / "pack.yaml"
        pack100.write_text(pack(100, len(RARE_RULES)))
        script = tmp / "filter.py"
        script.write_text(PERF_FILTER)
        with open(os.devnull, "wb") as null:
            # Correctness first: both find the same execve events.
            _, _, perf_out = timed(["perf", "script", "-i", str(data), "-s", str(script)], 1)
            _, _, firings = timed(replay_argv(pack100, data), 1)
            perf_count = int(perf_out.split()[-1]) if perf_out.split() else -1
            dyntel_count = sum('"rule":"execve"' in line for line in firings.splitlines())
            print(f"execve events: perf script -s {perf_count}, dyntel replay {dyntel_count}")
            if perf_count != dyntel_count:
                # Speed means nothing when the two sides did not find the same events.
                print("MISMATCH: the two sides disagree; no timing is reported", file=sys.stderr)
                return 1

            perf_wall, perf_cpu, _ = timed(["perf", "script", "-i", str(data), "-s", str(script)], args.repeat,
                                           null.fileno())
            dy_wall, dy_cpu, _ = timed(replay_argv(pack100, data), args.repeat, null.fileno())
            py_wall, py_cpu, _ = timed(replay_argv(pack100, data, "--no-native"), 1, null.fileno())
        print()
        print("100 rules, 1 of them on the recording's hot event:           wall      cpu   samples/s (cpu)")
        print(f"  perf script -s filter.py                             {perf_wall:7.3f}s {perf_cpu:7.3f}s "
              f"{n / perf_cpu / 1e6:8.3f} M")
        print(f"  dyntel replay --format json                          {dy_wall:7.3f}s {dy_cpu:7.3f}s "
              f"{n / dy_cpu / 1e6:8.3f} M")
        print(f"  dyntel replay --no-native (filter in Python)         {py_wall:7.3f}s {py_cpu:7.3f}s "
              f"{n / py_cpu / 1e6:8.3f} M")
        print(f"ratio perf script / dyntel replay: {perf_wall / dy_wall:.1f}x wall, {perf_cpu / dy_cpu:.1f}x cpu "
              f"(target >= 10x); without the native pre-filter: {perf_cpu / py_cpu:.1f}x cpu")

        # The fixed cost of each side, measured the same way on a tiny recording of the same events: the interpreter,
        # imports and loading the 100 rules for dyntel; perf's start-up, reading the header and tracing data, and
        # starting its Python for perf script -s. Each is subtracted from its own side only.
        small = tmp / "small.perf.data"
        record(small, 100)
        _, dy_fixed, _ = timed(replay_argv(pack100, small), args.repeat, subprocess.DEVNULL)
        _, perf_fixed, _ = timed(["perf", "script", "-i", str(small), "-s", str(script)], args.repeat,
                                 subprocess.DEVNULL)
        print(f"  fixed costs, on a recording of {composition(small)[0]} samples of the same events: "
              f"perf script -s {perf_fixed:.3f}s cpu, dyntel replay {dy_fixed:.3f}s cpu")
        events_ratio = max(perf_cpu - perf_fixed, 1e-3) / max(dy_cpu - dy_fixed, 1e-3)
        print(f"ratio on the events alone (CPU time past each side's own fixed cost): {events_ratio:.1f}x")

        print()
        print("by pack size, in a fresh process each (best CPU times; samples/s over the replay alone, all samples "
              "of the file counted):")
        print("                                          imports + rules    replay   samples/s  firings")
        for size in (1, 10, 100, 1000):
            rules = tmp / f"pack{size}.yaml"
            rules.write_text(pack(size, 0))
            load, rep, fired = split_times(rules, data, args.repeat)
            print(f"  {size:>5} rules, at most 1 per event        {load:8.3f}s {rep:8.3f}s {n / rep / 1e6:8.2f} M  "
                  f"{fired:>7}")
        for size in (1, 10, 100):
            rules = tmp / f"matching{size}.yaml"
            rules.write_text(matching_pack(size))
            load, rep, fired = split_times(rules, data, 1)
            print(f"  {size:>5} rules, all on every sys_enter     {load:8.3f}s {rep:8.3f}s {n / rep / 1e6:8.2f} M  "
                  f"{fired:>7}")
        load, rep, fired = split_times(pack100, data, 1, native=False)
        print(f"    100 rules of the pack, --no-native    {load:8.3f}s {rep:8.3f}s {n / rep / 1e6:8.2f} M  "
              f"{fired:>7}")
        print(f"\nrules and script kept in {tmp}" if args.keep else "")
        if args.profile:
            prof = tmp / "replay.prof"
            subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "dyntel.cli", "replay",
                            "--rules", str(pack100), str(data), "--format", "json", "-q"],
                           stdout=subprocess.DEVNULL, check=False)
            import pstats

            pstats.Stats(str(prof)).sort_stats("tottime").print_stats(20)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
