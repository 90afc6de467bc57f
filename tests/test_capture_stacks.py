"""dyntel.capture.stacks against real processes: tests/capture_target.py (threads in known functions), `sleep`,
processes that exit mid-capture. Needs ptrace on children (root or Yama scope <= 1), eu-stack and py-spy."""

from __future__ import annotations

import ctypes
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support import ROOT, CaptureTarget, deadline

from dyntel.capture import cpython
from dyntel.capture.errors import CaptureError, ProcessGone
from dyntel.capture.stacks import Frame, StackReport, capture_stacks, format_text, report_json, symbolize

READ_NAMES = {"read", "__libc_read", "__GI___libc_read", "__read"}
PERF_CONTEXT_USER = 2**64 - 512


@pytest.fixture(scope="module")
def target() -> Iterator[CaptureTarget]:
    with CaptureTarget() as t:
        yield t


@pytest.fixture(scope="module")
def report(target: CaptureTarget) -> StackReport:
    with deadline(60):
        return capture_stacks(target.pid)


def _threads(target: CaptureTarget) -> list[dict[str, object]]:
    threads = target.info["threads"]
    assert isinstance(threads, list)
    return threads


def _is_libc(frame: Frame) -> bool:
    return frame.module is not None and os.path.basename(frame.module) == "libc.so.6"


def test_every_thread_has_its_python_function_and_native_frames(target: CaptureTarget, report: StackReport) -> None:
    assert report.errors == []
    assert report.python_version is not None and report.python_version.startswith(f"{sys.version_info[0]}.")
    by_tid = {t.tid: t for t in report.threads}
    assert set(by_tid) >= {int(tid) for tid in os.listdir(f"/proc/{target.pid}/task")}
    for known in _threads(target):
        stack = by_tid[int(known["tid"])]  # type: ignore[call-overload]
        functions = [f.symbol for f in stack.python]
        assert known["function"] in functions, (known, functions)
        assert stack.python_name == known["name"]
        assert stack.native, f"no native frames for {known}"
        assert all(f.kind == "python" and f.file and f.line for f in stack.python)
    reader = by_tid[int(target.info["reader_tid"])]  # type: ignore[call-overload]
    top = [f for f in reader.native[:3] if f.symbol in READ_NAMES and _is_libc(f)]
    assert top, [(f.symbol, f.module) for f in reader.native[:3]]
    assert top[0].offset is not None and top[0].offset > 0
    assert reader.python[0].symbol == "reader_blocked"


def test_native_frames_are_named_deep_into_the_interpreter(report: StackReport) -> None:
    # The eval loop appears in every Python thread's native stack: the unwind went through libpython's frames.
    for stack in report.threads:
        symbols = [f.symbol for f in stack.native]
        assert any(s and "EvalFrame" in s for s in symbols), symbols
        assert all(f.address is not None and f.address > 0 for f in stack.native)


def test_repeated_captures_keep_the_pause_short(target: CaptureTarget) -> None:
    with deadline(120):
        target.mark()
        durations = []
        for _ in range(20):
            started = time.perf_counter()
            capture_stacks(target.pid)
            durations.append((time.perf_counter() - started) * 1000)
        beat = target.heartbeat()
    p99 = float(beat["p99_gap_ms"]) - 1.0  # type: ignore[arg-type]
    worst = float(beat["max_gap_ms"]) - 1.0  # type: ignore[arg-type]
    print(f"\n20 captures: {beat['beats']} beats, heartbeat p99 pause {p99:.1f} ms, max {worst:.1f} ms; "
          f"capture median {sorted(durations)[10]:.1f} ms, max {max(durations):.1f} ms")
    assert int(beat["beats"]) > 0  # type: ignore[call-overload]
    # How long the captures pause the target (p99, max) is a figure of benchmarks/capture.py, not asserted here.
    assert target.proc.poll() is None


def test_a_process_that_is_not_python_gives_native_frames_only() -> None:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        time.sleep(0.2)
        with deadline(30):
            report = capture_stacks(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert report.errors == []
    assert report.python_version is None
    assert len(report.threads) == 1 and report.threads[0].tid == proc.pid
    stack = report.threads[0]
    assert stack.python == [] and stack.python_name is None
    assert any(f.symbol and "nanosleep" in f.symbol and _is_libc(f) for f in stack.native), stack.native
    assert "sleep" in report.command


def test_python_frames_asked_of_a_non_python_process_are_an_error_beside_the_native_frames() -> None:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        time.sleep(0.2)
        report = capture_stacks(proc.pid, python=True)
    finally:
        proc.kill()
        proc.wait()
    assert any(e.startswith("python frames:") for e in report.errors), report.errors
    assert report.threads[0].native


@pytest.fixture
def helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The paths that start helper programs: eu-stack (libdw not loadable) and py-spy (a CPython version that
    dyntel.capture.cpython does not read)."""
    monkeypatch.setenv("DYNTEL_LIBDW", "/nonexistent/libdw.so.1")
    monkeypatch.setattr(cpython, "layout_for", lambda version: None)


def test_missing_py_spy_is_an_error_entry_and_native_frames_still_come(target: CaptureTarget, helpers: None,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNTEL_PY_SPY", "/nonexistent/py-spy")
    report = capture_stacks(target.pid)
    assert len(report.errors) == 2 and "libdw" in report.errors[0]
    assert "py-spy" in report.errors[1] and "DYNTEL_PY_SPY" in report.errors[1]
    assert all(t.python == [] for t in report.threads)
    assert all(t.native for t in report.threads)


def test_in_process_needs_neither_helper(target: CaptureTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNTEL_PY_SPY", "/nonexistent/py-spy")
    monkeypatch.setenv("DYNTEL_EU_STACK", "/nonexistent/eu-stack")
    report = capture_stacks(target.pid)
    assert report.errors == [] and report.pause_ms is not None
    assert all(t.python and t.native for t in report.threads)


def test_symbolize_names_libc_read_as_the_dynamic_linker_resolves_it() -> None:
    libc = ctypes.CDLL("libc.so.6")
    read = ctypes.cast(libc.read, ctypes.c_void_p).value
    sleep = ctypes.cast(libc.clock_nanosleep, ctypes.c_void_p).value
    assert read is not None and sleep is not None
    frames = symbolize(os.getpid(), [PERF_CONTEXT_USER, read + 4, sleep + 16])
    assert len(frames) == 2
    assert frames[0].symbol in READ_NAMES and _is_libc(frames[0]) and frames[0].offset == 4
    assert frames[0].address == read + 4
    assert frames[1].symbol is not None and "clock_nanosleep" in frames[1].symbol and frames[1].offset == 16


def test_symbolize_agrees_with_eu_addr2line_on_the_targets_stack(target: CaptureTarget) -> None:
    reader = int(target.info["reader_tid"])  # type: ignore[call-overload]
    with deadline(30):
        out = subprocess.run(["eu-stack", "-q", "-p", str(target.pid)], capture_output=True, text=True,
                             timeout=20).stdout
    block = out.split(f"TID {reader}:")[1].split("TID ")[0]
    pcs = [int(m, 16) for m in re.findall(r"^#\d+\s+0x([0-9a-f]+)", block, re.M)][:6]
    assert len(pcs) >= 3
    # eu-addr2line -S names each pc "symbol+0xoffset" from the same ELF tables, by a different program.
    named = subprocess.run(["eu-addr2line", f"--pid={target.pid}", "-S", *[hex(pc) for pc in pcs]],
                           capture_output=True, text=True, timeout=20).stdout
    expected = re.findall(r"^(\S+?)\+0x([0-9a-f]+)", named, re.M)
    assert len(expected) >= 3
    frames = symbolize(target.pid, [pcs[0]])
    assert frames[0].symbol in READ_NAMES and _is_libc(frames[0])
    assert frames[0].offset == int(expected[0][1], 16)
    # The rest are return addresses, whose lookup (not offset) is made at pc - 1; as activations, each alone:
    for pc, (name, offset) in zip(pcs[1:3], expected[1:3], strict=True):
        frame = symbolize(target.pid, [pc])[0]
        assert (frame.symbol, frame.offset) == (name, int(offset, 16))
        assert frame.module is not None and frame.address == pc


def test_symbolize_leaves_unmapped_addresses_bare() -> None:
    frames = symbolize(os.getpid(), [0x10])
    assert frames == [Frame("native", 0x10, None, None, None, None, None)]


def test_callchain_is_symbolized_into_the_report(target: CaptureTarget) -> None:
    libc = ctypes.CDLL("libc.so.6")
    read = ctypes.cast(libc.read, ctypes.c_void_p).value
    assert read is not None
    # The target maps the same libc.so.6, at its own address: find it from the target's own maps.
    ours = _libc_base(os.getpid())
    theirs = _libc_base(target.pid)
    report = capture_stacks(target.pid, native=False, python=False, callchain=[read - ours + theirs + 2])
    assert report.callchain is not None and report.callchain[0].symbol in READ_NAMES
    assert report.callchain[0].offset == 2
    assert "Event call chain:" in format_text(report)


def _libc_base(pid: int) -> int:
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            # Not writable: the loader's mapping, not a copy of the file that libdw (the stacks unwinder, in this
            # process) mapped to read the target's libc.
            if line.rstrip().endswith("/libc.so.6") and line.split()[2] == "00000000" and line.split()[1][1] != "w":
                return int(line.split("-")[0], 16)
    raise AssertionError(f"no libc.so.6 in {pid}'s maps")


def test_text_and_json(target: CaptureTarget, report: StackReport) -> None:
    text = format_text(report)
    for known in _threads(target):
        assert str(known["function"]) in text
        assert f"Thread {known['tid']}" in text
    assert re.search(r"\bread\+0x[0-9a-f]+ in \S*libc\.so\.6", text), text
    data = json.loads(json.dumps(report_json(report)))
    assert data["pid"] == target.pid and len(data["threads"]) == len(report.threads)
    first = data["threads"][0]["native"][0]
    assert first["kind"] == "native" and first["address"].startswith("0x") and first["module"]


def test_a_process_that_is_gone_is_process_gone() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(ProcessGone):
        capture_stacks(proc.pid)


def test_a_zombie_is_process_gone() -> None:
    proc = subprocess.Popen(["true"])
    time.sleep(0.2)  # exited, not yet reaped: /proc/PID is there, its state Z
    try:
        with pytest.raises(ProcessGone):
            capture_stacks(proc.pid)
    finally:
        proc.wait()


def test_a_process_that_exits_during_capture_is_process_gone_not_a_hang() -> None:
    # Exits 50-450 ms after start while captures run back to back: some land mid-capture.
    outcomes: dict[str, int] = {}
    with deadline(120):
        for i in range(10):
            proc = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({0.05 + 0.04 * i})"])
            try:
                while True:
                    try:
                        capture_stacks(proc.pid, timeout=10)
                        outcomes["captured"] = outcomes.get("captured", 0) + 1
                    except ProcessGone:
                        outcomes["gone"] = outcomes.get("gone", 0) + 1
                        break
            finally:
                proc.kill()
                proc.wait()
    print(f"\nexit during capture: {outcomes}")
    assert outcomes["gone"] == 10


def test_a_timeout_kills_the_helper_names_the_timeout_and_leaves_the_target_running(target: CaptureTarget,
                                                                                    helpers: None) -> None:
    # A capture takes ~15 ms, nearly all of it py-spy then eu-stack: timeouts of 1..20 ms cut one of them short.
    messages = []
    with deadline(60):
        for ms in range(1, 21):
            try:
                capture_stacks(target.pid, timeout=ms / 1000)
            except CaptureError as e:
                assert not isinstance(e, ProcessGone)
                messages.append(str(e))
        print(f"\n{len(messages)} of 20 timed out; {sum('killed after' in m for m in messages)} killed a helper")
        assert messages and all("timeout" in m for m in messages), messages
        assert any("killed after" in m for m in messages), messages
        time.sleep(0.05)
        with open(f"/proc/{target.pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        assert state not in ("T", "t"), state
        target.mark()
        target.wait_beats(20)
        # A complete capture still works afterwards: nothing was left attached.
        assert [e for e in capture_stacks(target.pid).errors if "libdw" not in e] == []


def test_missing_libdw_and_eu_stack_leaves_python_frames_or_says_what_to_install(
        target: CaptureTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNTEL_LIBDW", "/nonexistent/libdw.so.1")
    monkeypatch.setenv("DYNTEL_EU_STACK", "/nonexistent/eu-stack")
    report = capture_stacks(target.pid)
    assert len(report.errors) == 2, report.errors
    assert "libdw.so.1 could not be loaded" in report.errors[0] and "eu-stack" in report.errors[0]
    assert "elfutils" in report.errors[1]
    assert all(t.native == [] for t in report.threads)
    assert {t.python[0].symbol for t in report.threads} >= {"reader_blocked", "main_loop"}
    proc = subprocess.Popen(["sleep", "60"])
    try:
        time.sleep(0.1)
        with pytest.raises(CaptureError, match="install elfutils"):
            capture_stacks(proc.pid)
    finally:
        proc.kill()
        proc.wait()


_EU_FRAME = re.compile(r"^#\d+\s+0x([0-9a-f]+)( - 1)?\s*(\S*)")


def _eu_stack_frames(pid: int) -> dict[int, list[tuple[int, bool, str | None]]]:
    """eu-stack's own unwind and names: {tid: [(pc, is a return address, symbol or None)]}."""
    out = subprocess.run(["eu-stack", "-a", "-p", str(pid)], capture_output=True, text=True, timeout=20).stdout
    threads: dict[int, list[tuple[int, bool, str | None]]] = {}
    current: list[tuple[int, bool, str | None]] | None = None
    for line in out.splitlines():
        if line.startswith("TID "):
            current = threads.setdefault(int(line[4:].rstrip(":")), [])
        match = _EU_FRAME.match(line)
        if match and current is not None:
            current.append((int(match.group(1), 16), match.group(2) is not None, match.group(3) or None))
    return threads


def _same_name(theirs: str, ours: str | None) -> bool:
    # eu-stack prints the versioned name (__libc_start_main@@GLIBC_2.34); for two aliases of one address
    # (__clone3, clone3) each tool picks its own.
    return ours is not None and theirs.split("@")[0].lstrip("_") == ours.lstrip("_")


@pytest.mark.parametrize("which", ["python target", "bash"])
def test_in_process_unwind_agrees_with_eu_stack_frame_for_frame(target: CaptureTarget, which: str) -> None:
    """The peer: eu-stack's unwind of the same live process, before and after ours. A thread whose stack eu-stack
    saw change between its two runs is not compared (the heartbeat thread wakes every ms)."""
    proc = subprocess.Popen(["bash", "-c", "sleep 60; true"]) if which == "bash" else None
    try:
        pid = target.pid if proc is None else proc.pid
        time.sleep(0.2)
        with deadline(60):
            before = _eu_stack_frames(pid)
            report = capture_stacks(pid, python=False)
            after = _eu_stack_frames(pid)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
    assert report.errors == [] and report.pause_ms is not None
    ours = {t.tid: t.native for t in report.threads}
    compared = 0
    for tid, frames in before.items():
        if after.get(tid) != frames:
            continue
        compared += 1
        mine = ours[tid]
        assert [f.address for f in mine] == [pc for pc, _, _ in frames], tid
        named = [(name, f.symbol) for (_, _, name), f in zip(frames, mine, strict=True) if name]
        assert named and all(_same_name(theirs, mine) for theirs, mine in named), named
    assert compared >= (1 if proc is not None else 3)


def test_without_libdw_eu_stack_unwinds_and_the_report_says_so(target: CaptureTarget,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    in_process = capture_stacks(target.pid, python=False)
    monkeypatch.setenv("DYNTEL_LIBDW", "/nonexistent/libdw.so.1")
    fallback = capture_stacks(target.pid, python=False)
    assert len(fallback.errors) == 1 and "libdw.so.1 could not be loaded" in fallback.errors[0]
    assert "eu-stack" in fallback.errors[0] and fallback.pause_ms is None
    reader = int(target.info["reader_tid"])  # type: ignore[call-overload]
    mine = next(t for t in in_process.threads if t.tid == reader)
    theirs = next(t for t in fallback.threads if t.tid == reader)
    assert [f.symbol for f in mine.native] == [f.symbol for f in theirs.native]


def test_another_users_process_with_the_deployed_capabilities_only(target: CaptureTarget) -> None:
    """dyntel as uid nobody with CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (docs/deploy.md's set for captures, no
    CAP_KILL) gets the same stacks of a root process as root does: libdw must not ask kill(tid, 0) first."""
    if os.geteuid() != 0:
        pytest.skip("needs root to start a capture as another user with chosen capabilities")
    caps = "+sys_ptrace,+dac_read_search"
    code = ("import json, sys\nfrom dyntel.capture.stacks import capture_stacks, report_json\n"
            "print(json.dumps(report_json(capture_stacks(int(sys.argv[1])))))\n")
    with deadline(60):
        done = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                               f"--inh-caps=-all,{caps}", f"--ambient-caps=-all,{caps}", f"--bounding-set=-all,{caps}",
                               sys.executable, "-c", code, str(target.pid)],
                              capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stderr
        theirs = json.loads(done.stdout)
        ours = report_json(capture_stacks(target.pid))
    assert theirs["errors"] == []
    assert all(t["native"] and t["python"] for t in theirs["threads"])
    reader = int(target.info["reader_tid"])  # type: ignore[call-overload]

    def symbols(report: dict[str, Any], kind: str) -> list[str]:
        return [f["symbol"] for f in next(t for t in report["threads"] if t["tid"] == reader)[kind]]

    assert symbols(theirs, "native") == symbols(ours, "native")
    assert symbols(theirs, "python") == symbols(ours, "python")
