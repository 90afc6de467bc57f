"""The identity of one ETW event, as the EVENT_HEADER of an ETL record or a live session's EVENT_RECORD gives it.

Both the ETL reader and the live ETW session (ctypes, Windows) fill an `EtwEventHeader` and hand it, with the
record's extended data items and user data, to `dyntel.decoders.tracelogging.decode_etw_event`; one decoder then
serves recordings and live sessions alike. The caller converts the record's timestamp to Unix-epoch nanoseconds,
since only it knows the session's clock (QPC, system time or CPU cycles) and its start time.
"""

from __future__ import annotations

from dataclasses import dataclass

# EVENT_HEADER.Flags (evntcons.h)
EVENT_HEADER_FLAG_EXTENDED_INFO = 0x0001
EVENT_HEADER_FLAG_PRIVATE_SESSION = 0x0002
EVENT_HEADER_FLAG_STRING_ONLY = 0x0004
EVENT_HEADER_FLAG_TRACE_MESSAGE = 0x0008
EVENT_HEADER_FLAG_NO_CPUTIME = 0x0010
EVENT_HEADER_FLAG_32_BIT_HEADER = 0x0020
EVENT_HEADER_FLAG_64_BIT_HEADER = 0x0040
EVENT_HEADER_FLAG_DECODE_GUID = 0x0080
EVENT_HEADER_FLAG_CLASSIC_HEADER = 0x0100
EVENT_HEADER_FLAG_PROCESSOR_INDEX = 0x0200

# EVENT_HEADER.EventProperty
EVENT_HEADER_PROPERTY_XML = 0x0001
EVENT_HEADER_PROPERTY_FORWARDED_XML = 0x0002
EVENT_HEADER_PROPERTY_LEGACY_EVENTLOG = 0x0004
EVENT_HEADER_PROPERTY_RELOGGABLE = 0x0008

# EVENT_HEADER_EXTENDED_DATA_ITEM.ExtType (evntcons.h)
EXT_TYPE_RELATED_ACTIVITYID = 0x0001
EXT_TYPE_SID = 0x0002
EXT_TYPE_TS_ID = 0x0003
EXT_TYPE_INSTANCE_INFO = 0x0004
EXT_TYPE_STACK_TRACE32 = 0x0005
EXT_TYPE_STACK_TRACE64 = 0x0006
EXT_TYPE_PEBS_INDEX = 0x0007
EXT_TYPE_PMC_COUNTERS = 0x0008
EXT_TYPE_PSM_KEY = 0x0009
EXT_TYPE_EVENT_KEY = 0x000A
EXT_TYPE_EVENT_SCHEMA_TL = 0x000B
EXT_TYPE_PROV_TRAITS = 0x000C
EXT_TYPE_PROCESS_START_KEY = 0x000D
EXT_TYPE_CONTROL_GUID = 0x000E
EXT_TYPE_QPC_DELTA = 0x000F
EXT_TYPE_CONTAINER_ID = 0x0010
EXT_TYPE_STACK_KEY32 = 0x0011
EXT_TYPE_STACK_KEY64 = 0x0012


@dataclass(slots=True)
class EtwEventHeader:
    """EVENT_HEADER's fields, plus the processor from ETW_BUFFER_CONTEXT."""

    provider_id: bytes  # 16 bytes, GUID as stored (Data1..3 little-endian)
    event_id: int
    version: int
    channel: int
    level: int
    opcode: int
    task: int
    keyword: int
    time_ns: int  # Unix epoch ns (the caller converts from the session's clock)
    pid: int
    tid: int
    processor: int
    activity_id: bytes  # 16 bytes
    flags: int  # EVENT_HEADER_FLAG_*
    event_property: int  # EVENT_HEADER_PROPERTY_* (XML, FORWARDED_XML, LEGACY_EVENTLOG)


def guid_text(b: bytes) -> str:
    """A GUID as stored (Data1..3 little-endian) in its registry form, lower case, without braces."""
    if len(b) != 16:
        return b.hex()
    return (f"{int.from_bytes(b[0:4], 'little'):08x}-{int.from_bytes(b[4:6], 'little'):04x}-"
            f"{int.from_bytes(b[6:8], 'little'):04x}-{b[8:10].hex()}-{b[10:16].hex()}")
