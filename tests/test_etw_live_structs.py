"""The live ETW source's ctypes layouts and its EventRecordCallback, exercised without Windows.

Layouts: every size and offset below is a literal from the documented x64 layouts, read from the PDB-derived
headers of ntdiff/headers (x64 system DLLs; e.g. "/* 0x0058 */ struct _EVENT_HEADER_EXTENDED_DATA_ITEM*
ExtendedData; ... /* size: 0x0070 */" for EVENT_RECORD), with the member order of evntrace.h / evntcons.h /
evntprov.h as Microsoft Learn gives them. ENABLE_TRACE_PARAMETERS is ntdiff's version-1 layout (size 0x28,
EnableFilterDesc at 0x20) plus evntrace.h's FilterDescCount (ULONG at 0x28, size 0x30 after padding).
EVENT_HEADER_EXTENDED_DATA_ITEM is evntcons.h's: USHORT Reserved1, USHORT ExtType, USHORT Linkage:1 Reserved2:15,
USHORT DataSize, ULONGLONG DataPtr.

Callback: EVENT_RECORDs are built in memory with ctypes from the records of a real ETL file (the corpus's
SelfDescribingSingleEvent.etl, a Windows 11 TraceLogging event) and from the TraceLogging encoder, then handed to
the very function pointer the source gives OpenTraceW; the Event that comes out must equal the ETL reader's.
"""

from __future__ import annotations

import ctypes
import struct
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from support import CORPUS, corpus_file

from dyntel.decoders.etw_header import (
    EVENT_HEADER_FLAG_64_BIT_HEADER,
    EVENT_HEADER_FLAG_EXTENDED_INFO,
    EVENT_HEADER_FLAG_PROCESSOR_INDEX,
    EXT_TYPE_RELATED_ACTIVITYID,
    EXT_TYPE_STACK_TRACE64,
)
from dyntel.decoders.tracelogging import TypeCache, decode_etw_event
from dyntel.encoders.tracelogging import ARRAY_VARIABLE, Field, InType, OutType, encode_event, provider_id
from dyntel.event import Event
from dyntel.sources import SourceStats
from dyntel.sources.enabler import EnableError
from dyntel.sources.etw import structs as s
from dyntel.sources.etw.etl import EtlSource
from dyntel.sources.etw.etl_buffers import walk_buffers
from dyntel.sources.etw.etl_records import HEADER_TYPES
from dyntel.sources.etw.live import (
    ALL_KEYWORDS,
    EVENT_RECORD_CALLBACK,
    EtwClock,
    EtwEnabler,
    EtwLiveSource,
    EtwLiveStats,
    RecordPump,
    _properties,
    clock_for,
    provider,
    record_parts,
)
from dyntel.sources.perf.tracefs import LiveSetupError

ETL_NAME = "etw/SelfDescribingSingleEvent.etl"
ETL = CORPUS / ETL_NAME
FILETIME_UNIX_EPOCH = 116_444_736_000_000_000

# (structure, size, {field: offset}) from the x64 layouts named in the module notes.
LAYOUTS: list[tuple[type[ctypes.Structure], int, dict[str, int]]] = [
    (s.GUID, 0x10, {"Data1": 0x0, "Data2": 0x4, "Data3": 0x6, "Data4": 0x8}),
    (s.SYSTEMTIME, 0x10, {"wYear": 0x0, "wMonth": 0x2, "wDayOfWeek": 0x4, "wDay": 0x6, "wHour": 0x8,
                          "wMinute": 0xA, "wSecond": 0xC, "wMilliseconds": 0xE}),
    (s.TIME_ZONE_INFORMATION, 0xAC, {"Bias": 0x0, "StandardName": 0x4, "StandardDate": 0x44, "StandardBias": 0x54,
                                     "DaylightName": 0x58, "DaylightDate": 0x98, "DaylightBias": 0xA8}),
    (s.WNODE_HEADER, 0x30, {"BufferSize": 0x0, "ProviderId": 0x4, "HistoricalContext": 0x8, "Version": 0x8,
                            "Linkage": 0xC, "KernelHandle": 0x10, "TimeStamp": 0x10, "Guid": 0x18,
                            "ClientContext": 0x28, "Flags": 0x2C}),
    (s.EVENT_TRACE_PROPERTIES, 0x78, {"Wnode": 0x0, "BufferSize": 0x30, "MinimumBuffers": 0x34,
                                      "MaximumBuffers": 0x38, "MaximumFileSize": 0x3C, "LogFileMode": 0x40,
                                      "FlushTimer": 0x44, "EnableFlags": 0x48, "AgeLimit": 0x4C,
                                      "NumberOfBuffers": 0x50, "FreeBuffers": 0x54, "EventsLost": 0x58,
                                      "BuffersWritten": 0x5C, "LogBuffersLost": 0x60, "RealTimeBuffersLost": 0x64,
                                      "LoggerThreadId": 0x68, "LogFileNameOffset": 0x70, "LoggerNameOffset": 0x74}),
    (s.EVENT_FILTER_DESCRIPTOR, 0x10, {"Ptr": 0x0, "Size": 0x8, "Type": 0xC}),
    (s.ENABLE_TRACE_PARAMETERS, 0x30, {"Version": 0x0, "EnableProperty": 0x4, "ControlFlags": 0x8, "SourceId": 0xC,
                                       "EnableFilterDesc": 0x20, "FilterDescCount": 0x28}),
    (s.EVENT_DESCRIPTOR, 0x10, {"Id": 0x0, "Version": 0x2, "Channel": 0x3, "Level": 0x4, "Opcode": 0x5,
                                "Task": 0x6, "Keyword": 0x8}),
    (s.EVENT_HEADER, 0x50, {"Size": 0x0, "HeaderType": 0x2, "Flags": 0x4, "EventProperty": 0x6, "ThreadId": 0x8,
                            "ProcessId": 0xC, "TimeStamp": 0x10, "ProviderId": 0x18, "EventDescriptor": 0x28,
                            "KernelTime": 0x38, "UserTime": 0x3C, "ProcessorTime": 0x38, "ActivityId": 0x40}),
    (s.ETW_BUFFER_CONTEXT, 0x4, {"ProcessorNumber": 0x0, "Alignment": 0x1, "ProcessorIndex": 0x0,
                                 "LoggerId": 0x2}),
    (s.EVENT_HEADER_EXTENDED_DATA_ITEM, 0x10, {"Reserved1": 0x0, "ExtType": 0x2, "Linkage": 0x4, "Reserved2": 0x4,
                                               "DataSize": 0x6, "DataPtr": 0x8}),
    (s.EVENT_RECORD, 0x70, {"EventHeader": 0x0, "BufferContext": 0x50, "ExtendedDataCount": 0x54,
                            "UserDataLength": 0x56, "ExtendedData": 0x58, "UserData": 0x60, "UserContext": 0x68}),
    (s.EVENT_TRACE_HEADER, 0x30, {"Size": 0x0, "FieldTypeFlags": 0x2, "HeaderType": 0x2, "MarkerFlags": 0x3,
                                  "Version": 0x4, "Class": 0x4, "ThreadId": 0x8, "ProcessId": 0xC,
                                  "TimeStamp": 0x10, "Guid": 0x18, "GuidPtr": 0x18, "KernelTime": 0x28,
                                  "UserTime": 0x2C, "ProcessorTime": 0x28, "ClientContext": 0x28, "Flags": 0x2C}),
    (s.EVENT_TRACE, 0x58, {"Header": 0x0, "InstanceId": 0x30, "ParentInstanceId": 0x34, "ParentGuid": 0x38,
                           "MofData": 0x48, "MofLength": 0x50, "ClientContext": 0x54, "BufferContext": 0x54}),
    (s.TRACE_LOGFILE_HEADER, 0x118, {"BufferSize": 0x0, "Version": 0x4, "VersionDetail": 0x4,
                                     "ProviderVersion": 0x8, "NumberOfProcessors": 0xC, "EndTime": 0x10,
                                     "TimerResolution": 0x18, "MaximumFileSize": 0x1C, "LogFileMode": 0x20,
                                     "BuffersWritten": 0x24, "LogInstanceGuid": 0x28, "StartBuffers": 0x28,
                                     "PointerSize": 0x2C, "EventsLost": 0x30, "CpuSpeedInMHz": 0x34,
                                     "LoggerName": 0x38, "LogFileName": 0x40, "TimeZone": 0x48, "BootTime": 0xF8,
                                     "PerfFreq": 0x100, "StartTime": 0x108, "ReservedFlags": 0x110,
                                     "BuffersLost": 0x114}),
    (s.EVENT_TRACE_LOGFILEW, 0x1C0, {"LogFileName": 0x0, "LoggerName": 0x8, "CurrentTime": 0x10,
                                     "BuffersRead": 0x18, "LogFileMode": 0x1C, "ProcessTraceMode": 0x1C,
                                     "CurrentEvent": 0x20, "LogfileHeader": 0x78, "BufferCallback": 0x190,
                                     "BufferSize": 0x198, "Filled": 0x19C, "EventsLost": 0x1A0,
                                     "EventCallback": 0x1A8, "EventRecordCallback": 0x1A8, "IsKernelTrace": 0x1B0,
                                     "Context": 0x1B8}),
]


def field_offset(struct_type: type[ctypes.Structure], name: str) -> int:
    """A member's offset, looking through anonymous unions and structures as C does."""
    direct = getattr(struct_type, name, None)
    if isinstance(direct, type(s.GUID.Data1)) and name in {f[0] for f in struct_type._fields_}:
        return int(direct.offset)
    for member in struct_type._fields_:
        inner_name, inner_type = member[0], member[1]
        if inner_name in getattr(struct_type, "_anonymous_", ()):
            try:
                return int(getattr(struct_type, inner_name).offset) + field_offset(inner_type, name)
            except KeyError:
                continue
    raise KeyError(name)


@pytest.mark.parametrize(("struct_type", "size", "offsets"), LAYOUTS, ids=[t.__name__ for t, _, _ in LAYOUTS])
def test_struct_layouts_match_the_documented_x64_values(struct_type: type[ctypes.Structure], size: int,
                                                        offsets: dict[str, int]) -> None:
    assert ctypes.sizeof(struct_type) == size
    assert {name: field_offset(struct_type, name) for name in offsets} == offsets
    # Every member is listed: a member added or lost (not just moved) shows up too.
    declared = set()
    for member in struct_type._fields_:
        if member[0] in getattr(struct_type, "_anonymous_", ()):
            declared |= _flat_names(member[1])
        else:
            declared.add(member[0])
    assert declared == set(offsets)


def _flat_names(t: Any) -> set[str]:
    out = set()
    for member in t._fields_:
        if member[0] in getattr(t, "_anonymous_", ()):
            out |= _flat_names(member[1])
        else:
            out.add(member[0])
    return out


def test_extended_item_linkage_is_the_low_bit_of_its_ushort() -> None:
    item = s.EVENT_HEADER_EXTENDED_DATA_ITEM(ExtType=11, Linkage=1, DataSize=23, DataPtr=0x1122334455667788)
    assert bytes(item) == struct.pack("<HHHHQ", 0, 11, 1, 23, 0x1122334455667788)


def test_session_properties_carry_their_name_after_the_structure() -> None:
    props = _properties("dyntel-test", 64)
    p = props.Properties
    assert p.Wnode.BufferSize == ctypes.sizeof(props)
    assert p.LoggerNameOffset == ctypes.sizeof(s.EVENT_TRACE_PROPERTIES) == 0x78
    assert p.Wnode.Flags == s.WNODE_FLAG_TRACED_GUID and p.Wnode.ClientContext == s.CLOCK_QPC
    assert p.LogFileMode == s.EVENT_TRACE_REAL_TIME_MODE and p.BufferSize == 64
    raw = bytes(props)
    assert raw[0x78:0x78 + 24] == "dyntel-test".encode("utf-16-le") + b"\0\0"
    assert s.wide_text(props.LoggerName) == "dyntel-test"


# ----------------------------------------------------------------------------------------------------------------
# Records of a real ETL file


def etl_records(data: bytes) -> list[tuple[Any, int, int, int]]:
    """(buffer, header type, position, size) of every record, walked as the ETL format frames them."""
    out = []
    for buf in walk_buffers(data, SourceStats()):
        d, pos, end = buf.data, buf.start, buf.end
        while end - pos >= 8 and d[pos + 3] == 0xC0 and d[pos + 2] in HEADER_TYPES:
            _kind, _header_size, size_at = HEADER_TYPES[d[pos + 2]]
            size = d[pos + size_at] | d[pos + size_at + 1] << 8
            out.append((buf, d[pos + 2], pos, size))
            pos += (size + 7) & ~7
    return out


class BuiltRecord:
    """An EVENT_RECORD in memory and the buffers its pointers point at (kept alive with it)."""

    def __init__(self, header: s.EVENT_HEADER, items: list[tuple[int, bytes]], user: bytes, processor: int) -> None:
        self.data = [ctypes.create_string_buffer(d, max(len(d), 1)) for _, d in items]
        self.items = (s.EVENT_HEADER_EXTENDED_DATA_ITEM * max(len(items), 1))()
        for i, ((ext_type, d), buf) in enumerate(zip(items, self.data, strict=True)):
            self.items[i].ExtType = ext_type
            self.items[i].Linkage = 1 if i + 1 < len(items) else 0
            self.items[i].DataSize = len(d)
            self.items[i].DataPtr = ctypes.addressof(buf)
        self.user = ctypes.create_string_buffer(user, max(len(user), 1))
        rec = self.record = s.EVENT_RECORD()
        rec.EventHeader = header
        if header.Flags & EVENT_HEADER_FLAG_PROCESSOR_INDEX:
            rec.BufferContext.ProcessorIndex = processor
        else:
            rec.BufferContext.ProcessorNumber = processor
        rec.ExtendedDataCount = len(items)
        rec.ExtendedData = ctypes.addressof(self.items) if items else None
        rec.UserDataLength = len(user)
        rec.UserData = ctypes.addressof(self.user)


def deliver(pump: RecordPump, built: BuiltRecord) -> Event:
    """Call the callback through the pointer OpenTraceW would be given, as ProcessTrace calls it."""
    logfile = s.EVENT_TRACE_LOGFILEW()
    logfile.EventRecordCallback = ctypes.cast(pump.callback, ctypes.c_void_p).value
    callback = EVENT_RECORD_CALLBACK(logfile.EventRecordCallback)
    callback(ctypes.pointer(built.record))
    event = pump.get(0)
    assert event is not None, pump.stats.problems
    return event


def same_event(a: Event, b: Event) -> None:
    for attr in ("provider", "name", "source", "time", "time_is_wall", "cpu", "pid", "tid", "level", "keyword",
                 "opcode", "id", "version", "tag", "activity", "related_activity", "callchain"):
        assert getattr(a, attr) == getattr(b, attr), attr
    assert a.fields == b.fields
    assert [(f.name, f.encoding, f.format, f.tag) for f in a.schema.fields] == \
           [(f.name, f.encoding, f.format, f.tag) for f in b.schema.fields]


@pytest.fixture(scope="module")
def corpus() -> bytes:
    return corpus_file(ETL_NAME).read_bytes()


def test_logfile_header_struct_reads_a_real_etl_header(corpus: bytes) -> None:
    # The first record of an ETL file is a system record whose data is a TRACE_LOGFILE_HEADER (64-bit writer).
    buf, header_type, pos, size = etl_records(corpus)[0]
    assert HEADER_TYPES[header_type][0] == "system"
    mof = bytes(buf.data[pos + 32:pos + size])
    h = s.TRACE_LOGFILE_HEADER.from_buffer_copy(mof)
    reader = EtlSource(str(ETL), ETL.open("rb"))
    list(reader.events())
    assert reader.header is not None
    assert (h.PointerSize, h.ReservedFlags, h.PerfFreq, h.BufferSize) == (8, s.CLOCK_QPC, 10_000_000, 65536)
    assert (h.StartTime, h.BootTime, h.EndTime) == (reader.header.start_time, reader.header.boot_time,
                                                   reader.header.end_time)
    assert (h.NumberOfProcessors, h.CpuSpeedInMHz, h.TimerResolution) == (12, 3192, 156250)
    assert (h.VersionDetail.MajorVersion, h.VersionDetail.MinorVersion) == (10, 0)
    # The time zone sits 0x48 bytes in; its names are resource references on Windows 10 and later.
    assert s.wide_text(h.TimeZone.StandardName) == "@tzres.dll,-212"
    assert s.wide_text(h.TimeZone.DaylightName) == "@tzres.dll,-211"
    # The logger and log file names follow the header.
    assert mof[ctypes.sizeof(h):].decode("utf-16-le").split("\0")[:2] == ["Relogger", "[multiple files]"]


def _corpus_event_record(corpus: bytes) -> tuple[BuiltRecord, s.TRACE_LOGFILE_HEADER, int]:
    records = etl_records(corpus)
    buf0, _, pos0, size0 = records[0]
    logfile = s.TRACE_LOGFILE_HEADER.from_buffer_copy(bytes(buf0.data[pos0 + 32:pos0 + size0]))
    start_ticks = struct.unpack_from("<q", buf0.data, pos0 + 16)[0]  # the header record's own timestamp
    events = [r for r in records if HEADER_TYPES[r[1]][0] == "event"]
    assert len(events) == 1
    buf, _, pos, size = events[0]
    d = buf.data
    header = s.EVENT_HEADER.from_buffer_copy(bytes(d[pos:pos + 80]))
    items = []
    p = pos + 80
    linkage = header.Flags & EVENT_HEADER_FLAG_EXTENDED_INFO
    while linkage:
        _r1, ext_type, linkage, n = struct.unpack_from("<HHHH", d, p)
        items.append((ext_type, bytes(d[p + 8:p + 8 + n])))
        p += 8 + ((n + 7) & ~7)
        linkage &= 1
    return BuiltRecord(header, items, bytes(d[p:pos + size]), buf.processor), logfile, start_ticks


def test_callback_on_a_real_etl_record_gives_the_file_readers_event(corpus: bytes) -> None:
    reader = EtlSource(str(ETL), ETL.open("rb"))
    expected = [e for e in reader.events() if e.name == "TestEvent"]
    assert len(expected) == 1 and expected[0].fields == {"a": {"b": "Hello", "c": "World!"}}
    built, logfile, start_ticks = _corpus_event_record(corpus)

    # Raw timestamps: QPC ticks placed on the wall clock by the logfile header's StartTime and PerfFreq.
    start_ns = (logfile.StartTime - FILETIME_UNIX_EPOCH) * 100
    pump = RecordPump(EtwLiveStats(), clock_for(logfile, raw=True, ref_ticks=start_ticks, ref_unix_ns=start_ns))
    same_event(deliver(pump, built), expected[0])

    # Default mode: ProcessTrace has already turned the stamp into a FILETIME.
    qpc = built.record.EventHeader.TimeStamp
    built.record.EventHeader.TimeStamp = logfile.StartTime + (qpc - start_ticks) * 10_000_000 // logfile.PerfFreq
    pump = RecordPump(EtwLiveStats())
    same_event(deliver(pump, built), expected[0])
    assert pump.stats.records == 1 and pump.stats.bad == 0


# ----------------------------------------------------------------------------------------------------------------
# Records from the encoder


FIELDS = [Field("s", InType.UNICODESTRING), Field("n", InType.INT64), Field("h", InType.UINT32, OutType.HEX),
          Field("g", InType.GUID), Field("sid", InType.SID), Field("arr", InType.UINT16, array=ARRAY_VARIABLE),
          Field("st", InType.STRUCT, fields=(Field("x", InType.DOUBLE), Field("t", InType.ANSISTRING)))]
GUID_VALUE = uuid.UUID("00010203-0405-0607-0809-0a0b0c0d0e0f")
VALUES = ["wide", -9, 0xC0FFEE, GUID_VALUE, "S-1-5-18", [1, 2, 3], [0.5, "narrow"]]
FILETIME_2024 = 133_485_408_000_000_000  # 2024-01-01T00:00:00Z


def encoded_record(*, flags: int = EVENT_HEADER_FLAG_EXTENDED_INFO | EVENT_HEADER_FLAG_64_BIT_HEADER,
                   processor: int = 2, extra: list[tuple[int, bytes]] | None = None,
                   user: bytes | None = None) -> tuple[BuiltRecord, Any]:
    enc = encode_event("Dyntel.Live.Test", "LiveEv", FIELDS, VALUES, tags=0x5)
    h = s.EVENT_HEADER()
    h.Size = 0
    h.Flags = flags
    h.ThreadId, h.ProcessId = 1234, 5678
    h.TimeStamp = FILETIME_2024
    h.ProviderId = s.GUID.from_stored(enc.provider_id)
    d = h.EventDescriptor
    d.Id, d.Version, d.Channel, d.Level, d.Opcode, d.Task, d.Keyword = 3, 1, 11, 2, 9, 0, 0x40
    h.ActivityId = s.GUID.from_stored(bytes(range(100, 116)))
    items = enc.extended + (extra or [])
    return BuiltRecord(h, items, enc.payload if user is None else user, processor), enc


def test_record_parts_copies_what_the_record_points_at() -> None:
    stack = struct.pack("<QQQ", 7, 0x7FF600001000, 0x7FF600002000)
    related = bytes(range(200, 216))
    built, enc = encoded_record(extra=[(EXT_TYPE_STACK_TRACE64, stack), (EXT_TYPE_RELATED_ACTIVITYID, related)])
    header, extended, user = record_parts(built.record, EtwClock())
    assert user == enc.payload
    assert extended == [*enc.extended, (EXT_TYPE_STACK_TRACE64, stack), (EXT_TYPE_RELATED_ACTIVITYID, related)]
    assert header.provider_id == provider_id("Dyntel.Live.Test")
    assert (header.event_id, header.version, header.channel, header.level, header.opcode, header.task,
            header.keyword) == (3, 1, 11, 2, 9, 0, 0x40)
    assert (header.pid, header.tid, header.processor) == (5678, 1234, 2)
    assert header.time_ns == 1_704_067_200 * 10**9
    assert header.activity_id == bytes(range(100, 116))


def test_callback_on_an_encoded_record_equals_decoding_its_parts() -> None:
    stack = struct.pack("<QQQ", 7, 0x7FF600001000, 0x7FF600002000)
    built, _enc = encoded_record(extra=[(EXT_TYPE_STACK_TRACE64, stack)])
    event = deliver(RecordPump(EtwLiveStats()), built)
    assert event.fields == {"s": "wide", "n": -9, "h": 0xC0FFEE, "g": GUID_VALUE.bytes, "sid": "S-1-5-18",
                            "arr": [1, 2, 3], "st": {"x": 0.5, "t": "narrow"}}
    assert (event.provider, event.name, event.tag, event.cpu, event.callchain) == (
        "Dyntel.Live.Test", "LiveEv", 0x5, 2, (0x7FF600001000, 0x7FF600002000))
    header, extended, user = record_parts(built.record, EtwClock())
    same_event(event, decode_etw_event(header, extended, user, types=TypeCache()))


def test_processor_index_flag_selects_the_16_bit_processor() -> None:
    built, _ = encoded_record(flags=EVENT_HEADER_FLAG_EXTENDED_INFO | EVENT_HEADER_FLAG_PROCESSOR_INDEX,
                              processor=300)
    assert deliver(RecordPump(EtwLiveStats()), built).cpu == 300


def test_full_queue_counts_drops_and_keeps_the_first_events() -> None:
    pump = RecordPump(EtwLiveStats(), maxsize=2)
    built, _ = encoded_record()
    for _ in range(5):
        pump.callback(ctypes.pointer(built.record))
    assert pump.stats.dropped == 3 and pump.queue.qsize() == 2 and pump.stats.records == 5


def test_bad_records_are_counted_not_raised() -> None:
    pump = RecordPump(EtwLiveStats())
    built, _enc = encoded_record(user=b"\x01")  # the schema wants far more than one byte
    pump.callback(ctypes.pointer(built.record))
    assert pump.get(0) is None
    assert pump.stats.bad == 1 and "Dyntel.Live.Test" in pump.stats.problems[0].message
    # The session's own header event (EventTraceGuid) is not an event of any provider.
    built.record.EventHeader.ProviderId = s.GUID.from_stored(s.EVENT_TRACE_GUID)
    pump.callback(ctypes.pointer(built.record))
    assert pump.stats.header_events == 1 and pump.get(0) is None


def test_want_filters_after_decoding() -> None:
    pump = RecordPump(EtwLiveStats())
    pump.want = lambda prov, name, level: name != "LiveEv"
    built, _ = encoded_record()
    pump.callback(ctypes.pointer(built.record))
    assert pump.get(0) is None and pump.stats.skipped == {"filtered": 1}


# ----------------------------------------------------------------------------------------------------------------
# Clocks, providers, and what the module does off Windows


def test_clocks_to_unix_ns() -> None:
    assert EtwClock().to_unix_ns(FILETIME_UNIX_EPOCH + 15) == 1500
    h = s.TRACE_LOGFILE_HEADER(PerfFreq=3_579_545, ReservedFlags=s.CLOCK_QPC)
    qpc = clock_for(h, raw=True, ref_ticks=1000, ref_unix_ns=10**18)
    assert qpc.to_unix_ns(1000 + 3_579_545 * 86_400 * 365) == 10**18 + 86_400 * 365 * 10**9  # a year, exact
    assert qpc.to_unix_ns(1000 + 1) == 10**18 + 279  # 1/3579545 s, rounded down
    assert qpc.to_unix_ns(1000 - 3_579_545) == 10**18 - 10**9
    cyc = clock_for(s.TRACE_LOGFILE_HEADER(CpuSpeedInMHz=3000, ReservedFlags=s.CLOCK_CPU_CYCLE), raw=True,
                    ref_ticks=0, ref_unix_ns=0)
    assert cyc.to_unix_ns(3_000_000_000) == 10**9
    assert clock_for(h, raw=False) == EtwClock()
    with pytest.raises(LiveSetupError):
        clock_for(s.TRACE_LOGFILE_HEADER(ReservedFlags=s.CLOCK_QPC), raw=True)


def test_provider_by_guid_or_tracelogging_name() -> None:
    by_guid = provider("{CE5FA4EA-AB00-5402-8B76-9F76AC858FB5}", level=4, match_any=0x10, stack=True)
    by_name = provider("MyCompany.MyComponent")
    assert by_guid.guid == by_name.guid and by_name.name == "MyCompany.MyComponent"
    assert (by_guid.level, by_guid.match_any, by_guid.stack) == (4, 0x10, True)
    assert by_guid.guid_text == "ce5fa4ea-ab00-5402-8b76-9f76ac858fb5"
    with pytest.raises(ValueError):
        provider("X", level=256)


def test_session_names_are_dyntels_and_runtime_changes_are_kept() -> None:
    src = EtwLiveSource([provider("A.B")], session="mine")
    assert src.session == "dyntel-mine" and src.name == "etw:dyntel-mine"
    spec = src.set_provider("A.B", level=2, match_any=0x3, stack=True)  # not open: remembered for open()
    assert (spec.level, spec.match_any, spec.match_all, spec.stack) == (2, 0x3, 0, True)
    assert src.providers[provider_id("A.B")] == spec
    assert src.remove("A.B") and not src.remove("A.B")


@pytest.mark.skipif(sys.platform == "win32", reason="checks what happens off Windows")
def test_off_windows_open_says_so_and_nothing_loads_advapi32() -> None:
    src = EtwLiveSource([provider("A.B")])
    with pytest.raises(LiveSetupError, match="Windows"):
        list(src.events())
    src.close()
    # Importing the CLI does not import the live ETW module: it stays isolated until something on Windows asks.
    code = "import sys, dyntel.cli; print('dyntel.sources.etw.live' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_enabler_merges_grants_into_the_session_and_reverts_them() -> None:
    src = EtwLiveSource([provider("Ruled.Provider", level=2, match_any=0x1)])
    enabler = EtwEnabler(src)
    now = 1_000_000_000_000
    # A provider no rule selects: on at the grant's level and keywords, off again when the grant ends.
    r = enabler.enable("Granted.Provider", 4, 0x30, now + 10)
    granted = provider_id("Granted.Provider")
    assert r.names == r.opened == ["Granted.Provider"] and r.until_ns == now + 10 and enabler.armed
    assert (src.providers[granted].level, src.providers[granted].match_any) == (4, 0x30)
    # A second grant widens the mask and the level; keyword 0 means every keyword.
    enabler.enable("Granted.Provider", 5, 0, now + 20)
    assert (src.providers[granted].level, src.providers[granted].match_any) == (5, ALL_KEYWORDS)
    enabler.apply(now + 10)
    assert (src.providers[granted].level, src.providers[granted].match_any) == (5, ALL_KEYWORDS)
    enabler.apply(now + 20)
    assert granted not in src.providers and not enabler.armed
    # A provider the rules already have: raised for the grant, then back to exactly what it was.
    ruled = provider_id("Ruled.Provider")
    before = src.providers[ruled]
    r = enabler.enable("Ruled.Provider", 5, 0x4, now + 30)
    assert r.opened == [] and (src.providers[ruled].level, src.providers[ruled].match_any) == (5, 0x5)
    enabler.close()
    assert src.providers[ruled] == before
    with pytest.raises(EnableError):
        enabler.enable("Ruled.Provider", 5, 0, now + 40)
    with pytest.raises(EnableError):
        EtwEnabler(src).enable("Ruled.Provider", 5, 0, now, event="Some*")


def test_dyntel_run_on_windows_opens_a_session_for_the_rules_providers(tmp_path: Path) -> None:
    """The Windows branch of the live loop, built (not opened: that needs advapi32) from real rules: one
    provider per rule provider and --events entry, TraceLogging names turned into their GUIDs, stacks on request."""
    from dyntel.encoders.tracelogging import provider_id
    from dyntel.live import RunOptions, _open_etw, etw_providers_for
    from dyntel.rules.loader import load_rules

    def rules_of(text: str, name: str) -> Any:
        path = tmp_path / name
        path.write_text(text)
        return load_rules([str(path)])

    rules = rules_of("version: 1\nrules:\n  - name: a\n    match: {provider: MyCompany.MyComponent}\n"
                     "  - name: b\n    match: {provider: MyCompany.MyComponent, event: X}\n"
                     "  - name: c\n    match: {provider: Other}\n", "r.yaml")
    guid = "{22fb2cd6-0e7b-422b-a0c7-2fad1fd0e716}"
    assert etw_providers_for(rules.rules, [guid]) == [guid, "MyCompany.MyComponent", "Other"]
    live = _open_etw(rules, RunOptions(events=[guid], callchain=True, etw_session="test"), lambda line: None)
    source = live.source
    assert source.session == "dyntel-test"
    specs = list(source.providers.values())
    assert [s.guid for s in specs] == [
        uuid.UUID(guid.strip("{}")).bytes_le, provider_id("MyCompany.MyComponent"), provider_id("Other")]
    assert all(s.stack for s in specs)
    live.open_for(rules_of("version: 1\nrules:\n  - name: d\n    match: {provider: Third}\n", "r2.yaml").rules)
    assert provider_id("Third") in source.providers
