"""Capturing a live process: `dyntel action dump` against gcore, each run as a process and each writing every
mapping of the target (dyntel `--memory all`; gcore with the target's coredump_filter set to take every kind), then
dyntel's smaller scopes and the minidump writer, and stack capture, on tests/capture_target.py holding 100 MB and
1 GB of written memory.

For each writer: the wall time of the whole capture, the file's size, and the target's pause as the target itself
saw it: the largest gap between its 1 ms heartbeats during the capture (a heartbeat thread that is stopped cannot
beat). dyntel's own measure of the stop-to-resume time is shown beside it. Medians of --repeat runs, the writers
taking turns after a warm-up round. Dumps go to a temporary folder (--dir) and are deleted. Needs root (ptrace) and
gdb for the gcore rows.

    python benchmarks/capture.py                    # 100 MB and 1 GB, 3 runs each
    python benchmarks/capture.py --sizes 100 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support import CaptureTarget  # noqa: E402

# Every mapping in gcore's core, as in dyntel's `--memory all`: gdb honours the target's coredump_filter, whose
# default (0x33) leaves out file-backed mappings; bits 0-8 set take every kind, so both sides write the same memory.
COREDUMP_FILTER_ALL = "0x1ff"


@dataclass
class Run:
    seconds: float
    size: int
    gap_ms: float  # the target's largest heartbeat gap
    pause_ms: float | None  # the writer's own stop-to-resume figure, when it has one


def _gap(target: CaptureTarget) -> float:
    # The heartbeat thread records a gap when it next wakes after the capture: give it that moment, or a report
    # asked for at once can miss the very gap being measured.
    time.sleep(0.03)
    return float(target.heartbeat()["max_gap_ms"])  # type: ignore[arg-type]


def _dump_action(fmt: str, memory: str) -> Callable[[CaptureTarget, Path], Run]:
    """`dyntel action dump` as a process, as a person or a script runs it beside gcore: interpreter start-up,
    imports, /proc read before the stop, the guarded file and the artifact store are all in the time, as gdb's
    start-up is in gcore's."""

    def dump(target: CaptureTarget, folder: Path) -> Run:
        argv = [sys.executable, "-m", "dyntel.cli", "action", "dump", "--pid", str(target.pid), "--format", fmt,
                "--memory", memory, "--dir", str(folder), "--max-total", "100GB", "--json"]
        target.mark()
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)
        seconds = time.perf_counter() - start
        gap = _gap(target)
        if proc.returncode != 0:
            raise RuntimeError(f"dyntel action dump exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
        detail = json.loads(proc.stdout)
        detail = detail.get("detail", detail)
        Path(detail["path"]).unlink()
        return Run(seconds, int(detail["size"]), gap, float(detail["pause_ms"]))

    return dump


def gcore(target: CaptureTarget, folder: Path) -> Run:
    Path(f"/proc/{target.pid}/coredump_filter").write_text(COREDUMP_FILTER_ALL)
    prefix = folder / "gcore"
    target.mark()
    start = time.perf_counter()
    subprocess.run(["gcore", "-o", str(prefix), str(target.pid)], check=True, capture_output=True)
    seconds = time.perf_counter() - start
    gap = _gap(target)
    path = Path(f"{prefix}.{target.pid}")
    size = path.stat().st_size
    path.unlink()
    return Run(seconds, size, gap, None)


def _stacks() -> Callable[[CaptureTarget, Path], Run] | None:
    try:
        from dyntel.capture.stacks import capture_stacks
    except ImportError:
        return None

    def stacks(target: CaptureTarget, folder: Path) -> Run:
        """20 captures; the pause is the p99 (of 20: the largest but one) of the per-capture heartbeat gaps."""
        runs = []
        for _ in range(20):
            target.mark()
            start = time.perf_counter()
            capture_stacks(target.pid)
            runs.append((time.perf_counter() - start, _gap(target)))
        gaps = sorted(g for _, g in runs)
        return Run(statistics.median(s for s, _ in runs), 0, gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))], None)

    return stacks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1024], help="target memory, MB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where dumps are written (default: the temp folder)")
    args = parser.parse_args()

    # The first two rows do the same work: a process each, every mapping of the target in an ELF core, one PT_LOAD
    # per mapping. Their file sizes differ by the target's inaccessible (PROT_NONE) reservations, such as malloc's
    # 64 MB per-arena reserves: gcore fills them with zeros, dyntel records them with no file content (readelf -l
    # shows the same segments and the same readable bytes). The rows after them are dyntel's smaller scopes.
    writers: list[tuple[str, Callable[[CaptureTarget, Path], Run]]] = [
        ("dyntel core all", _dump_action("core", "all"))]
    if shutil.which("gcore"):
        writers.append(("gcore (filter all)", gcore))
    writers += [("dyntel core writable", _dump_action("core", "writable")),
                ("dyntel minidump", _dump_action("minidump", "writable")),
                ("dyntel minidump stk", _dump_action("minidump", "stacks"))]
    stacks = _stacks()
    if stacks is not None:
        writers.append(("dyntel stacks (x20)", stacks))

    print(f"{'target':>8} {'writer':<20} {'time s':>8} {'size MB':>9} {'pause ms':>9} {'stopped ms':>11}")
    for size_mb in args.sizes:
        with CaptureTarget(alloc_mb=size_mb) as target, tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            target.mark()
            time.sleep(0.2)
            idle = _gap(target)
            print(f"{size_mb:>6}MB {'(idle heartbeat)':<20} {'':>8} {'':>9} {idle:>9.1f}")
            # Writers take turns, after one unmeasured round: the first GB written to a cold page cache costs twice
            # what later ones do, whoever writes it.
            results: dict[str, list[Run]] = {name: [] for name, _ in writers}
            failed: dict[str, str] = {}
            for round_number in range(args.repeat + 1):
                for name, writer in writers:
                    if name in failed:
                        continue
                    try:
                        run = writer(target, Path(tmp))
                    except Exception as e:  # a writer that fails is reported, the table goes on
                        failed[name] = f"{type(e).__name__}: {e}"
                        continue
                    if round_number:
                        results[name].append(run)
            for name, _ in writers:
                runs = results[name]
                if name in failed:
                    print(f"{size_mb:>6}MB {name:<20} failed: {failed[name]}")
                    continue
                pauses = [r.pause_ms for r in runs if r.pause_ms is not None]
                stopped = f"{statistics.median(pauses):>11.1f}" if pauses else f"{'-':>11}"
                size = statistics.median(r.size for r in runs) / 1e6
                print(f"{size_mb:>6}MB {name:<20} {statistics.median(r.seconds for r in runs):>8.2f} "
                      f"{size:>9.1f} {statistics.median(r.gap_ms for r in runs):>9.1f} {stopped}", flush=True)


if __name__ == "__main__":
    main()
