"""Decode speed: `dyntel decode --format jsonl` against `perf script` on the same perf.data, in the same run.

Records about 1M raw_syscalls:sys_enter samples (needs root and perf), then times each decoder writing to
/dev/null, best of --repeat runs, and prints samples/s for both and the ratio (perf script time / dyntel time;
>= 1.0 means dyntel is at least as fast).

EventHeader: the writer's recording from the user_events VM (tests/data/eh-writer.perf.data, every field encoding
and format) and the corpus perf.data (the reference's C and C++ test providers), each one's EventHeader samples
repeated to --eh-events (benchmarks/eventheader_recording.py), decoded by dyntel and by the Rust reader of the
format's authors (tests/peers/tracepoint-rs: tracepoint_perf + tracepoint_decode writing the same JSON lines), and by
perf-decode (C++, microsoft/LinuxTracepoints) when --perf-decode gives its path (beside `dyntel decode --order
round`, which sorts each round by time as perf-decode does). The Rust reader is found in the peer cache
(scripts/peers/build-rust.sh tracepoint-rs) unless --rust-reader gives it; it also runs on the tracefs recording.

    python benchmarks/decode.py [--samples 1000000] [--repeat 3] [--keep FILE] [--profile]
                                [--rust-reader PATH] [--perf-decode PATH] [--eh-recording FILE] [--eh-events N]
                                [--only tracefs|eventheader]
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

ROOT = Path(__file__).resolve().parent.parent
EH_RECORDING = ROOT / "tests" / "data" / "eh-writer.perf.data"
# The OpenTelemetry Rust user_events exporters' logs, spans and metrics, recorded in the VM (docs/otel.md).
OTEL_RECORDING = ROOT / "tests" / "data" / "otel-rust" / "otel-rust.perf.data"
CORPUS_RECORDING = (Path(os.environ.get("DYNTEL_CORPUS", ROOT.parent / "shared" / "corpus")) / "linuxtracepoints"
                    / "perf.data")


def record(path: Path, samples: int) -> None:
    # dd with bs=1 makes two syscalls (read, write) per byte: a steady, known stream of sys_enter samples.
    subprocess.run(
        ["perf", "record", "-q", "-m", "4096", "-k", "CLOCK_MONOTONIC", "-e", "raw_syscalls:sys_enter",
         "-o", str(path), "--", "dd", "if=/dev/zero", "of=/dev/null", "bs=1", f"count={samples // 2}"],
        check=True, stderr=subprocess.DEVNULL,
    )


def count_samples(path: Path) -> int:
    out = subprocess.run(["perf", "report", "-i", str(path), "--stats"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.strip().startswith("SAMPLE events:"):
            return int(line.split()[2])  # "SAMPLE events:  1000239  (97.2%)"
    return -1


# "wall" (elapsed) or "cpu" (the CPU seconds the run used, user + system: on a shared machine, what the other
# processes take from a run shows in its elapsed time, not in its CPU time). Set by --clock.
CLOCK = "wall"


def best_time(argv: list[str], repeat: int) -> float:
    best = float("inf")
    with open(os.devnull, "wb") as null:
        for _ in range(repeat):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(argv, stdout=null, stderr=subprocess.DEVNULL, check=True)
            elapsed = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
            best = min(best, cpu if CLOCK == "cpu" else elapsed)
    return best


def rust_reader(explicit: Path | None) -> Path | None:
    """--rust-reader, else the cached build of tests/peers/tracepoint-rs (built if cargo is there)."""
    if explicit is not None:
        return explicit
    done = subprocess.run([str(ROOT / "scripts/peers/build-rust.sh"), "tracepoint-rs"], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        print(f"the Rust reader is not built (scripts/peers/build-rust.sh tracepoint-rs): {done.stderr[-500:]}",
              file=sys.stderr)
        return None
    return Path(done.stdout.strip().splitlines()[-1]) / "tracepoint-json"


def eventheader_bench(args: argparse.Namespace, tmp: Path, rust: Path | None) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from eventheader_recording import eventheader_only

    for src in args.eh_recording or [EH_RECORDING, OTEL_RECORDING, CORPUS_RECORDING]:
        if not src.exists():
            print(f"\nEventHeader: {src} is not there; skipped")
            continue
        big = tmp / f"eh-{src.stem}-big.perf.data"
        # Only the EventHeader samples (the corpus recording has tracefs samples too), repeated.
        n = eventheader_only(src, big, args.eh_events)
        print(f"\nEventHeader: the EventHeader samples of {src} repeated to {n} ({big.stat().st_size / 1e6:.1f} MB)")
        dyntel = [sys.executable, "-m", "dyntel.cli", "decode", "--format", "jsonl", str(big)]
        t_dyntel = best_time(dyntel, args.repeat)
        print(f"dyntel decode --format jsonl      {t_dyntel:7.3f} s  {n / t_dyntel / 1e6:6.3f} M events/s")
        if rust is not None:
            t_rust = best_time([str(rust), "--order", "file", str(big)], args.repeat)
            print(f"Rust reader (tracepoint_decode)   {t_rust:7.3f} s  {n / t_rust / 1e6:6.3f} M events/s")
            print(f"ratio (Rust reader time / dyntel time): {t_rust / t_dyntel:.2f}  (target >= 1.0)")
        if args.perf_decode is not None:
            # perf-decode sorts each round's samples by time: dyntel does the same with --order round.
            t_round = best_time([*dyntel, "--order", "round"], args.repeat)
            t_pd = best_time([str(args.perf_decode), str(big)], args.repeat)
            print(f"dyntel decode ... --order round   {t_round:7.3f} s  {n / t_round / 1e6:6.3f} M events/s")
            print(f"perf-decode (C++)                 {t_pd:7.3f} s  {n / t_pd / 1e6:6.3f} M events/s")
            print(f"ratio (perf-decode time / dyntel time): {t_pd / t_round:.2f}  (target >= 1.0)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="keep the recording here (and reuse it if it exists)")
    ap.add_argument("--profile", action="store_true", help="also print a cProfile of one dyntel run")
    ap.add_argument("--rust-reader", type=Path, help="tracepoint-json of tests/peers/tracepoint-rs (default: the "
                                                     "peer cache)")
    ap.add_argument("--perf-decode", type=Path, help="perf-decode (C++, built from microsoft/LinuxTracepoints)")
    ap.add_argument("--eh-recording", type=Path, action="append",
                    help="file-mode recording whose EventHeader samples to use; repeatable (default: the writer's and "
                         "the OpenTelemetry Rust exporters' VM recordings, and the corpus perf.data)")
    ap.add_argument("--eh-events", type=int, default=200_000, help="EventHeader samples to decode")
    ap.add_argument("--only", choices=["tracefs", "eventheader"], help="run one of the two parts")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="time each run by elapsed time (default) or by the CPU time it used (user + system), which "
                         "a loaded machine disturbs less")
    args = ap.parse_args()
    global CLOCK
    CLOCK = args.clock
    rust = rust_reader(args.rust_reader)
    if args.only == "eventheader":
        tmp = Path(tempfile.mkdtemp(prefix="dyntel-bench-"))
        try:
            eventheader_bench(args, tmp, rust)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return 0
    if shutil.which("perf") is None:
        print("perf is not installed (Debian: apt-get install linux-perf)", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="dyntel-bench-"))
    data = args.keep or tmp / "sys_enter.perf.data"
    try:
        if not data.exists():
            record(data, args.samples)
        n = count_samples(data)
        dyntel = [sys.executable, "-m", "dyntel.cli", "decode", "--format", "jsonl", str(data)]
        perf = ["perf", "script", "-i", str(data)]
        t_perf = best_time(perf, args.repeat)
        t_dyntel = best_time(dyntel, args.repeat)
        # The pure-Python decoder (what runs where the native writer declines: EventHeader events, pipe mode,
        # big-endian files, bad records), for comparison; one run is enough to show its order of magnitude.
        t_python = best_time([*dyntel, "--no-native"], 1)
        print(f"recording: {data} ({data.stat().st_size / 1e6:.1f} MB, {n} samples)")
        print(f"perf script                       {t_perf:7.3f} s  {n / t_perf / 1e6:6.3f} M samples/s")
        print(f"dyntel decode --format jsonl      {t_dyntel:7.3f} s  {n / t_dyntel / 1e6:6.3f} M samples/s")
        print(f"  same, --no-native (pure Python) {t_python:7.3f} s  {n / t_python / 1e6:6.3f} M samples/s")
        print(f"ratio (perf script time / dyntel time): {t_perf / t_dyntel:.2f}  (target >= 1.0)")
        print(f"ratio without the native writer:        {t_perf / t_python:.2f}")
        if rust is not None:
            try:
                t_rust = best_time([str(rust), "--order", "file", str(data)], args.repeat)
            except subprocess.CalledProcessError:
                # tracepoint_perf cannot tell which event a sample is without PERF_SAMPLE_ID/IDENTIFIER, which perf
                # leaves out of a one-event recording like this one.
                print("Rust reader (tracepoint_decode)   cannot read this recording (no sample ids)")
            else:
                print(f"Rust reader (tracepoint_decode)   {t_rust:7.3f} s  {n / t_rust / 1e6:6.3f} M samples/s")
                print(f"ratio (Rust reader time / dyntel time): {t_rust / t_dyntel:.2f}")
        if args.only is None:
            eventheader_bench(args, tmp, rust)
        if args.profile:
            subprocess.run([sys.executable, "-m", "cProfile", "-s", "tottime", "-m", "dyntel.cli", "decode",
                            "--format", "jsonl", "-o", os.devnull, str(data)], check=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
