"""Native unwinding inside dyntel's own process, through elfutils' libdw (the library eu-stack is built on).

No process is started: the worker thread that runs the capture stops the target's threads itself
(dyntel.capture.ptrace.frozen) and asks libdw to unwind each one with `assume_ptrace_stopped`, so libdw reads the
registers (PTRACE_GETREGS) and the stack (process_vm_readv) of threads this thread already holds, and neither
attaches nor detaches anything. ptrace ties a tracee to the tracer thread: the freeze and every call here must
run on one thread.

A Dwfl (the modules of one process, their ELF files and their CFI once read) is kept between captures of the
same process and re-reported only when /proc/PID/maps changed: reading the CFI is most of an unwind's cost.
libdw names nothing here: dyntel.capture.symbolize names the pcs after the target runs again, as it does for
eu-stack's output (-q).
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from dyntel.capture.unwind import MAX_FRAMES, NativeThread

__all__ = ["LibdwMissing", "Session", "Unwinder", "available", "load", "unwinder"]

DWARF_CB_OK = 0
DWARF_CB_ABORT = 1
_KEPT = 4  # processes whose Dwfl is kept


class LibdwMissing(Exception):
    """libdw.so.1 could not be loaded (or lacks a function we call): the eu-stack program is used instead."""


class _Callbacks(ctypes.Structure):
    # Dwfl_Callbacks of libdwfl.h: find_elf, find_debuginfo, section_address, debuginfo_path.
    _fields_ = [("find_elf", ctypes.c_void_p), ("find_debuginfo", ctypes.c_void_p),
                ("section_address", ctypes.c_void_p), ("debuginfo_path", ctypes.c_void_p)]


_FRAME_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
_THREAD_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


@dataclass(slots=True)
class _Lib:
    cdll: Any
    callbacks: _Callbacks  # libdw keeps a pointer to it for the Dwfl's whole life: it lives as long as the module


_libs: dict[str, _Lib | str] = {}  # by path: the bound library, or why it could not be loaded
_lib_lock = threading.Lock()


def _bind(path: str) -> _Lib:
    try:
        dw = ctypes.CDLL(path)
        c = ctypes
        sigs: dict[str, tuple[Any, list[Any]]] = {
            "dwfl_begin": (c.c_void_p, [c.POINTER(_Callbacks)]),
            "dwfl_end": (None, [c.c_void_p]),
            "dwfl_errno": (c.c_int, []),
            "dwfl_errmsg": (c.c_char_p, [c.c_int]),
            "dwfl_report_begin": (None, [c.c_void_p]),
            "dwfl_report_end": (c.c_int, [c.c_void_p, c.c_void_p, c.c_void_p]),
            "dwfl_linux_proc_report": (c.c_int, [c.c_void_p, c.c_int]),
            "dwfl_linux_proc_attach": (c.c_int, [c.c_void_p, c.c_int, c.c_bool]),
            "dwfl_getthreads": (c.c_int, [c.c_void_p, _THREAD_CB, c.c_void_p]),
            "dwfl_thread_getframes": (c.c_int, [c.c_void_p, _FRAME_CB, c.c_void_p]),
            "dwfl_thread_tid": (c.c_int, [c.c_void_p]),
            "dwfl_frame_pc": (c.c_bool, [c.c_void_p, c.POINTER(c.c_uint64), c.POINTER(c.c_bool)]),
        }
        for name, (restype, argtypes) in sigs.items():
            fn = getattr(dw, name)
            fn.restype = restype
            fn.argtypes = argtypes
        callbacks = _Callbacks(ctypes.cast(dw.dwfl_linux_proc_find_elf, ctypes.c_void_p).value,
                               ctypes.cast(dw.dwfl_standard_find_debuginfo, ctypes.c_void_p).value, None, None)
    except (OSError, AttributeError) as e:
        raise LibdwMissing(f"{path} could not be loaded ({e})") from None
    return _Lib(dw, callbacks)


def load() -> _Lib:
    """The bound library (DYNTEL_LIBDW names another file); LibdwMissing says why not. Tried once a path."""
    path = os.environ.get("DYNTEL_LIBDW") or "libdw.so.1"
    with _lib_lock:
        lib = _libs.get(path)
        if lib is None:
            try:
                lib = _bind(path)
            except LibdwMissing as e:
                lib = str(e)
            _libs[path] = lib
    if isinstance(lib, str):
        raise LibdwMissing(lib)
    return lib


def available() -> bool:
    try:
        load()
    except LibdwMissing:
        return False
    return True


def _error(lib: _Lib) -> str:
    message = lib.cdll.dwfl_errmsg(-1)
    return message.decode("utf-8", "replace") if message else "unknown libdw error"


@dataclass(slots=True)
class Session:
    """One process's Dwfl and the maps text it was reported from."""

    lib: _Lib
    pid: int
    identity: str | None
    handle: int
    maps: bytes = b""
    attached: bool = False

    def close(self) -> None:
        if self.handle:
            self.lib.cdll.dwfl_end(self.handle)
            self.handle = 0
            self.attached = False


@dataclass(slots=True)
class _Walk:
    pcs: list[int] = field(default_factory=list)
    activation: list[bool] = field(default_factory=list)


class Unwinder:
    """Keeps a Dwfl for each of the last few processes unwound; safe to share between worker threads (a session is
    taken out while one thread uses it, so two captures of one process never share a Dwfl)."""

    def __init__(self, kept: int = _KEPT) -> None:
        self._kept = kept
        self._sessions: OrderedDict[int, Session] = OrderedDict()
        self._lock = threading.Lock()

    def _take(self, lib: _Lib, pid: int, identity: str | None) -> Session:
        with self._lock:
            session = self._sessions.pop(pid, None)
        if session is not None and session.identity == identity:
            return session
        if session is not None:
            session.close()  # the pid now names another process
        return Session(lib, pid, identity, 0)  # _report begins its Dwfl

    def _give_back(self, session: Session) -> None:
        with self._lock:
            old = self._sessions.pop(session.pid, None)
            self._sessions[session.pid] = session
            evicted = [old] if old is not None else []
            while len(self._sessions) > self._kept:
                evicted.append(self._sessions.popitem(last=False)[1])
        for s in evicted:
            s.close()

    def prepare(self, pid: int, identity: str | None, maps: bytes) -> Session:
        """The process's Dwfl with its modules reported from `maps` (this /proc/PID/maps text); call while the
        target still runs: opening the ELF files is the slow part and needs no stop."""
        lib = load()
        session = self._take(lib, pid, identity)
        try:
            if session.maps != maps or not session.attached:
                _report(session)
                session.maps = maps
        except BaseException:
            session.close()
            raise
        return session

    def unwind(self, session: Session, tids: list[int], errors: list[str]) -> dict[int, NativeThread]:
        """Every listed thread's pcs, innermost first. The threads must be ptrace-stopped by this very thread.

        A thread whose unwind stops on an error keeps the frames it had, and the error is added to `errors` in
        eu-stack's words ("dwfl_thread_getframes tid T at 0xPC in MODULE: MESSAGE")."""
        dw = session.lib.cdll
        walk = _Walk()
        pc = ctypes.c_uint64()
        activation = ctypes.c_bool()

        def on_frame(frame: int | None, _arg: int | None) -> int:
            if not dw.dwfl_frame_pc(frame, ctypes.byref(pc), ctypes.byref(activation)):
                return -1  # libdw's error stays set for the caller
            walk.pcs.append(pc.value)
            walk.activation.append(bool(activation.value))
            return DWARF_CB_ABORT if len(walk.pcs) >= MAX_FRAMES else DWARF_CB_OK

        callback = _FRAME_CB(on_frame)
        threads: dict[int, NativeThread] = {}
        remaining = set(tids)
        poisoned = False

        def on_thread(thread: int | None, _arg: int | None) -> int:
            nonlocal poisoned
            tid = dw.dwfl_thread_tid(thread)
            if tid not in remaining:
                return DWARF_CB_OK  # listed in /proc/PID/task but not stopped by us: never touched
            remaining.discard(tid)
            walk.pcs, walk.activation = [], []
            if dw.dwfl_thread_getframes(thread, callback, None) == -1:
                where = f" at {walk.pcs[-1]:#x}" if walk.pcs else ""
                errors.append(f"dwfl_thread_getframes tid {tid}{where}: {_error(session.lib)}")
                if not walk.pcs:
                    # libdw could not even read the registers (the thread was killed under us): it then skips its
                    # per-thread detach and would assert on the next thread. That Dwfl is done with.
                    poisoned = True
            if walk.pcs:
                threads[tid] = NativeThread(tid, walk.pcs, [not a for a in walk.activation])
            return DWARF_CB_ABORT if poisoned else DWARF_CB_OK

        thread_callback = _THREAD_CB(on_thread)
        # dwfl_getthreads lists /proc/PID/task; dwfl_getthread_frames would first ask kill(tid, 0) whether the thread
        # exists, which a process of another user answers EPERM unless dyntel also holds CAP_KILL.
        while remaining:
            if not session.handle:
                try:
                    _report(session)  # a fresh Dwfl after a poisoned one
                except OSError as e:
                    errors.append(f"threads {sorted(remaining)}: {e}")
                    break
            poisoned = False
            result = dw.dwfl_getthreads(session.handle, thread_callback, None)
            if poisoned:
                session.close()
                continue
            if result == -1:
                errors.append(f"dwfl_getthreads: {_error(session.lib)}")
            break  # a stopped thread not listed had exited (killed): nothing to unwind
        return threads

    def release(self, session: Session, *, keep: bool) -> None:
        """Done with the session: kept for the next capture of the process, or closed (it exited, or failed)."""
        if keep and session.handle:
            self._give_back(session)
        else:
            session.close()


def _report(session: Session) -> None:
    lib, pid = session.lib, session.pid
    dw = lib.cdll
    if not session.handle:
        session.handle = dw.dwfl_begin(ctypes.byref(lib.callbacks)) or 0
        session.attached = False
        if not session.handle:
            raise OSError(f"dwfl_begin: {_error(lib)}")
    dw.dwfl_report_begin(session.handle)  # modules reported again keep what libdw read of them
    err = dw.dwfl_linux_proc_report(session.handle, pid)
    if dw.dwfl_report_end(session.handle, None, None) != 0 or err < 0:
        raise OSError(f"reporting the modules of process {pid}: {_error(lib)}")
    if err > 0:
        raise OSError(err, f"reading /proc/{pid}/maps and /proc/{pid}/auxv: {os.strerror(err)}")
    if not session.attached:
        err = dw.dwfl_linux_proc_attach(session.handle, pid, True)
        if err != 0:
            raise OSError(f"dwfl_linux_proc_attach({pid}): " + (os.strerror(err) if err > 0 else _error(lib)))
        session.attached = True


_unwinder = Unwinder()


def unwinder() -> Unwinder:
    return _unwinder
