"""Live ETW: a real-time session of dyntel's own, read through advapi32 by ctypes (Windows only).

    src = EtwLiveSource([provider("MyCompany.MyComponent", level=5)], session="dyntel-live")
    for event in src.events():      # blocks; stop() from any thread ends it
        ...
    src.close()

Session. StartTraceW starts a real-time session (EVENT_TRACE_REAL_TIME_MODE, QPC clock, 1 s flush timer) named
"dyntel-..." (the prefix is added when missing). A session outlives the process that started it, so a session of the
same name left by a run that crashed is stopped first (ControlTraceW STOP); two dyntel processes must therefore use
different session names. close() stops the session, and so does an atexit hook when close() was never called.

Providers. EnableTraceEx2 per provider with its level, MatchAnyKeyword, MatchAllKeyword and, when asked,
EVENT_ENABLE_PROPERTY_STACK_TRACE (ENABLE_TRACE_PARAMETERS version 2): events then carry a STACK_TRACE64
extended item, which the decoder turns into Event.callchain. `set_provider` calls EnableTraceEx2 again with new
settings (how ETW updates a provider in a running session: the `enable` action's path); `remove` disables one.
A provider is named by its GUID or, for TraceLogging providers, by its name, from which TraceLogging derives the
GUID (manifest providers' names would need TdhEnumerateProviders, which is not used: give their GUID).

Reading. OpenTraceW (PROCESS_TRACE_MODE_REAL_TIME | PROCESS_TRACE_MODE_EVENT_RECORD) with an EventRecordCallback;
ProcessTrace runs in a thread of its own and calls it for every event. The callback (`RecordPump`) copies what the
EVENT_RECORD points at (it is valid only during the call), converts the header (`record_parts`), decodes with
`decode_etw_event` and puts the Event on a bounded queue; `events()` takes from the queue in the consumer's thread.
When the queue is full the event is dropped and counted (stats.dropped) rather than stalling ProcessTrace, which
would make ETW lose whole buffers instead (counted by the session: `lost()`). Both are read through the `etw queue`
of the run's queue registry (dyntel.queues), so they show in the metrics, the exit summary and `dyntel status`.

Time. By default ProcessTrace converts EVENT_HEADER.TimeStamp to system time (FILETIME: 100 ns since 1601), which
`EtwClock` turns into Unix-epoch nanoseconds. With raw_timestamps=True (PROCESS_TRACE_MODE_RAW_TIMESTAMP) the
stamps stay in the session's clock, named by TRACE_LOGFILE_HEADER.ReservedFlags (Wnode.ClientContext): QPC ticks
at PerfFreq a second, CPU cycles at CpuSpeedInMHz, or system time; ticks are then placed on the wall clock by a
(QueryPerformanceCounter, GetSystemTimePreciseAsFileTime) pair read at open.

Nothing here runs on Linux but the parts that need no DLL (`record_parts`, `EtwClock`, `RecordPump`), which the
tests drive with EVENT_RECORDs built in memory. advapi32 is loaded on first open, never at import.

The parts: providers (ProviderSpec, provider), pump (the callback's side: EVENT_RECORD -> Event -> queue, and the
clock), enable (the `enable` action's EtwEnabler); this module holds the session and exports all of their names.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

from dyntel.event import Event
from dyntel.queues import QueueCounts, QueueRegistry
from dyntel.sources import Want
from dyntel.sources.etw import structs as s
from dyntel.sources.etw.enable import EtwEnabler, EtwSession
from dyntel.sources.etw.providers import ALL_KEYWORDS, LEVEL_VERBOSE, ProviderSpec, provider
from dyntel.sources.etw.pump import (
    DEFAULT_QUEUE,
    EVENT_RECORD_CALLBACK,
    FILETIME_UNIX_EPOCH,
    EtwClock,
    EtwLiveStats,
    RecordPump,
    clock_for,
    record_parts,
    record_pointer_size,
)
from dyntel.sources.perf.tracefs import LiveSetupError

log = logging.getLogger("dyntel.etw")

SESSION_PREFIX = "dyntel-"
DEFAULT_SESSION = "dyntel-live"
DEFAULT_BUFFER_KB = 256


# ----------------------------------------------------------------------------------------------------------------
# advapi32 (Windows)


def _advapi32() -> Any:
    if sys.platform != "win32":
        raise LiveSetupError("live ETW sessions need Windows; on this machine, decode .etl files instead")
    dll = getattr(ctypes, "WinDLL")("advapi32", use_last_error=True)  # noqa: B009 - absent from Linux typeshed
    u32, u64, pu64 = ctypes.c_uint32, ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint64)
    wstr = ctypes.c_wchar_p
    dll.StartTraceW.argtypes = (pu64, wstr, ctypes.c_void_p)
    dll.StartTraceW.restype = u32
    dll.ControlTraceW.argtypes = (u64, wstr, ctypes.c_void_p, u32)
    dll.ControlTraceW.restype = u32
    dll.EnableTraceEx2.argtypes = (u64, ctypes.POINTER(s.GUID), u32, ctypes.c_uint8, u64, u64, u32,
                                   ctypes.POINTER(s.ENABLE_TRACE_PARAMETERS))
    dll.EnableTraceEx2.restype = u32
    dll.OpenTraceW.argtypes = (ctypes.POINTER(s.EVENT_TRACE_LOGFILEW),)
    dll.OpenTraceW.restype = u64
    dll.ProcessTrace.argtypes = (pu64, u32, ctypes.c_void_p, ctypes.c_void_p)
    dll.ProcessTrace.restype = u32
    dll.CloseTrace.argtypes = (u64,)
    dll.CloseTrace.restype = u32
    return dll


def _wall_reference() -> tuple[int, int]:
    """(QPC ticks, Unix ns) read together, for raw QPC timestamps."""
    k32 = getattr(ctypes, "WinDLL")("kernel32")  # noqa: B009
    qpc = ctypes.c_int64()
    ft = ctypes.c_uint64()
    k32.QueryPerformanceCounter(ctypes.byref(qpc))
    k32.GetSystemTimePreciseAsFileTime(ctypes.byref(ft))
    return qpc.value, (ft.value - FILETIME_UNIX_EPOCH) * 100


def explain_error(rc: int, what: str) -> str:
    """A Win32 error from an ETW call, as something the user can act on."""
    if rc == s.ERROR_ACCESS_DENIED:
        return (f"{what}: access denied; ETW sessions need an elevated prompt (Administrator) or membership of the "
                "Performance Log Users group")
    if rc == s.ERROR_NO_SYSTEM_RESOURCES:
        return f"{what}: no system resources; Windows allows 64 sessions at once (logman query -ets lists them)"
    if rc == s.ERROR_ALREADY_EXISTS:
        return f"{what}: a session of that name exists and could not be stopped"
    if rc == s.ERROR_BAD_LENGTH or rc == s.ERROR_INVALID_PARAMETER:
        return f"{what}: Windows refused the parameters (error {rc})"
    return f"{what}: Win32 error {rc}"


def _properties(session: str, buffer_kb: int = 0) -> s.SessionProperties:
    props = s.SessionProperties()
    p = props.Properties
    p.Wnode.BufferSize = ctypes.sizeof(props)
    p.Wnode.Flags = s.WNODE_FLAG_TRACED_GUID
    p.Wnode.ClientContext = s.CLOCK_QPC
    p.LogFileMode = s.EVENT_TRACE_REAL_TIME_MODE
    p.BufferSize = buffer_kb
    p.FlushTimer = 1  # seconds: a quiet provider's events still arrive within a second
    p.LoggerNameOffset = s.SessionProperties.LoggerName.offset
    p.LogFileNameOffset = 0
    s.set_wide_text(props.LoggerName, session)
    return props


class EtwLiveSource:
    """Events of ETW providers as they are written, from a real-time session this object owns.

    `add`, `remove`, `set_provider`, `stop` and `lost` may be called from any thread once open.
    """

    def __init__(self, providers: Iterable[ProviderSpec] = (), *, session: str = DEFAULT_SESSION,
                 queue_size: int = DEFAULT_QUEUE, buffer_kb: int = DEFAULT_BUFFER_KB, raw_timestamps: bool = False,
                 poll_interval: float = 0.1, name: str | None = None, queues: QueueRegistry | None = None) -> None:
        if not session.startswith(SESSION_PREFIX):
            session = SESSION_PREFIX + session
        if len(session) >= s.MAX_SESSION_NAME_CHARS:
            raise ValueError(f"session name of {len(session)} characters")
        self.session = session
        self.providers: dict[bytes, ProviderSpec] = {p.guid: p for p in providers}
        self.name = name or f"etw:{session}"
        self.stats = EtwLiveStats()
        self.field_tags = False
        self.buffer_kb = buffer_kb
        self.raw_timestamps = raw_timestamps
        self.poll_interval = poll_interval
        self.on_idle: Callable[[], None] | None = None
        self.pump = RecordPump(self.stats, maxsize=queue_size)
        if queues is not None:
            # The session's own losses (ETW's EventsLost, real-time buffers lost) go with the queue's drops.
            pump_refresh = self.pump._refresh

            def refresh(counts: QueueCounts) -> None:
                pump_refresh(counts)
                lost = self.lost()
                for key, reason in (("events_lost", "ETW session: events lost"),
                                    ("realtime_buffers_lost", "ETW session: real-time buffers lost")):
                    if key in lost:
                        counts.dropped[reason] = lost[key]

            self.pump.counts.refresh = refresh
            queues.register(self.pump.counts)
        self._lock = threading.RLock()
        self._api: Any = None
        self._session_handle = 0
        self._trace = s.INVALID_PROCESSTRACE_HANDLE
        self._logfile: s.EVENT_TRACE_LOGFILEW | None = None
        self._name_buffer: Any = None
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._stopping = threading.Event()
        self._closed = False
        self.process_trace_status: int | None = None  # ProcessTrace's return code once it has returned

    @property
    def want(self) -> Want | None:
        return self.pump.want

    @want.setter
    def want(self, want: Want | None) -> None:
        self.pump.want = want

    def __enter__(self) -> EtwLiveSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------------------
    # Setup

    def open(self) -> None:
        """Start the session, enable the providers and start reading. Idempotent."""
        with self._lock:
            if self._api is not None:
                return
            if self._closed:
                raise LiveSetupError(f"{self.name} is closed")
            api = _advapi32()
            self._api = api
            try:
                self._start_session()
                atexit.register(self.close)
                for spec in self.providers.values():
                    self._enable(spec)
                self._open_trace()
            except BaseException:
                self.close()
                raise
            self._thread = threading.Thread(target=self._process, name=f"etw {self.session}", daemon=True)
            self._thread.start()

    def _start_session(self) -> None:
        api = self._api
        self._stop_named()  # a session of this name outlives a crashed run: stop it, or StartTrace fails
        for attempt in range(2):
            props = _properties(self.session, self.buffer_kb)
            handle = ctypes.c_uint64(0)
            rc = api.StartTraceW(ctypes.byref(handle), self.session, ctypes.byref(props))
            if rc == s.ERROR_ALREADY_EXISTS and attempt == 0:
                self._stop_named()
                continue
            if rc != s.ERROR_SUCCESS:
                raise LiveSetupError(explain_error(rc, f"StartTrace {self.session}"))
            self._session_handle = handle.value
            log.info("ETW session %s started", self.session)
            return

    def _stop_named(self) -> None:
        props = _properties(self.session)
        rc = self._api.ControlTraceW(0, self.session, ctypes.byref(props), s.EVENT_TRACE_CONTROL_STOP)
        if rc == s.ERROR_SUCCESS:
            log.warning("stopped a stale ETW session %s (left by an earlier run)", self.session)
        elif rc != s.ERROR_WMI_INSTANCE_NOT_FOUND:
            log.warning("%s", explain_error(rc, f"stopping ETW session {self.session}"))

    def _enable(self, spec: ProviderSpec, control: int = s.EVENT_CONTROL_CODE_ENABLE_PROVIDER) -> None:
        params = s.ENABLE_TRACE_PARAMETERS()
        params.Version = s.ENABLE_TRACE_PARAMETERS_VERSION_2
        params.EnableProperty = s.EVENT_ENABLE_PROPERTY_STACK_TRACE if spec.stack else 0
        guid = s.GUID.from_stored(spec.guid)
        rc = self._api.EnableTraceEx2(self._session_handle, ctypes.byref(guid), control, spec.level, spec.match_any,
                                      spec.match_all, 0, ctypes.byref(params))
        if rc != s.ERROR_SUCCESS:
            what = "EnableTraceEx2 " + (spec.name or spec.guid_text)
            raise LiveSetupError(explain_error(rc, what))

    def _open_trace(self) -> None:
        logfile = s.EVENT_TRACE_LOGFILEW()
        self._name_buffer = ctypes.create_unicode_buffer(self.session)
        logfile.LoggerName = ctypes.addressof(self._name_buffer)
        mode = s.PROCESS_TRACE_MODE_REAL_TIME | s.PROCESS_TRACE_MODE_EVENT_RECORD
        if self.raw_timestamps:
            mode |= s.PROCESS_TRACE_MODE_RAW_TIMESTAMP
        logfile.ProcessTraceMode = mode
        logfile.EventRecordCallback = ctypes.cast(self.pump.callback, ctypes.c_void_p).value
        handle = self._api.OpenTraceW(ctypes.byref(logfile))
        if handle == s.INVALID_PROCESSTRACE_HANDLE:
            last_error = getattr(ctypes, "get_last_error", lambda: 0)()
            raise LiveSetupError(explain_error(last_error, f"OpenTrace {self.session}"))
        self._trace = handle
        self._logfile = logfile
        ref = _wall_reference() if self.raw_timestamps else (0, 0)
        self.pump.clock = clock_for(logfile.LogfileHeader, raw=self.raw_timestamps, ref_ticks=ref[0],
                                    ref_unix_ns=ref[1])

    def _process(self) -> None:
        try:
            handles = (ctypes.c_uint64 * 1)(self._trace)
            self.process_trace_status = self._api.ProcessTrace(handles, 1, None, None)
            if self.process_trace_status not in (s.ERROR_SUCCESS, s.ERROR_CTX_CLOSE_PENDING):
                log.warning("%s", explain_error(self.process_trace_status, f"ProcessTrace {self.session}"))
        finally:
            self._done.set()

    # ------------------------------------------------------------------------------------------------------------
    # Providers at run time

    def add(self, spec: ProviderSpec) -> None:
        """Enable a provider (or change how it is enabled)."""
        with self._lock:
            self.providers[spec.guid] = spec
            if self._api is not None:
                self._enable(spec)

    def set_provider(self, ident: bytes | str, *, level: int | None = None, match_any: int | None = None,
                     match_all: int | None = None, stack: bool | None = None) -> ProviderSpec:
        """Change a provider's level, keywords or stack capture in the running session (EnableTraceEx2 again);
        a provider not enabled yet is added with these settings."""
        guid = ident if isinstance(ident, bytes) else provider(ident).guid
        with self._lock:
            old = self.providers.get(guid) or (ProviderSpec(guid) if isinstance(ident, bytes) else provider(ident))
            spec = replace(old, level=old.level if level is None else level,
                           match_any=old.match_any if match_any is None else match_any & ALL_KEYWORDS,
                           match_all=old.match_all if match_all is None else match_all & ALL_KEYWORDS,
                           stack=old.stack if stack is None else stack)
            self.add(spec)
            return spec

    def remove(self, ident: bytes | str) -> bool:
        """Disable a provider; False when it was not enabled."""
        guid = ident if isinstance(ident, bytes) else provider(ident).guid
        with self._lock:
            spec = self.providers.pop(guid, None)
            if spec is None:
                return False
            if self._api is not None:
                self._enable(spec, s.EVENT_CONTROL_CODE_DISABLE_PROVIDER)
            return True

    # ------------------------------------------------------------------------------------------------------------
    # Reading

    def events(self) -> Iterator[Event]:
        """Events in the order ProcessTrace delivers them (per-CPU buffers as they flush: not sorted by time)."""
        self.open()
        pump = self.pump
        while not self._stopping.is_set():
            event = pump.get(self.poll_interval)
            if event is not None:
                self.stats.events += 1
                yield event
                continue
            if self._done.is_set() and pump.queue.empty():
                return
            if self.on_idle is not None:
                self.on_idle()

    def stop(self) -> None:
        """End `events()` before its next event (or within poll_interval when idle); once stopped, it stays so.
        The session keeps running until close()."""
        self._stopping.set()

    def lost(self) -> dict[str, int]:
        """What was lost: events ETW dropped (EventsLost), buffers real-time delivery dropped, and events the full
        queue dropped here."""
        out = {"dropped": self.stats.dropped}
        with self._lock:
            if self._api is None or self._closed:
                return out
            props = _properties(self.session)
            rc = self._api.ControlTraceW(self._session_handle, None, ctypes.byref(props), s.EVENT_TRACE_CONTROL_QUERY)
            if rc == s.ERROR_SUCCESS:
                out["events_lost"] = props.Properties.EventsLost
                out["realtime_buffers_lost"] = props.Properties.RealTimeBuffersLost
        return out

    # ------------------------------------------------------------------------------------------------------------
    # Teardown

    def close(self) -> None:
        """Stop the session and the reading thread. Idempotent; also run at exit when never called."""
        self.stop()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            api = self._api
            if api is None:
                return
            with contextlib.suppress(Exception):
                atexit.unregister(self.close)
            if self._session_handle:
                props = _properties(self.session)
                rc = api.ControlTraceW(self._session_handle, None, ctypes.byref(props), s.EVENT_TRACE_CONTROL_STOP)
                if rc not in (s.ERROR_SUCCESS, s.ERROR_WMI_INSTANCE_NOT_FOUND):
                    log.warning("%s", explain_error(rc, f"stopping ETW session {self.session}"))
                self._session_handle = 0
            if self._trace != s.INVALID_PROCESSTRACE_HANDLE:
                # Stopping the session ends ProcessTrace once the buffers are delivered; CloseTrace makes sure.
                rc = api.CloseTrace(self._trace)
                if rc not in (s.ERROR_SUCCESS, s.ERROR_CTX_CLOSE_PENDING):
                    log.warning("%s", explain_error(rc, f"CloseTrace {self.session}"))
                self._trace = s.INVALID_PROCESSTRACE_HANDLE
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
            if thread.is_alive():
                log.warning("ProcessTrace for %s did not return within 5 s of the session's stop", self.session)


__all__ = [
    "ALL_KEYWORDS",
    "DEFAULT_QUEUE",
    "DEFAULT_SESSION",
    "EVENT_RECORD_CALLBACK",
    "LEVEL_VERBOSE",
    "SESSION_PREFIX",
    "EtwClock",
    "EtwEnabler",
    "EtwLiveSource",
    "EtwLiveStats",
    "EtwSession",
    "ProviderSpec",
    "RecordPump",
    "clock_for",
    "explain_error",
    "provider",
    "record_parts",
    "record_pointer_size",
]
