"""Decode speed: `dyntel decode --format jsonl` beside the tool a user would use instead, on the same perf.data,
in the same run, each writing its JSON (or text) to /dev/null; best of --repeat runs.

tracefs samples (default): records about 1M raw_syscalls:sys_enter samples (needs root and perf) and compares with
`perf script`; the ratio is perf script time / dyntel time (target >= 5).

    python benchmarks/decode.py [--samples 1000000] [--repeat 3] [--keep FILE] [--profile]

EventHeader samples (--eventheader): for each recording given with --from (default: the corpus's perf.data of the
reference's test providers, and every tests/data recording with EventHeader samples: the writer's, the OpenTelemetry
exporters'), a file of only its EventHeader samples repeated to --samples (benchmarks/eventheader_recording.py), then
`dyntel decode --format jsonl --order round` beside perf-decode (LinuxTracepoints' C++ tool, built by you:
--perf-decode PATH; it sorts each round by time as --order round does), and `dyntel decode --format jsonl` beside the
Rust reader on tracepoint_perf + tracepoint_decode (tests/peers/tracepoint-rs, `scripts/peers/build-rust.sh
tracepoint-rs`; --rust-reader PATH, default that build). All of them print every event as JSON text. Ratios are the
other tool's time / dyntel's (target >= 1.0).

    python benchmarks/decode.py --eventheader --perf-decode PATH [--rust-reader PATH] [--from FILE ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


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


def best_time(argv: list[str], repeat: int) -> float:
    best = float("inf")
    with open(os.devnull, "wb") as null:
        for _ in range(repeat):
            start = time.perf_counter()
            subprocess.run(argv, stdout=null, stderr=subprocess.DEVNULL, check=True)
            best = min(best, time.perf_counter() - start)
    return best


ROOT = Path(__file__).resolve().parent.parent


def _default_eventheader_sources() -> list[Path]:
    corpus = Path(os.environ.get("DYNTEL_CORPUS", ROOT.parent / "shared" / "corpus"))
    found = [corpus / "linuxtracepoints" / "perf.data"]
    found += sorted((ROOT / "tests" / "data").glob("**/*.perf.data"))
    return [p for p in found if p.exists()]


def _rust_reader() -> str | None:
    proc = subprocess.run([str(ROOT / "scripts" / "peers" / "build-rust.sh"), "--cached", "tracepoint-rs"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return None
    return str(Path(proc.stdout.strip().splitlines()[-1]) / "tracepoint-json")


def eventheader_main(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from eventheader_recording import eventheader_only

    rust = args.rust_reader or _rust_reader()
    tools: list[tuple[str, list[str], list[str]]] = []  # (name, its argv before the file, dyntel's beside it)
    dyntel = [sys.executable, "-m", "dyntel.cli", "decode", "--format", "jsonl"]
    if args.perf_decode:
        tools.append(("perf-decode (C++)", [args.perf_decode], [*dyntel, "--order", "round"]))
    if rust:
        tools.append(("Rust reader (tracepoint_decode)", [rust], dyntel))
    if not tools:
        print("nothing to compare with: give --perf-decode PATH and/or build tests/peers/tracepoint-rs",
              file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="dyntel-bench-eh-"))
    try:
        for src in args.sources or _default_eventheader_sources():
            data = tmp / (src.parent.name + "-" + src.name)
            try:
                n = eventheader_only(src, data, args.samples)
            except ValueError as e:
                print(f"{src}: skipped ({e})")
                continue
            if not n:
                continue
            print(f"\n{src}: its EventHeader samples repeated to {n} ({data.stat().st_size / 1e6:.1f} MB)")
            t_python = best_time([*dyntel, "--no-native", str(data)], 1) if args.python else None
            for name, other, ours in tools:
                t_other = best_time([*other, str(data)], args.repeat)
                t_ours = best_time([*ours, str(data)], args.repeat)
                print(f"  {name:34s} {t_other:7.3f} s  {n / t_other / 1e6:6.3f} M events/s   {' '.join(other)} FILE")
                print(f"  {'dyntel decode':34s} {t_ours:7.3f} s  {n / t_ours / 1e6:6.3f} M events/s   "
                      f"{' '.join(ours[3:])} FILE")
                print(f"  ratio ({name} time / dyntel time): {t_other / t_ours:.2f}  (target >= 1.0)")
            if t_python is not None:
                print(f"  dyntel decode --no-native (pure Python)  {t_python:7.3f} s  {n / t_python / 1e6:6.3f} M "
                      "events/s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="keep the recording here (and reuse it if it exists)")
    ap.add_argument("--profile", action="store_true", help="also print a cProfile of one dyntel run")
    ap.add_argument("--eventheader", action="store_true", help="EventHeader recordings instead (see above)")
    ap.add_argument("--from", dest="sources", type=Path, action="append", metavar="FILE",
                    help="--eventheader: a perf.data whose EventHeader samples to use (repeatable)")
    ap.add_argument("--perf-decode", metavar="PATH",
                    help="--eventheader: LinuxTracepoints' perf-decode to compare with")
    ap.add_argument("--rust-reader", metavar="PATH",
                    help="--eventheader: tracepoint-json of tests/peers/tracepoint-rs (default: its cached build)")
    ap.add_argument("--python", action="store_true", help="--eventheader: also time the pure-Python path once")
    args = ap.parse_args()
    if args.eventheader:
        return eventheader_main(args)
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
        if args.profile:
            subprocess.run([sys.executable, "-m", "cProfile", "-s", "tottime", "-m", "dyntel.cli", "decode",
                            "--format", "jsonl", "-o", os.devnull, str(data)], check=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
