"""Every thread's stack of a live process, native and (for CPython) Python, for the `stacks` action.

The capture starts no thread and no process (issue 18): the calling thread stops every thread of the target at
once (dyntel.capture.ptrace.frozen: PTRACE_SEIZE + INTERRUPT, no signal), copies the Python frame chains
(dyntel.capture.cpython, CPython 3.11) and unwinds the native stacks through libdw in this process
(dyntel.capture.libdw), then lets it go: both halves are of one instant, and the pause is measured. Naming (native
symbols from dyntel.capture.symbolize, Python code objects and thread names) happens after the target runs again.

Helpers are the fallback, started after the in-process part: py-spy for a CPython version cpython.py does not read
(it stops the process again for a few ms; see pyframes.py), eu-stack when libdw cannot be loaded (one thread at a
time; see unwind.py). The report's errors say when eu-stack stood in.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dyntel.capture import cpython, libdw, pyframes, unwind
from dyntel.capture.errors import CaptureError, NotPermitted, ProcessGone
from dyntel.capture.permissions import check, explain
from dyntel.capture.procfs import MapEntry, read_maps, read_proc, thread_ids, thread_name
from dyntel.capture.ptrace import frozen
from dyntel.capture.symbolize import PERF_CONTEXT_MIN, Location, resolve
from dyntel.capture.tool import ToolMissing, ToolTimeout, find_tool

__all__ = ["Frame", "StackReport", "ThreadStack", "capture_stacks", "format_text", "report_json", "symbolize"]

_STATES = {"R": "running", "S": "sleeping", "D": "disk-sleep", "T": "stopped", "t": "tracing-stop", "Z": "zombie",
           "X": "dead", "I": "idle"}


@dataclass(slots=True)
class Frame:
    kind: str               # "native" | "python"
    address: int | None     # native: the pc
    module: str | None      # native: library path/name; python: None
    symbol: str | None      # native: function symbol; python: function (qualified name when known)
    offset: int | None      # native: pc - symbol start
    file: str | None        # python: file name (native: source file if known)
    line: int | None


@dataclass(slots=True)
class ThreadStack:
    tid: int
    name: str                     # OS thread name (comm)
    python_name: str | None       # Python thread name ("MainThread", "Thread-1 (f)") when known
    native: list[Frame]
    python: list[Frame]           # innermost first
    state: str | None             # py-spy's gil/active/idle for Python threads, else the /proc state


@dataclass(slots=True)
class StackReport:
    pid: int
    command: str
    python_version: str | None
    threads: list[ThreadStack]
    callchain: list[Frame] | None   # the event's own call chain, symbolized, when given
    pause_ms: float | None          # how long the target was stopped, if known
    duration_ms: float
    errors: list[str]               # e.g. "python frames: ..." when one half failed but the other worked


def _stat(pid: int, tid: int | None = None) -> list[str]:
    """Fields of /proc/PID[/task/TID]/stat from the state on (field 3 is [0]); [] if gone. The command name in
    parentheses may hold spaces and parentheses itself, so split after the last ')'."""
    raw = read_proc(pid, f"task/{tid}/stat" if tid is not None else "stat").decode("utf-8", "replace")
    return raw[raw.rfind(")") + 2:].split() if ")" in raw else []


def _identity(pid: int) -> str | None:
    """The start time: tells the process we began with from a later one that was given the same pid."""
    fields = _stat(pid)
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int, identity: str | None) -> bool:
    fields = _stat(pid)
    return bool(fields) and fields[0] not in ("Z", "X") and (identity is None or fields[19] == identity)


def _gone(pid: int, during: str) -> ProcessGone:
    return ProcessGone(f"process {pid} exited (or its pid was reused) during the {during}: nothing to capture")


def _group_stopped(pid: int) -> bool:
    fields = _stat(pid)
    return bool(fields) and fields[0] == "T"


def _resume_if_left_stopped(pid: int, was_stopped: bool) -> None:
    # eu-stack attaches with PTRACE_ATTACH, which queues a SIGSTOP; a tracer killed before it detaches can leave
    # the service stopped. It was running when we came, so it must be running when we leave.
    if not was_stopped and _group_stopped(pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGCONT)


def _command(pid: int) -> str:
    argv = read_proc(pid, "cmdline").rstrip(b"\0").split(b"\0")
    text = " ".join(a.decode("utf-8", "replace") for a in argv if a)
    return text or read_proc(pid, "comm").decode("utf-8", "replace").strip()


def _native_frames(locations: Sequence[Location]) -> list[Frame]:
    return [Frame("native", loc.address, loc.module, loc.symbol, loc.offset, None, None) for loc in locations]


def symbolize(pid: int, addresses: Sequence[int]) -> list[Frame]:
    """Name each instruction address of an event's call chain (perf's PERF_SAMPLE_CALLCHAIN, innermost first).

    perf's context markers (PERF_CONTEXT_KERNEL, _USER, ...) are dropped; each other address gives one Frame.
    The first address after a marker (or the first of all) is the interrupted pc; the others are return
    addresses, looked up at address - 1. Kernel addresses are named from /proc/kallsyms when it shows them.
    """
    kept: list[int] = []
    returns: list[bool] = []
    after_marker = True
    for address in addresses:
        if address >= PERF_CONTEXT_MIN:
            after_marker = True
            continue
        kept.append(address)
        returns.append(not after_marker)
        after_marker = False
    try:
        maps = read_maps(pid)
    except ProcessGone:
        maps = []  # kernel frames can still be named; user ones stay bare addresses
    return _native_frames(resolve(pid, kept, return_addresses=returns, maps=maps))


def _remaining(deadline: float) -> float:
    return deadline - time.monotonic()


def _python_half(pid: int, deadline: float, errors: list[str]) -> dict[int, pyframes.PythonThread]:
    try:
        py_spy = find_tool("py-spy", pyframes.INSTALL_HINT)
        return pyframes.dump(py_spy, pid, _remaining(deadline))
    except ToolTimeout:
        raise
    except ToolMissing as e:
        errors.append(f"python frames: {e}")
    except CaptureError as e:
        errors.append(f"python frames: {e}")
    return {}


@dataclass(slots=True)
class _InProcess:
    """What one freeze gave: native pcs (libdw), the Python frame chains as copied (cpython.walk), the pause."""

    native: dict[int, unwind.NativeThread] | None = None
    python: list[cpython.RawThread] | None = None
    pause_ms: float | None = None


def _prepare(unwinder: libdw.Unwinder, pid: int, identity: str | None, deadline: float) -> libdw.Session:
    # A process in the middle of exec has no modules yet (its maps hold only the stack), and libdw says ENOEXEC:
    # it has no stack to show either until the new program is loaded, which takes a few ms.
    give_up = min(deadline, time.monotonic() + 0.2)
    while True:
        maps_text = read_proc(pid, "maps")
        if not maps_text:
            read_maps(pid)  # raises the error that says whether it is gone or refused
        try:
            return unwinder.prepare(pid, identity, maps_text)
        except OSError as e:
            if e.errno in (errno.ESRCH, errno.ENOENT):
                raise _gone(pid, "native unwind") from None
            if e.errno in (errno.EACCES, errno.EPERM):
                raise NotPermitted(f"{e}: dyntel reads the target's /proc/PID/auxv and ELF files to unwind it; for "
                                   "another user's process that takes CAP_DAC_READ_SEARCH (docs/deploy.md)") from None
            if e.errno != errno.ENOEXEC or time.monotonic() > give_up:
                raise CaptureError(f"native frames of process {pid}: {e}") from None
        time.sleep(0.002)


def _in_process(pid: int, identity: str | None, deadline: float, native: bool, layout: cpython.Layout | None,
                runtime: int | None, errors: list[str]) -> _InProcess:
    """Every thread stopped at once by this thread (no process or thread start), the Python frame chains copied
    and the native stacks unwound by libdw, then let go. Native is skipped (left None) when libdw cannot be loaded,
    with the reason in `errors`: the caller runs eu-stack then."""
    done = _InProcess()
    session = None
    unwinder = libdw.unwinder()
    if native:
        try:
            session = _prepare(unwinder, pid, identity, deadline)
        except libdw.LibdwMissing as e:
            errors.append(f"native frames: {e}; unwound with the eu-stack program instead (a process start)")
        except ProcessGone:
            raise
        except CaptureError as e:
            # eu-stack would meet the same refusal: the Python half is still taken, and the error reported.
            errors.append(f"native frames: {e}")
            done.native = {}
    if session is None and layout is None:
        return done
    keep = False
    try:
        with frozen(pid, timeout=max(0.001, min(2.0, _remaining(deadline))), registers=False) as stopped:
            if layout is not None and runtime is not None:
                try:
                    done.python = cpython.walk(stopped.read, runtime, layout)
                except (ValueError, struct.error, IndexError, OverflowError) as e:
                    errors.append(f"python frames: reading the interpreter's thread states: {e!r}; "
                                  "read with py-spy instead")
            said: list[str] = []
            if session is not None:
                done.native = unwinder.unwind(session, stopped.tids, said)
        done.pause_ms = stopped.pause_ns / 1e6
        errors.extend(f"native frames: {line}" for line in said[:8])
        if len(said) > 8:
            errors.append(f"native frames: {len(said) - 8} more unwind messages")
        keep = True
    finally:
        if session is not None:
            unwinder.release(session, keep=keep)
    return done


def _python_in_process(pid: int, identity: str | None, runtime: int, layout: cpython.Layout,
                       raw: list[cpython.RawThread]) -> dict[int, pyframes.PythonThread]:
    """Name the copied chains (after the target runs again), in py-spy's terms: state gil/active/idle."""
    reader = cpython.reader_for(pid)
    out: dict[int, pyframes.PythonThread] = {}
    for tid, (name, gil, frames) in cpython.name(reader, pid, identity, runtime, layout, raw).items():
        # "" until the report is put together: active or idle from /proc then, as late as can be, since a thread
        # let go by the freeze shows R for a moment on its way back into the call it was waiting in.
        out[tid] = pyframes.PythonThread(tid, name, "gil" if gil else "",
                                         [pyframes.PythonFrame(f.function, f.file, f.line) for f in frames])
    return out


def _native_with_eu_stack(pid: int, deadline: float, errors: list[str]) -> dict[int, unwind.NativeThread]:
    try:
        eu_stack = find_tool("eu-stack", unwind.INSTALL_HINT)
    except ToolMissing as e:
        errors.append(f"native frames: {e}")
        return {}
    threads, stderr, status = unwind.unwind(eu_stack, pid, _remaining(deadline))
    if status != 0 and stderr:
        # eu-stack's "No DWARF information found" and similar are per-thread and non-fatal (status 1).
        lines = stderr.splitlines()
        errors.extend(f"native frames: {line.removeprefix('eu-stack: ')}" for line in lines[:8])
        if len(lines) > 8:
            errors.append(f"native frames: {len(lines) - 8} more eu-stack messages")
        if not threads and "Operation not permitted" in stderr:
            raise NotPermitted(f"eu-stack could not attach: {explain(pid, 1)}")
    elif status != 0:
        errors.append(f"native frames: eu-stack exited with status {status} and no message")
    return threads


def capture_stacks(pid: int, *, native: bool = True, python: bool | None = None,
                   callchain: Sequence[int] | None = None, timeout: float = 10.0) -> StackReport:
    """Every thread's stack; `python` None: the Python frames too when the process is CPython.

    ProcessGone if the process is absent or exits before the capture is whole, NotPermitted (with the reason
    and the fix) if ptrace is refused, CaptureError if a helper outlives `timeout` seconds (it is killed first)
    or if no frames at all could be had. A half that fails while the other works is noted in `errors`.
    """
    identity = _identity(pid)
    try:
        return _capture(pid, identity, native, python, callchain, timeout)
    except ProcessGone:
        raise
    except CaptureError as e:
        # Whatever failed, a process that exited meanwhile is the reason (an exiting process also looks like a
        # kernel thread to permissions.check, and refuses ptrace).
        if not _alive(pid, identity):
            raise _gone(pid, "capture") from e
        raise


def _capture(pid: int, identity: str | None, native: bool, python: bool | None, callchain: Sequence[int] | None,
             timeout: float) -> StackReport:
    started = time.monotonic()
    deadline = started + timeout
    if not _alive(pid, identity):
        raise _gone(pid, "start of the capture")
    check(pid)
    was_stopped = _group_stopped(pid)
    command = _command(pid)
    maps: list[MapEntry] = read_maps(pid)
    info = pyframes.detect(pid, maps)
    want_python = info.cpython if python is None else python
    errors: list[str] = []
    py_threads: dict[int, pyframes.PythonThread] = {}
    native_threads: dict[int, unwind.NativeThread] = {}
    layout = cpython.layout_for(info.version) if want_python and info.runtime else None
    # One freeze on this worker thread: no process or thread start before the target is stopped (issue 18).
    # Only what cannot be done in-process starts a helper, afterwards: py-spy for a Python version
    # dyntel.capture.cpython does not read, eu-stack when libdw cannot be loaded.
    step = "in-process capture"
    try:
        done = _in_process(pid, identity, deadline, native, layout, info.runtime, errors)
        if done.python is not None and info.runtime is not None and layout is not None:
            try:
                py_threads = _python_in_process(pid, identity, info.runtime, layout, done.python)
            except (ValueError, struct.error, IndexError, OverflowError) as e:
                # The target's memory is not ours to trust: what does not parse is an error entry, not a crash.
                errors.append(f"python frames: naming the frames read: {e!r}")
        if done.native is not None:
            native_threads = done.native
        step = "native unwind"
        if native and done.native is None:
            native_threads = _native_with_eu_stack(pid, deadline, errors)
        step = "Python frame dump"
        if want_python and done.python is None:
            py_threads = _python_half(pid, deadline, errors)
    except ToolTimeout as e:
        _resume_if_left_stopped(pid, was_stopped)
        if not _alive(pid, identity):
            raise _gone(pid, step) from None
        raise CaptureError(f"stacks of process {pid}: {e}; raise the action's timeout, or capture with "
                           f"{'python=False' if step.startswith('Python') else 'native=False'}") from None
    except CaptureError as e:
        if isinstance(e, NotPermitted | ProcessGone) or _remaining(deadline) > 0:
            raise
        # The freeze waits at most the time the capture has left.
        raise CaptureError(f"stacks of process {pid}: the {step} ran past the capture's timeout of "
                           f"{timeout:.3g} s ({e}); raise the action's timeout") from None
    if errors:
        _resume_if_left_stopped(pid, was_stopped)
    if not _alive(pid, identity):
        raise _gone(pid, step)
    try:
        tids = thread_ids(pid)
    except ProcessGone:
        raise _gone(pid, "capture") from None
    # Threads that exited after a helper saw them still have their stacks to show.
    for tid in [*native_threads, *py_threads]:
        if tid not in tids:
            tids.append(tid)
    if native and not native_threads and not py_threads and errors:
        refused = [e for e in errors if "CAP_DAC_READ_SEARCH" in e]
        raise (NotPermitted if refused else CaptureError)(f"no stacks of process {pid}: " + "; ".join(errors))
    if native_threads:
        maps = read_maps(pid)  # a library loaded since the first read is named too
    # One lookup for every thread's pcs: the modules' paths and tables are found once, not once a thread.
    every = list(native_threads.values())
    located = resolve(pid, [pc for nt in every for pc in nt.pcs],
                      return_addresses=[r for nt in every for r in nt.return_address], maps=maps) if every else []
    named: dict[int, list[Frame]] = {}
    at = 0
    for nt in every:
        named[nt.tid] = _native_frames(located[at:at + len(nt.pcs)])
        at += len(nt.pcs)
    threads = []
    for tid in tids:
        pt = py_threads.get(tid)
        state_fields = _stat(pid, tid)
        if pt is not None and not pt.state:
            pt.state = "active" if state_fields and state_fields[0] == "R" else "idle"
        state = pt.state if pt is not None else (_STATES.get(state_fields[0], state_fields[0])
                                                 if state_fields else None)
        native_frames = named.get(tid, [])
        python_frames = ([Frame("python", None, None, f.function, None, f.file, f.line) for f in pt.frames]
                         if pt is not None else [])
        threads.append(ThreadStack(tid, thread_name(pid, tid), pt.name if pt is not None else None, native_frames,
                                   python_frames, state))
    chain = symbolize(pid, callchain) if callchain is not None else None
    return StackReport(pid, command, info.version, threads, chain, done.pause_ms,
                       (time.monotonic() - started) * 1000.0, errors)


def _frame_json(frame: Frame) -> dict[str, Any]:
    return {"kind": frame.kind, "address": None if frame.address is None else f"0x{frame.address:x}",
            "module": frame.module, "symbol": frame.symbol, "offset": frame.offset, "file": frame.file,
            "line": frame.line}


def report_json(report: StackReport) -> dict[str, Any]:
    """A JSON-ready dict. Addresses are "0x..." strings: 64-bit values lose bits as JSON numbers in most readers."""
    return {
        "pid": report.pid,
        "command": report.command,
        "python_version": report.python_version,
        "threads": [{"tid": t.tid, "name": t.name, "python_name": t.python_name, "state": t.state,
                     "python": [_frame_json(f) for f in t.python], "native": [_frame_json(f) for f in t.native]}
                    for t in report.threads],
        "callchain": None if report.callchain is None else [_frame_json(f) for f in report.callchain],
        "pause_ms": report.pause_ms,
        "duration_ms": report.duration_ms,
        "errors": list(report.errors),
    }


def _native_line(index: int, frame: Frame) -> str:
    where = f"0x{frame.address:016x}" if frame.address is not None else "?"
    name = frame.symbol or "??"
    if frame.symbol and frame.offset is not None:
        name += f"+0x{frame.offset:x}"
    module = f" in {frame.module}" if frame.module else ""
    source = f" at {frame.file}:{frame.line}" if frame.file else ""
    return f"    #{index:<3} {where} {name}{module}{source}"


def _python_line(frame: Frame) -> str:
    place = f"{frame.file}:{frame.line}" if frame.file and frame.line is not None else frame.file or "?"
    return f"    {frame.symbol or '??'} ({place})"


def format_text(report: StackReport) -> str:
    """Readable: one block a thread, Python frames (innermost first, as py-spy dump) then native (as eu-stack)."""
    pause = f"{report.pause_ms:.1f} ms" if report.pause_ms is not None else "each thread for its own unwind"
    lines = [f"Process {report.pid}: {report.command}"]
    if report.python_version:
        lines.append(f"Python v{report.python_version}")
    lines.append(f"{len(report.threads)} threads; stopped: {pause}; took {report.duration_ms:.1f} ms")
    for t in report.threads:
        label = f'Thread {t.tid} "{t.name}"' + (f" ({t.python_name})" if t.python_name else "")
        lines.append("")
        lines.append(label + (f" [{t.state}]" if t.state else ""))
        if t.python:
            lines.append("  Python:")
            lines.extend(_python_line(f) for f in t.python)
        if t.native:
            lines.append("  Native:")
            lines.extend(_native_line(i, f) for i, f in enumerate(t.native))
        if not t.python and not t.native:
            lines.append("  (no frames)")
    if report.callchain is not None:
        lines.append("")
        lines.append("Event call chain:")
        lines.extend(_native_line(i, f) for i, f in enumerate(report.callchain))
    if report.errors:
        lines.append("")
        lines.append("Errors:")
        lines.extend(f"  - {e}" for e in report.errors)
    return "\n".join(lines) + "\n"
