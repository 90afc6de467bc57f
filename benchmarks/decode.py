"""Decode speed: `dyntel decode --format jsonl` against `perf script` on the same perf.data, in the same run.

Records about 1M raw_syscalls:sys_enter samples (needs root and perf), then times each decoder writing to
/dev/null, best of --repeat runs, and prints samples/s for both and the ratio (perf script time / dyntel time;
>= 1.0 means dyntel is at least as fast).

    python benchmarks/decode.py [--samples 1000000] [--repeat 3] [--keep FILE] [--profile]
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="keep the recording here (and reuse it if it exists)")
    ap.add_argument("--profile", action="store_true", help="also print a cProfile of one dyntel run")
    args = ap.parse_args()
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
