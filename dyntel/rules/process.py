"""`process.name`, `process.exe`, `process.cmdline`, `process.container` for conditions: looked up when a condition
first asks, and cached per pid.

A pid can be reused by a new process, so an entry remembers its process's start time; after `ttl` seconds the start
time is read again (one small /proc read) and a changed one means a different process, looked up afresh. A pid that
has no process is remembered as missing for the same time, so a burst of events from a process that has gone does
not turn into a burst of failed lookups.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dyntel.event import Event

if TYPE_CHECKING:
    import psutil

_CONTAINER_ID = re.compile(r"(?<![0-9a-f])([0-9a-f]{64})(?![0-9a-f])")


def container_id(pid: int) -> str | None:
    """The container the process runs in: the 64-hex-digit id that docker, containerd, CRI-O and podman put in the
    cgroup path (`/docker/ID`, `docker-ID.scope`, `cri-containerd-ID.scope`, `crio-ID.scope`, `libpod-ID.scope`).
    None outside a container."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    found = None
    for line in text.splitlines():
        for m in _CONTAINER_ID.finditer(line.rpartition(":")[2]):
            found = m.group(1)  # the innermost (last) id names the container the process is in
    return found


class ProcessInfo:
    """What conditions can read about one process. Each attribute is read from /proc the first time it is asked for;
    None when it cannot be read (the process has gone, or reading it is not allowed)."""

    __slots__ = ("_cmdline", "_container", "_exe", "_name", "_proc", "pid", "start")

    _UNSET: object = object()

    def __init__(self, proc: psutil.Process, start: float) -> None:
        self._proc = proc
        self.pid = proc.pid
        self.start = start
        self._name: object = self._UNSET
        self._exe: object = self._UNSET
        self._cmdline: object = self._UNSET
        self._container: object = self._UNSET

    @property
    def name(self) -> str | None:
        if self._name is self._UNSET:
            self._name = self._read(self._proc.name)
        return self._name  # type: ignore[return-value]

    @property
    def exe(self) -> str | None:
        if self._exe is self._UNSET:
            self._exe = self._read(self._proc.exe) or None  # kernel threads have no executable: "" reads as missing
        return self._exe  # type: ignore[return-value]

    @property
    def cmdline(self) -> str | None:
        """The arguments joined by spaces, so that `contains(process.cmdline, "--debug")` reads naturally."""
        if self._cmdline is self._UNSET:
            args = self._read(self._proc.cmdline)
            self._cmdline = " ".join(args) if isinstance(args, list) and args else None
        return self._cmdline  # type: ignore[return-value]

    @property
    def container(self) -> str | None:
        if self._container is self._UNSET:
            self._container = container_id(self.pid)
        return self._container  # type: ignore[return-value]

    @staticmethod
    def _read(getter: Callable[[], object]) -> object:
        import psutil

        try:
            return getter()
        except (psutil.Error, OSError):
            return None


class ProcessTable:
    def __init__(self, ttl: float = 1.0, max_entries: int = 65536,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        # pid -> (when to check the start time again, the process or None when there is none)
        self._cache: dict[int, tuple[float, ProcessInfo | None]] = {}

    def get(self, pid: int | None) -> ProcessInfo | None:
        if pid is None or pid <= 0:
            return None
        now = self._clock()
        hit = self._cache.get(pid)
        if hit is not None:
            recheck_at, info = hit
            if now < recheck_at:
                return info
            if info is not None and _start_time(pid) == info.start:
                self._cache[pid] = (now + self.ttl, info)
                return info
        info = _lookup(pid)
        if len(self._cache) >= self.max_entries:
            self._cache.clear()  # pids seen long ago are the bulk; a rare refill is cheaper than an LRU per event
        self._cache[pid] = (now + self.ttl, info)
        return info

    def forget(self, pid: int) -> None:
        """Drop what is known about `pid` (for a source that sees the process exit)."""
        self._cache.pop(pid, None)

    def clear(self) -> None:
        self._cache.clear()


def _start_time(pid: int) -> float | None:
    import psutil  # here, not at the top: only rules that read process.* need it, and it costs 13 ms at start-up

    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def _lookup(pid: int) -> ProcessInfo | None:
    import psutil

    try:
        proc = psutil.Process(pid)
        return ProcessInfo(proc, proc.create_time())
    except (psutil.Error, OSError):
        return None


PROCESSES = ProcessTable()


def process_name(e: Event) -> str | None:
    info = PROCESSES.get(e.pid)
    return None if info is None else info.name


def process_exe(e: Event) -> str | None:
    info = PROCESSES.get(e.pid)
    return None if info is None else info.exe


def process_cmdline(e: Event) -> str | None:
    info = PROCESSES.get(e.pid)
    return None if info is None else info.cmdline


def process_container(e: Event) -> str | None:
    info = PROCESSES.get(e.pid)
    return None if info is None else info.container
