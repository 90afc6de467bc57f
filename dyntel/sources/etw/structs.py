"""The ETW structures a real-time consumer exchanges with advapi32, as ctypes Structures (64-bit Windows layouts).

Declared with fixed-size ctypes types rather than ctypes.wintypes, so that the layout is the same on the Linux host
the tests run on as on Windows x64: LONG/ULONG are 4 bytes (c_int32/c_uint32, never c_long), WCHAR arrays are
c_uint16 (c_wchar is 4 bytes on Linux), and every pointer, HANDLE and LPWSTR is c_void_p (8 bytes, 8-aligned). The
layouts follow evntrace.h, evntcons.h, evntprov.h, wmistr.h and minwinbase.h; tests/test_etw_live_structs.py checks
every size and offset against the documented x64 values.

Importing this module touches no DLL: it is safe on any platform.
"""

from __future__ import annotations

import ctypes
from ctypes import c_int32, c_int64, c_uint8, c_uint16, c_uint32, c_uint64, c_void_p

# WNODE_HEADER.Flags (wmistr.h)
WNODE_FLAG_TRACED_GUID = 0x00020000

# EVENT_TRACE_PROPERTIES.LogFileMode (evntrace.h)
EVENT_TRACE_REAL_TIME_MODE = 0x00000100

# Wnode.ClientContext: the session's clock, and so EVENT_HEADER.TimeStamp's unit when timestamps are raw
CLOCK_QPC = 1
CLOCK_SYSTEM_TIME = 2
CLOCK_CPU_CYCLE = 3

# ControlTrace codes (evntrace.h)
EVENT_TRACE_CONTROL_QUERY = 0
EVENT_TRACE_CONTROL_STOP = 1
EVENT_TRACE_CONTROL_UPDATE = 2
EVENT_TRACE_CONTROL_FLUSH = 3

# EnableTraceEx2 control codes (evntrace.h)
EVENT_CONTROL_CODE_DISABLE_PROVIDER = 0
EVENT_CONTROL_CODE_ENABLE_PROVIDER = 1
EVENT_CONTROL_CODE_CAPTURE_STATE = 2

ENABLE_TRACE_PARAMETERS_VERSION_2 = 2

# ENABLE_TRACE_PARAMETERS.EnableProperty (evntcons.h)
EVENT_ENABLE_PROPERTY_SID = 0x00000001
EVENT_ENABLE_PROPERTY_TS_ID = 0x00000002
EVENT_ENABLE_PROPERTY_STACK_TRACE = 0x00000004
EVENT_ENABLE_PROPERTY_PROCESS_START_KEY = 0x00000080

# EVENT_TRACE_LOGFILEW.ProcessTraceMode (evntcons.h)
PROCESS_TRACE_MODE_REAL_TIME = 0x00000100
PROCESS_TRACE_MODE_RAW_TIMESTAMP = 0x00001000
PROCESS_TRACE_MODE_EVENT_RECORD = 0x10000000

INVALID_PROCESSTRACE_HANDLE = 0xFFFFFFFFFFFFFFFF  # (TRACEHANDLE)INVALID_HANDLE_VALUE on 64-bit

# Win32 errors the live source tells apart (winerror.h)
ERROR_SUCCESS = 0
ERROR_ACCESS_DENIED = 5
ERROR_BAD_LENGTH = 24
ERROR_INVALID_PARAMETER = 87
ERROR_ALREADY_EXISTS = 183
ERROR_MORE_DATA = 234
ERROR_NO_SYSTEM_RESOURCES = 1450
ERROR_WMI_INSTANCE_NOT_FOUND = 4201
ERROR_CTX_CLOSE_PENDING = 7007

MAX_SESSION_NAME_CHARS = 1024  # with its nul; StartTrace's documented limit
EVENT_TRACE_GUID = bytes.fromhex("00d9fd683e4ad11184f40000f80464e3")  # 68fdd900-4a3e-11d1-84f4-0000f80464e3, stored


class GUID(ctypes.Structure):
    _fields_ = (("Data1", c_uint32), ("Data2", c_uint16), ("Data3", c_uint16), ("Data4", c_uint8 * 8))

    @classmethod
    def from_stored(cls, b: bytes) -> GUID:
        """From the 16 bytes a GUID is stored as (Data1..3 little-endian)."""
        return cls.from_buffer_copy(b)


class SYSTEMTIME(ctypes.Structure):
    _fields_ = (("wYear", c_uint16), ("wMonth", c_uint16), ("wDayOfWeek", c_uint16), ("wDay", c_uint16),
                ("wHour", c_uint16), ("wMinute", c_uint16), ("wSecond", c_uint16), ("wMilliseconds", c_uint16))


class TIME_ZONE_INFORMATION(ctypes.Structure):
    _fields_ = (("Bias", c_int32), ("StandardName", c_uint16 * 32), ("StandardDate", SYSTEMTIME),
                ("StandardBias", c_int32), ("DaylightName", c_uint16 * 32), ("DaylightDate", SYSTEMTIME),
                ("DaylightBias", c_int32))


class _WnodeContext(ctypes.Structure):
    _fields_ = (("Version", c_uint32), ("Linkage", c_uint32))


class _WnodeHistorical(ctypes.Union):
    _anonymous_ = ("_v",)
    _fields_ = (("HistoricalContext", c_uint64), ("_v", _WnodeContext))


class _WnodeHandle(ctypes.Union):
    _fields_ = (("KernelHandle", c_void_p), ("TimeStamp", c_int64))


class WNODE_HEADER(ctypes.Structure):
    _anonymous_ = ("_h", "_k")
    _fields_ = (("BufferSize", c_uint32), ("ProviderId", c_uint32), ("_h", _WnodeHistorical), ("_k", _WnodeHandle),
                ("Guid", GUID), ("ClientContext", c_uint32), ("Flags", c_uint32))


class EVENT_TRACE_PROPERTIES(ctypes.Structure):
    _fields_ = (("Wnode", WNODE_HEADER), ("BufferSize", c_uint32), ("MinimumBuffers", c_uint32),
                ("MaximumBuffers", c_uint32), ("MaximumFileSize", c_uint32), ("LogFileMode", c_uint32),
                ("FlushTimer", c_uint32), ("EnableFlags", c_uint32), ("AgeLimit", c_int32),  # or FlushThreshold
                ("NumberOfBuffers", c_uint32), ("FreeBuffers", c_uint32), ("EventsLost", c_uint32),
                ("BuffersWritten", c_uint32), ("LogBuffersLost", c_uint32), ("RealTimeBuffersLost", c_uint32),
                ("LoggerThreadId", c_void_p), ("LogFileNameOffset", c_uint32), ("LoggerNameOffset", c_uint32))


class SessionProperties(ctypes.Structure):
    """EVENT_TRACE_PROPERTIES with room after it for the names StartTrace and ControlTrace copy in and out
    (LoggerNameOffset, LogFileNameOffset point into this block)."""

    _fields_ = (("Properties", EVENT_TRACE_PROPERTIES), ("LoggerName", c_uint16 * MAX_SESSION_NAME_CHARS),
                ("LogFileName", c_uint16 * MAX_SESSION_NAME_CHARS))


class EVENT_FILTER_DESCRIPTOR(ctypes.Structure):
    _fields_ = (("Ptr", c_uint64), ("Size", c_uint32), ("Type", c_uint32))


class ENABLE_TRACE_PARAMETERS(ctypes.Structure):
    _fields_ = (("Version", c_uint32), ("EnableProperty", c_uint32), ("ControlFlags", c_uint32), ("SourceId", GUID),
                ("EnableFilterDesc", c_void_p), ("FilterDescCount", c_uint32))


class EVENT_DESCRIPTOR(ctypes.Structure):
    _fields_ = (("Id", c_uint16), ("Version", c_uint8), ("Channel", c_uint8), ("Level", c_uint8),
                ("Opcode", c_uint8), ("Task", c_uint16), ("Keyword", c_uint64))


class _CpuTimes(ctypes.Structure):
    _fields_ = (("KernelTime", c_uint32), ("UserTime", c_uint32))


class _ProcessorTime(ctypes.Union):
    _anonymous_ = ("_t",)
    _fields_ = (("_t", _CpuTimes), ("ProcessorTime", c_uint64))


class EVENT_HEADER(ctypes.Structure):
    _anonymous_ = ("_p",)
    _fields_ = (("Size", c_uint16), ("HeaderType", c_uint16), ("Flags", c_uint16), ("EventProperty", c_uint16),
                ("ThreadId", c_uint32), ("ProcessId", c_uint32), ("TimeStamp", c_int64), ("ProviderId", GUID),
                ("EventDescriptor", EVENT_DESCRIPTOR), ("_p", _ProcessorTime), ("ActivityId", GUID))


class _ProcessorNumber(ctypes.Structure):
    _fields_ = (("ProcessorNumber", c_uint8), ("Alignment", c_uint8))


class _ProcessorIndex(ctypes.Union):
    _anonymous_ = ("_n",)
    _fields_ = (("_n", _ProcessorNumber), ("ProcessorIndex", c_uint16))


class ETW_BUFFER_CONTEXT(ctypes.Structure):
    _anonymous_ = ("_i",)
    _fields_ = (("_i", _ProcessorIndex), ("LoggerId", c_uint16))


class EVENT_HEADER_EXTENDED_DATA_ITEM(ctypes.Structure):
    _fields_ = (("Reserved1", c_uint16), ("ExtType", c_uint16), ("Linkage", c_uint16, 1), ("Reserved2", c_uint16, 15),
                ("DataSize", c_uint16), ("DataPtr", c_uint64))


class EVENT_RECORD(ctypes.Structure):
    _fields_ = (("EventHeader", EVENT_HEADER), ("BufferContext", ETW_BUFFER_CONTEXT), ("ExtendedDataCount", c_uint16),
                ("UserDataLength", c_uint16), ("ExtendedData", c_void_p), ("UserData", c_void_p),
                ("UserContext", c_void_p))


class _TraceHeaderClass(ctypes.Structure):
    _fields_ = (("Type", c_uint8), ("Level", c_uint8), ("Version", c_uint16))


class _TraceHeaderVersion(ctypes.Union):
    _fields_ = (("Version", c_uint32), ("Class", _TraceHeaderClass))


class _TraceHeaderKind(ctypes.Structure):
    _fields_ = (("HeaderType", c_uint8), ("MarkerFlags", c_uint8))


class _TraceHeaderFlags(ctypes.Union):
    _anonymous_ = ("_k",)
    _fields_ = (("FieldTypeFlags", c_uint16), ("_k", _TraceHeaderKind))


class _TraceHeaderGuid(ctypes.Union):
    _fields_ = (("Guid", GUID), ("GuidPtr", c_uint64))


class _TraceHeaderContext(ctypes.Structure):
    _fields_ = (("ClientContext", c_uint32), ("Flags", c_uint32))


class _TraceHeaderTimes(ctypes.Union):
    _anonymous_ = ("_t", "_c")
    _fields_ = (("_t", _CpuTimes), ("ProcessorTime", c_uint64), ("_c", _TraceHeaderContext))


class EVENT_TRACE_HEADER(ctypes.Structure):
    _anonymous_ = ("_f", "_v", "_g", "_t")
    _fields_ = (("Size", c_uint16), ("_f", _TraceHeaderFlags), ("_v", _TraceHeaderVersion), ("ThreadId", c_uint32),
                ("ProcessId", c_uint32), ("TimeStamp", c_int64), ("_g", _TraceHeaderGuid), ("_t", _TraceHeaderTimes))


class _EventTraceContext(ctypes.Union):
    _fields_ = (("ClientContext", c_uint32), ("BufferContext", ETW_BUFFER_CONTEXT))


class EVENT_TRACE(ctypes.Structure):
    _anonymous_ = ("_c",)
    _fields_ = (("Header", EVENT_TRACE_HEADER), ("InstanceId", c_uint32), ("ParentInstanceId", c_uint32),
                ("ParentGuid", GUID), ("MofData", c_void_p), ("MofLength", c_uint32), ("_c", _EventTraceContext))


class _LogfileVersionDetail(ctypes.Structure):
    _fields_ = (("MajorVersion", c_uint8), ("MinorVersion", c_uint8), ("SubVersion", c_uint8),
                ("SubMinorVersion", c_uint8))


class _LogfileVersion(ctypes.Union):
    _fields_ = (("Version", c_uint32), ("VersionDetail", _LogfileVersionDetail))


class _LogfileCounts(ctypes.Structure):
    _fields_ = (("StartBuffers", c_uint32), ("PointerSize", c_uint32), ("EventsLost", c_uint32),
                ("CpuSpeedInMHz", c_uint32))


class _LogfileInstance(ctypes.Union):
    _anonymous_ = ("_c",)
    _fields_ = (("LogInstanceGuid", GUID), ("_c", _LogfileCounts))


class TRACE_LOGFILE_HEADER(ctypes.Structure):
    _anonymous_ = ("_v", "_i")
    _fields_ = (("BufferSize", c_uint32), ("_v", _LogfileVersion), ("ProviderVersion", c_uint32),
                ("NumberOfProcessors", c_uint32), ("EndTime", c_int64), ("TimerResolution", c_uint32),
                ("MaximumFileSize", c_uint32), ("LogFileMode", c_uint32), ("BuffersWritten", c_uint32),
                ("_i", _LogfileInstance), ("LoggerName", c_void_p), ("LogFileName", c_void_p),
                ("TimeZone", TIME_ZONE_INFORMATION), ("BootTime", c_int64), ("PerfFreq", c_int64),
                ("StartTime", c_int64), ("ReservedFlags", c_uint32), ("BuffersLost", c_uint32))


class _LogfileMode(ctypes.Union):
    _fields_ = (("LogFileMode", c_uint32), ("ProcessTraceMode", c_uint32))


class _LogfileCallback(ctypes.Union):
    _fields_ = (("EventCallback", c_void_p), ("EventRecordCallback", c_void_p))


class EVENT_TRACE_LOGFILEW(ctypes.Structure):
    _anonymous_ = ("_m", "_cb")
    _fields_ = (("LogFileName", c_void_p), ("LoggerName", c_void_p), ("CurrentTime", c_int64),
                ("BuffersRead", c_uint32), ("_m", _LogfileMode), ("CurrentEvent", EVENT_TRACE),
                ("LogfileHeader", TRACE_LOGFILE_HEADER), ("BufferCallback", c_void_p), ("BufferSize", c_uint32),
                ("Filled", c_uint32), ("EventsLost", c_uint32), ("_cb", _LogfileCallback),
                ("IsKernelTrace", c_uint32), ("Context", c_void_p))


def wide_text(chars: ctypes.Array[c_uint16]) -> str:
    """A WCHAR array's text up to its first nul."""
    units = list(chars)
    n = units.index(0) if 0 in units else len(units)
    return bytes(ctypes.string_at(ctypes.addressof(chars), 2 * n)).decode("utf-16-le", "replace")


def set_wide_text(chars: ctypes.Array[c_uint16], text: str) -> None:
    """Store `text` and a nul in a WCHAR array."""
    data = text.encode("utf-16-le")
    if len(data) // 2 >= len(chars):
        raise ValueError(f"{text!r} does not fit in {len(chars) - 1} UTF-16 units")
    ctypes.memset(ctypes.addressof(chars), 0, ctypes.sizeof(chars))
    ctypes.memmove(ctypes.addressof(chars), data, len(data))
