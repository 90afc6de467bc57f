"""ELF cores of a real process, checked by gdb: the same threads, the known value at its address, backtraces; a
size limit that holds while the core stays valid; the target running on; and gcore on the same target."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import CaptureTarget, deadline

from dyntel.capture.elfcore import write_core
from dyntel.capture.errors import CaptureError
from dyntel.capture.procfs import read_maps
from dyntel.capture.ptrace import frozen
from dyntel.capture.regions import DumpResult, plan_regions

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (ptrace of a child is enough, gcore needs more)"),
    pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is what reads the cores (apt install gdb)"),
]


@pytest.fixture(scope="module")
def target() -> Iterator[CaptureTarget]:
    with CaptureTarget() as t:
        yield t


def _tids(target: CaptureTarget) -> set[int]:
    return {int(t["tid"]) for t in target.info["threads"]}  # type: ignore[attr-defined]


def _dump(target: CaptureTarget, path: Path, **options: object) -> DumpResult:
    with deadline(60), frozen(target.pid) as f, open(path, "wb") as out:
        return write_core(f, read_maps(target.pid), out, **options)  # type: ignore[arg-type]


def _gdb(target: CaptureTarget, core: Path, *commands: str) -> str:
    exe = os.readlink(f"/proc/{target.pid}/exe")
    args = ["gdb", "-batch", "-nx"]
    for command in commands:
        args += ["-ex", command]
    done = subprocess.run([*args, exe, str(core)], capture_output=True, text=True, timeout=120, check=False)
    assert "not a core dump" not in done.stderr and "format not recognized" not in done.stderr, done.stderr
    return done.stdout + done.stderr


def _lwps(gdb_output: str) -> set[int]:
    return {int(m) for m in re.findall(r"^\*?\s+\d+\s+(?:Thread 0x[0-9a-f]+ \()?LWP (\d+)", gdb_output, re.M)}


def _magic_seen(target: CaptureTarget, gdb_output: str) -> int | None:
    address = int(target.info["magic_addr"])  # type: ignore[call-overload]
    found = re.search(rf"^0x0*{address:x}[^:]*:\s+0x([0-9a-f]+)", gdb_output, re.M)
    return int(found.group(1), 16) if found else None


def test_gdb_reads_the_core(target: CaptureTarget, tmp_path: Path) -> None:
    core = tmp_path / "core"
    target.mark()
    result = _dump(target, core)
    assert result.size == core.stat().st_size
    assert not result.truncated and result.threads == 5 and result.skipped_regions == 0
    assert result.memory_bytes > 0 and result.unreadable_bytes == 0
    reader = int(target.info["reader_tid"])  # type: ignore[call-overload]
    out = _gdb(target, core, "info threads", f"x/gx {target.info['magic_addr']}", "thread apply all bt 2")
    assert _lwps(out) == _tids(target), out
    assert _magic_seen(target, out) == target.info["magic_value"], out
    # Registers and stacks are right: the reader thread's backtrace starts in libc's read.
    reader_bt = re.search(rf"\(LWP {reader}\)\):\n#0 [^\n]*\bread\b", out)
    assert reader_bt, out
    target.mark()
    target.wait_beats(50)


def test_truncated_core_stays_within_max_size_and_valid(target: CaptureTarget, tmp_path: Path) -> None:
    full = _dump(target, tmp_path / "full")
    assert full.size > 4 << 20
    core = tmp_path / "small"
    max_size = 1 << 20
    result = _dump(target, core, max_size=max_size)
    assert result.truncated and result.skipped_regions > 0
    assert result.size == core.stat().st_size <= max_size
    out = _gdb(target, core, "info threads", "bt 1")
    assert _lwps(out) == _tids(target), out
    assert "#0 " in out


def test_max_size_below_the_headers_is_refused(target: CaptureTarget, tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="too small"):
        _dump(target, tmp_path / "tiny", max_size=1000)
    target.heartbeat()  # the freeze ended despite the error


def test_stacks_only_core(target: CaptureTarget, tmp_path: Path) -> None:
    core = tmp_path / "stacks"
    result = _dump(target, core, memory="stacks")
    assert not result.truncated and result.regions <= 5
    out = _gdb(target, core, "info threads", "bt 1")
    assert _lwps(out) == _tids(target), out


def test_plan_keeps_stacks_first_and_never_overlaps(target: CaptureTarget) -> None:
    with deadline(60), frozen(target.pid) as f:
        maps = read_maps(target.pid)
        stacks, _ = plan_regions(f, maps, "stacks", None)
        writable, truncated = plan_regions(f, maps, "writable", None)
        everything, _ = plan_regions(f, maps, "all", None)
        budget = sum(r.size for r in stacks) + 100_000
        small, small_truncated = plan_regions(f, maps, "writable", budget)
        sps = [t.regs["rsp"] for t in f.threads]
    assert not truncated and small_truncated
    for plan in (stacks, writable, everything, small):
        for a, b in itertools.pairwise(plan):
            assert a.end <= b.start
    # Every thread's stack (from below its rsp) is in every plan, the truncated one included.
    for sp in sps:
        for plan in (stacks, writable, small):
            assert any(r.start <= sp - 128 and sp < r.end for r in plan)
    assert sum(r.size for r in small) <= budget
    assert sum(r.size for r in stacks) < sum(r.size for r in writable) < sum(r.size for r in everything)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("gcore") is None, reason="gcore (gdb) not installed")
def test_gcore_agrees(target: CaptureTarget, tmp_path: Path) -> None:
    """gcore reads the same process: the same threads and value. (Which pauses the target longer is measured by
    benchmarks/capture.py, not asserted here: a test's timing depends on the machine's load.)"""
    result = _dump(target, tmp_path / "ours")
    subprocess.run(["gcore", "-o", str(tmp_path / "gcore"), str(target.pid)], capture_output=True, check=True,
                   timeout=120)
    gcore_core = tmp_path / f"gcore.{target.pid}"
    ours = _gdb(target, tmp_path / "ours", "info threads", f"x/gx {target.info['magic_addr']}")
    theirs = _gdb(target, gcore_core, "info threads", f"x/gx {target.info['magic_addr']}")
    assert _lwps(ours) == _lwps(theirs) == _tids(target)
    assert _magic_seen(target, ours) == _magic_seen(target, theirs) == target.info["magic_value"]
    assert result.size < gcore_core.stat().st_size  # gcore also saves read-only mappings
