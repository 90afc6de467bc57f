"""Freezing a live process with ptrace, without sending it a signal, and reading its registers and memory.

`frozen(pid)` seizes every thread (PTRACE_SEIZE does not stop anything and sends nothing the process could see),
then stops them with PTRACE_INTERRUPT, catching threads created meanwhile, and reads their registers. Leaving the
block detaches every thread whatever happened inside it, so the target always runs on.

ptrace ties a tracee to the tracer *thread*: every ptrace request of a freeze must come from the thread that entered
`frozen`. Memory reads (process_vm_readv) have no such tie.
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from dyntel.capture import permissions
from dyntel.capture.errors import CaptureError, NotPermitted, ProcessGone
from dyntel.capture.procfs import read_proc, thread_ids, thread_name

__all__ = ["USER_REGS", "Frozen", "ThreadState", "frozen", "read_many"]

# struct user_regs_struct of arch/x86/include/asm/user_64.h, in the kernel's order.
USER_REGS: tuple[str, ...] = (
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi", "rdi",
    "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
)
USER_REGS_SIZE = 8 * len(USER_REGS)  # 216
USER_FPREGS_SIZE = 512  # FXSAVE area

PTRACE_GETREGS = 12
PTRACE_GETFPREGS = 14
PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_EVENT_STOP = 128

WNOHANG = 1
WALL = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
_ptrace = _libc.ptrace
_ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_ptrace.restype = ctypes.c_long


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


_process_vm_readv = _libc.process_vm_readv
_process_vm_readv.argtypes = [ctypes.c_int, ctypes.POINTER(_IoVec), ctypes.c_ulong, ctypes.POINTER(_IoVec),
                              ctypes.c_ulong, ctypes.c_ulong]
_process_vm_readv.restype = ctypes.c_ssize_t

_waitpid = _libc.waitpid
_waitpid.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
_waitpid.restype = ctypes.c_int


def _call_ptrace(request: int, tid: int, addr: int | None = None, data: int | None = None) -> int:
    result: int = _ptrace(request, tid, addr, data)
    if result == -1:
        err = ctypes.get_errno()
        if err:
            raise OSError(err, os.strerror(err))
    return result


@dataclass(slots=True)
class ThreadState:
    """One stopped thread: its registers as the kernel gave them, and decoded by name."""

    tid: int
    name: str
    regs: dict[str, int]
    regs_raw: bytes
    fpregs_raw: bytes


class Frozen:
    """A process whose threads are all stopped: their states, and reads of its memory."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.threads: list[ThreadState] = []  # with registers=True (the default)
        self.tids: list[int] = []  # every stopped thread, the main thread first
        self._stopped_ns: int | None = None
        self._resumed_ns: int | None = None
        self._mem_fd: int | None = None

    @property
    def pause_ns(self) -> int:
        """Time since the first thread stopped; once resumed, the whole stop-to-resume time."""
        if self._stopped_ns is None:
            return 0
        end = self._resumed_ns if self._resumed_ns is not None else time.monotonic_ns()
        return end - self._stopped_ns

    def read(self, address: int, size: int) -> bytes:
        """`size` bytes at `address`, or fewer if the memory stops being readable before the end."""
        buffer = bytearray(size)
        n = self.readinto(address, buffer)
        del buffer[n:]
        return bytes(buffer)

    def readinto(self, address: int, buffer: bytearray | memoryview) -> int:
        """Fill `buffer` from `address`; returns how many bytes were read, stopping at the first unreadable page.

        process_vm_readv: one copy, no file descriptor, and as fast as /proc/PID/mem for large regions (see
        benchmarks/capture.py); it returns what it copied before a fault, so a partly unreadable range is a short
        count, not an error.
        """
        view = memoryview(buffer).cast("B")
        size = len(view)
        if size == 0:
            return 0
        local = (ctypes.c_char * size).from_buffer(view)
        try:
            liov = _IoVec(ctypes.addressof(local), size)
            riov = _IoVec(address, size)
            done = 0
            while done < size:
                liov.iov_base = ctypes.addressof(local) + done
                liov.iov_len = riov.iov_len = size - done
                riov.iov_base = address + done
                n = _process_vm_readv(self.pid, ctypes.byref(liov), 1, ctypes.byref(riov), 1, 0)
                if n < 0:
                    err = ctypes.get_errno()
                    if err in (errno.EFAULT, errno.EIO, errno.ENOMEM):
                        break
                    if err == errno.ESRCH:
                        raise ProcessGone(f"process {self.pid} exited while its memory was being read")
                    if err == errno.EPERM:
                        raise NotPermitted(permissions.explain(self.pid, err))
                    raise CaptureError(f"reading memory of process {self.pid} at {address + done:#x}: "
                                       f"{os.strerror(err)}")
                if n == 0:
                    break
                done += n
            return done
        finally:
            del local
            view.release()


def read_many(pid: int, ranges: list[tuple[int, int]]) -> list[bytes]:
    """Each (address, size) of `pid`'s memory, in as few process_vm_readv calls as the kernel allows (1024 ranges a
    call); a range that cannot be read, and every one after it in the same call, comes back short or empty, so
    read those again one by one if they matter. No ptrace stop is needed; ESRCH: ProcessGone."""
    out: list[bytes] = []
    for start in range(0, len(ranges), 1024):
        chunk = ranges[start:start + 1024]
        total = sum(size for _, size in chunk)
        local = ctypes.create_string_buffer(total)
        liov = (_IoVec * len(chunk))()
        riov = (_IoVec * len(chunk))()
        base = ctypes.addressof(local)
        at = 0
        for i, (address, size) in enumerate(chunk):
            liov[i].iov_base, liov[i].iov_len = base + at, size
            riov[i].iov_base, riov[i].iov_len = address, size
            at += size
        n = _process_vm_readv(pid, liov, len(chunk), riov, len(chunk), 0)
        if n < 0:
            err = ctypes.get_errno()
            if err == errno.ESRCH:
                raise ProcessGone(f"process {pid} exited while its memory was being read")
            if err == errno.EPERM:
                raise NotPermitted(permissions.explain(pid, err))
            n = 0
        raw = local.raw
        at = 0
        for _, size in chunk:
            out.append(raw[at:min(at + size, n)] if at < n else b"")
            at += size
    return out


def _regs(raw: bytes) -> dict[str, int]:
    values = memoryview(raw).cast("Q")
    return dict(zip(USER_REGS, values, strict=True))


def _exiting(pid: int, tid: int) -> bool:
    """True if the thread is gone or a zombie thread (its stat state Z or X)."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rfind(b")") + 2:][:1] in (b"Z", b"X")


class _Stopper:
    """Seizes and stops threads; remembers which ones it holds, and the signal each one stopped with."""

    def __init__(self, pid: int, frozen: Frozen, timeout: float) -> None:
        self.pid = pid
        self.frozen = frozen
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.seized: list[int] = []
        self.stopped: dict[int, int] = {}  # tid -> signal to hand back on detach (0: none)

    def seize_new(self) -> list[int]:
        """Seize and interrupt every thread not yet held; returns the new ones."""
        try:
            tids = thread_ids(self.pid)
        except ProcessGone:
            if not self.seized:
                raise
            return []
        new = [tid for tid in tids if tid not in self.stopped and tid not in self.seized]
        for tid in new:
            try:
                _call_ptrace(PTRACE_SEIZE, tid, 0, 0)
            except OSError as e:
                if e.errno == errno.ESRCH or (e.errno == errno.EPERM and tid != self.pid and _exiting(self.pid, tid)):
                    # Exited between the listing and the seize; a thread on its way out (exit_state set) answers
                    # EPERM, not ESRCH, and is no reason to refuse the whole capture.
                    continue
                raise NotPermitted(permissions.explain(self.pid, e.errno or 0)) from None
            self.seized.append(tid)
            try:
                _call_ptrace(PTRACE_INTERRUPT, tid, 0, 0)
            except OSError as e:
                if e.errno != errno.ESRCH:
                    raise
            if self.frozen._stopped_ns is None:
                self.frozen._stopped_ns = time.monotonic_ns()
        return new

    def wait_all(self) -> None:
        """Wait until every seized thread reports its stop (or its exit)."""
        status = ctypes.c_int()
        pending = [tid for tid in self.seized if tid not in self.stopped]
        spin = 0
        while pending:
            still = []
            for tid in pending:
                got = _waitpid(tid, ctypes.byref(status), WNOHANG | WALL)
                if got == 0:
                    still.append(tid)
                    continue
                if got < 0:  # ECHILD: the thread is gone and was reaped
                    self.seized.remove(tid)
                    continue
                self._note(tid, status.value)
            pending = still
            if pending:
                if time.monotonic() > self.deadline:
                    states = {tid: _thread_state(self.pid, tid) for tid in pending}
                    raise CaptureError(
                        f"threads of process {self.pid} did not stop within {self.timeout}s: {states} "
                        "(a thread in state D is in an uninterruptible kernel wait, e.g. on a hung NFS mount or "
                        "device; retry later or raise the timeout)")
                # Stops arrive within microseconds; yield first, then sleep a little so a stuck thread does not
                # cost a core.
                spin += 1
                if spin < 50:
                    os.sched_yield()
                else:
                    time.sleep(0.0002)

    def _note(self, tid: int, status: int) -> None:
        if os.WIFSTOPPED(status):
            sig = os.WSTOPSIG(status)
            event = (status >> 16) & 0xFF
            # A signal-delivery stop (event 0, any signal) must be handed back on detach or the process would
            # never see the signal; the interrupt's own stop (PTRACE_EVENT_STOP) and group stops carry none.
            self.stopped[tid] = sig if event == 0 else 0
        else:
            self.seized.remove(tid)  # exited or killed while we were stopping it

    def detach_all(self) -> None:
        # PTRACE_DETACH needs a stopped tracee: a thread interrupted but not yet reported (an error cut the wait
        # short) would stay stopped and traced, so give it a last chance to report first.
        self.deadline = max(self.deadline, time.monotonic() + 1.0)
        # Still running after that: it is detached when this thread exits, the kernel's rule for a tracer's exit.
        with suppress(CaptureError):
            self.wait_all()
        for tid in self.seized:
            # ESRCH: exited (or killed) meanwhile; nothing left to resume.
            with suppress(OSError):
                _call_ptrace(PTRACE_DETACH, tid, 0, self.stopped.get(tid, 0))


def _thread_state(pid: int, tid: int) -> str:
    for line in read_proc(pid, f"task/{tid}/status").splitlines():
        if line.startswith(b"State:"):
            return line.split(b":", 1)[1].strip().decode()
    return "gone"


def _read_state(pid: int, tid: int) -> ThreadState:
    regs = ctypes.create_string_buffer(USER_REGS_SIZE)
    fpregs = ctypes.create_string_buffer(USER_FPREGS_SIZE)
    _call_ptrace(PTRACE_GETREGS, tid, 0, ctypes.addressof(regs))
    _call_ptrace(PTRACE_GETFPREGS, tid, 0, ctypes.addressof(fpregs))
    return ThreadState(tid, thread_name(pid, tid), _regs(regs.raw), regs.raw, fpregs.raw)


@contextmanager
def frozen(pid: int, *, timeout: float = 2.0, registers: bool = True) -> Iterator[Frozen]:
    """Every thread of `pid` stopped for the duration of the block, registers read, then all resumed.

    registers=False reads no registers (nor thread names): `tids` lists the stopped threads, for a caller that
    reads what it needs itself from this same thread (the stacks unwinder), so the pause holds only that.

    Raises ProcessGone, NotPermitted (with the reason), or CaptureError if the threads do not stop within
    `timeout` seconds.
    """
    if pid == os.getpid():
        raise CaptureError("dyntel cannot freeze its own process (a process cannot ptrace itself)")
    state = Frozen(pid)
    stopper = _Stopper(pid, state, timeout)
    try:
        # A thread that was running during the first pass may have started others; once every listed thread is
        # stopped, nothing can start a new one, so one more listing that finds none ends the loop.
        while stopper.seize_new():
            stopper.wait_all()
        if not stopper.seized:
            raise ProcessGone(f"process {pid} exited before it could be stopped")
        state.tids = sorted(stopper.seized, key=lambda t: (t != pid, t))
        for tid in state.tids if registers else ():
            try:
                state.threads.append(_read_state(pid, tid))
            except OSError as e:
                if e.errno != errno.ESRCH:
                    raise CaptureError(f"reading the registers of thread {tid} of process {pid}: {e}") from None
        yield state
    finally:
        stopper.detach_all()
        if state._stopped_ns is not None:
            state._resumed_ns = time.monotonic_ns()
