"""The TRACE_LOGFILE_HEADER, the first record of every ETL file, and the clock it defines.

The header is the MOF data of a system record (group 0, type 0: EventTrace/Header). Its layout has two pointers
(LoggerName, LogFileName) whose width is the writer's, so 32-bit writers move every later field; the record's
marker (SYSTEM_TRACE_MARKER_32 or _64) says which.

Timestamps of records are raw readings of the session's clock. As ProcessTrace and TraceEvent do, the header
record's own timestamp is taken as the clock's reading at StartTime (a FILETIME), and the clock's rate is PerfFreq
(ReservedFlags 1, QueryPerformanceCounter; 2, system time: PerfFreq is then 10 MHz), or CpuSpeedInMHz for the
cycle counter (3).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from dyntel.errors import DecodeError

FILETIME_UNIX_EPOCH = 116_444_736_000_000_000  # 100-ns intervals from 1601-01-01 to 1970-01-01
CLOCK_QPC = 1
CLOCK_SYSTEM_TIME = 2
CLOCK_CPU_CYCLES = 3

_FIXED = struct.Struct("<IIIIqIIII")  # BufferSize .. BuffersWritten
_UNION = struct.Struct("<IIII")  # StartBuffers, PointerSize, EventsLost, CpuSpeedInMHz
_TAIL = struct.Struct("<qqqII")  # BootTime, PerfFreq, StartTime, ReservedFlags, BuffersLost
_TIME_ZONE_SIZE = 172


@dataclass(slots=True)
class LogfileHeader:
    buffer_size: int
    version: int
    provider_version: int
    processors: int
    end_time: int  # FILETIME
    timer_resolution: int  # 100-ns units
    maximum_file_size: int
    log_file_mode: int
    buffers_written: int
    pointer_size: int
    events_lost: int
    cpu_mhz: int
    boot_time: int  # FILETIME
    perf_freq: int
    start_time: int  # FILETIME
    clock_type: int  # ReservedFlags
    buffers_lost: int
    logger_name: str
    log_file_name: str
    start_ticks: int  # the header record's timestamp: the clock's reading at start_time

    @property
    def frequency(self) -> int:
        """Ticks per second of the record timestamps."""
        if self.clock_type == CLOCK_CPU_CYCLES and self.cpu_mhz:
            return self.cpu_mhz * 1_000_000
        if self.clock_type == CLOCK_SYSTEM_TIME:
            return 10_000_000
        return self.perf_freq if self.perf_freq > 0 else 10_000_000

    def clock(self) -> tuple[int, int, int]:
        """(ticks at start, ns since the Unix epoch at start, ticks per second) for `ticks_to_unix_ns`."""
        return self.start_ticks, (self.start_time - FILETIME_UNIX_EPOCH) * 100, self.frequency


def ticks_to_unix_ns(ticks: int, clock: tuple[int, int, int]) -> int:
    start_ticks, start_ns, freq = clock
    if freq == 10_000_000:
        return start_ns + (ticks - start_ticks) * 100
    return start_ns + (ticks - start_ticks) * 1_000_000_000 // freq


def parse_logfile_header(mof: bytes, pointer_size: int, start_ticks: int, offset: int) -> LogfileHeader:
    """The header in `mof` (the record's data after its system header); `offset` places errors in the file."""
    tail_at = 56 + 2 * pointer_size + _TIME_ZONE_SIZE
    tail_at += -tail_at % 8  # BootTime is a LARGE_INTEGER: 8-aligned
    if len(mof) < tail_at + _TAIL.size:
        raise DecodeError(f"trace log file header of {len(mof)} bytes; {tail_at + _TAIL.size} expected", offset)
    (buffer_size, version, provider_version, processors, end_time, timer_resolution, maximum_file_size,
     log_file_mode, buffers_written) = _FIXED.unpack_from(mof, 0)
    _, stored_pointer_size, events_lost, cpu_mhz = _UNION.unpack_from(mof, 40)
    boot_time, perf_freq, start_time, clock_type, buffers_lost = _TAIL.unpack_from(mof, tail_at)
    names = mof[tail_at + _TAIL.size:]
    logger_name, log_file_name = _two_strings(names)
    return LogfileHeader(
        buffer_size, version, provider_version, processors, end_time, timer_resolution, maximum_file_size,
        log_file_mode, buffers_written, stored_pointer_size if stored_pointer_size in (4, 8) else pointer_size,
        events_lost, cpu_mhz, boot_time, perf_freq, start_time, clock_type, buffers_lost, logger_name,
        log_file_name, start_ticks,
    )


def _two_strings(b: bytes) -> tuple[str, str]:
    """The logger and log file names that follow the header, NUL-terminated UTF-16LE."""
    out: list[str] = []
    pos = 0
    for _ in range(2):
        end = pos
        while end + 1 < len(b) and (b[end] or b[end + 1]):
            end += 2
        out.append(b[pos:end].decode("utf-16-le", "replace"))
        pos = end + 2
    return out[0], out[1]
