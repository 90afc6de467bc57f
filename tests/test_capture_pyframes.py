"""dyntel.capture.cpython (Python frames read in-process) against py-spy, the peer, on the same live targets,
and its struct offsets against the interpreter running the tests. Needs ptrace on children and py-spy."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from support import ROOT, CaptureTarget, deadline

from dyntel.capture import cpython, pyframes
from dyntel.capture.procfs import read_maps
from dyntel.capture.stacks import StackReport, capture_stacks
from dyntel.capture.tool import find_tool

pytestmark = pytest.mark.skipif(cpython.layout_for(".".join(map(str, sys.version_info[:3]))) is None,
                                reason="dyntel.capture.cpython does not read this Python version (py-spy does)")


def _py_spy(pid: int) -> dict[int, tuple[str | None, list[tuple[str, str, int]]]]:
    py_spy = find_tool("py-spy", pyframes.INSTALL_HINT)
    out = subprocess.run([py_spy, "dump", "--json", "--pid", str(pid)], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return {t["os_thread_id"]: (t.get("thread_name"), [(f["name"], f["filename"], f["line"]) for f in t["frames"]])
            for t in json.loads(out)}


def _ours(report: StackReport) -> dict[int, tuple[str | None, list[tuple[str, str, int]]]]:
    return {t.tid: (t.python_name, [(f.symbol or "", f.file or "", f.line or 0) for f in t.python])
            for t in report.threads if t.python}


def _settled(pid: int) -> int:
    """The pid once its main thread waits in read(2) (syscall 0) on stdin: it printed its pid a moment earlier
    and may still be returning from print, where the two readers would catch it on different lines."""
    end = time.monotonic() + 10
    while time.monotonic() < end:
        with open(f"/proc/{pid}/syscall") as f:
            if f.read().split()[0] == "0":
                time.sleep(0.01)
                return pid
        time.sleep(0.002)
    raise AssertionError(f"process {pid} never reached read(2)")


def _agree(pid: int) -> dict[int, tuple[str | None, list[tuple[str, str, int]]]]:
    with deadline(60):
        report = capture_stacks(pid, native=False, python=True)
        theirs = _py_spy(pid)
    assert report.errors == []
    ours = _ours(report)
    assert ours == theirs
    return ours


@pytest.fixture(scope="module")
def shapes() -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "pyframes_target.py")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        yield _settled(int(proc.stdout.readline()))
    finally:
        proc.stdin.close()
        proc.kill()
        proc.wait()


def test_the_capture_target_agrees_with_py_spy() -> None:
    with CaptureTarget() as target:
        ours = _agree(_settled(target.pid))
    names = {name for name, _ in ours.values()}
    assert names == {"MainThread", "sleeper", "reader", "waiter", "heartbeat"}


def test_every_shape_of_frame_agrees_with_py_spy(shapes: int) -> None:
    ours = _agree(shapes)
    functions = {f for _, frames in ours.values() for f, _, _ in frames}
    assert {"Service.handle", "outer.<locals>.inner", "main.<locals>.<lambda>", "generator", "coroutine",
            "far_line", "ünïcödé_函数", "from_string", "recurse"} <= functions, functions
    assert "名前-θ" in {name for name, _ in ours.values()}
    deep = next(frames for _, frames in ours.values() if any(f == "recurse" for f, _, _ in frames))
    assert sum(f == "recurse" for f, _, _ in deep) == 61
    assert None in {name for name, _ in ours.values()}  # the _thread one


def test_a_busy_process_agrees_with_py_spy_on_threads_that_wait() -> None:
    # A thread that runs moves between the two reads; those that wait must agree frame for frame.
    code = ("import threading, time, os, sys\n"
            "def spin():\n    while True: sum(range(1000))\n"
            "threading.Thread(target=spin, name='spinner', daemon=True).start()\n"
            "print(os.getpid(), flush=True); sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        pid = _settled(int(proc.stdout.readline()))
        with deadline(60):
            report = capture_stacks(pid, native=False, python=True)
            theirs = _py_spy(pid)
        ours = _ours(report)
        assert set(ours) == set(theirs)
        assert ours[pid] == theirs[pid]
        spinner = next(t for t in report.threads if t.python_name == "spinner")
        assert spinner.python[-1].symbol == "Thread._bootstrap" and "spin" in [f.symbol for f in spinner.python]
    finally:
        proc.kill()
        proc.wait()


def test_the_layout_matches_this_interpreter() -> None:
    """Each offset read against this very process through the C API (ctypes), not against our own reader."""
    layout = cpython.layout_for(".".join(map(str, sys.version_info[:3])))
    assert layout is not None
    api = ctypes.pythonapi
    for fn, res, args in (("PyInterpreterState_Head", ctypes.c_void_p, []),
                          ("PyInterpreterState_ThreadHead", ctypes.c_void_p, [ctypes.c_void_p]),
                          ("PyThreadState_Get", ctypes.c_void_p, [])):
        getattr(api, fn).restype = res
        getattr(api, fn).argtypes = args
    read = cpython.reader_for(os.getpid())
    info = pyframes.detect(os.getpid(), read_maps(os.getpid()))
    # Where the dynamic linker put it. (detect's own answer can name a copy of libpython that libdw mapped into
    # this process to unwind an earlier test's target; other processes do not hold those copies.)
    runtime = ctypes.addressof(ctypes.c_char.in_dll(api, "_PyRuntime"))
    assert info.runtime is not None and info.version == ".".join(map(str, sys.version_info[:3]))
    interp = cpython.read_ptr(read, runtime + layout.runtime_interp_head)
    assert interp == api.PyInterpreterState_Head()
    assert cpython.read_ptr(read, interp + layout.interp_threads_head) == api.PyInterpreterState_ThreadHead(interp)
    assert cpython.read_ptr(read, interp + layout.interp_modules) == id(sys.modules)
    ts = api.PyThreadState_Get()
    assert cpython.read_ptr(read, ts + layout.ts_thread_id) == threading.get_ident()
    assert cpython.read_ptr(read, ts + layout.ts_native_thread_id) == threading.get_native_id()
    # This thread holds the GIL while it reads.
    assert cpython.read_ptr(read, runtime + layout.runtime_gil_last_holder) == ts
    code = test_the_layout_matches_this_interpreter.__code__
    assert type(code).__basicsize__ == layout.code_code
    assert cpython.read_ptr(read, id(code) + layout.code_qualname) == id(code.co_qualname)
    assert cpython.read_ptr(read, id(code) + layout.code_filename) == id(code.co_filename)
    assert cpython.read_ptr(read, id(code) + layout.code_linetable) == id(code.co_linetable)
    info_ = cpython.code_info(read, id(code), layout)
    assert info_ is not None and info_.firstlineno == code.co_firstlineno
    assert cpython.read_str(read, id("ünï函"), layout) == "ünï函"
    assert cpython.read_ptr(read, id(threading) + layout.module_dict) == id(threading.__dict__)


def test_line_numbers_agree_with_the_interpreter_for_every_instruction() -> None:
    """line_of against code.co_positions() (CPython's own reading of the same table), instruction by instruction,
    over this module's functions and threading's."""
    checked = 0
    for module in (sys.modules[__name__], threading, json.decoder, subprocess):
        for value in vars(module).values():
            code = getattr(value, "__code__", None)
            if code is None:
                continue
            info = cpython.CodeInfo(code.co_qualname, code.co_filename, code.co_firstlineno, 0, code.co_linetable)
            for index, (line, _, _, _) in enumerate(code.co_positions()):
                assert cpython.line_of(info, index * 2) == line, (code, index)
                checked += 1
    assert checked > 1000


COPIES = r"""
import mmap, os, sys
# Whole-file copies of the interpreter's ELF files, mapped as libdw maps the files it reads (dyntel's own
# process, or any that unwinds with elfutils, holds such copies): below the dynamic linker's mappings.
paths = {line.split()[-1] for line in open("/proc/self/maps") if "python" in line.split()[-1]}
keep = []
for path in sorted(paths):
    with open(path, "rb") as f:
        keep.append(mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE))
def waiting_with_copies():
    print(os.getpid(), flush=True)
    sys.stdin.read()
waiting_with_copies()
"""


def test_copies_of_the_interpreters_files_in_the_target_do_not_mislead_it() -> None:
    proc = subprocess.Popen([sys.executable, "-c", COPIES], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        pid = _settled(int(proc.stdout.readline()))
        maps = read_maps(pid)
        assert any(e.offset == 0 and e.path and "python" in e.path and e.writable for e in maps)
        ours = _agree(pid)
        assert [f for f, _, _ in ours[pid][1]] == ["waiting_with_copies", "<module>"]
    finally:
        proc.kill()
        proc.wait()
