"""The record headers of ETL buffers: which kind a record is, how long it is, and its identity.

Every record starts with a 4-byte marker. With TRACE_HEADER_FLAG (0x80) and TRACE_HEADER_EVENT_TRACE (0x40) in its
last byte, the byte before it is the header type (TRACE_HEADER_TYPE_*); with TRACE_HEADER_FLAG and
TRACE_MESSAGE (0x10) instead, it is a WPP message. Records are 8-byte aligned; their size does not count the
padding. System and perfinfo records keep their size in the second 4 bytes (WMI_TRACE_PACKET: Size, HookId, the
hook id being the kernel event's group and type); every other kind keeps it in the first 2 bytes.

Layouts (sizes of the header before the record's data):
  system full (SYSTEM_TRACE_HEADER)      32: marker, packet, ThreadId, ProcessId, SystemTime, KernelTime, UserTime
  system compact                         24: marker, packet, ThreadId, ProcessId, SystemTime
  perfinfo (PERFINFO_TRACE_HEADER)       16: marker, packet, SystemTime
  classic (EVENT_TRACE_HEADER)           48: Size, type, flags, Class (Type, Level, Version), ThreadId,
                                             ProcessId, TimeStamp, Guid, ProcessorTime
  instance (EVENT_INSTANCE_GUID_HEADER)  72: as classic, then InstanceId, ParentInstanceId, ParentGuid
  event (EVENT_HEADER)                   80: Size, type, flags, Flags, EventProperty, ThreadId, ProcessId,
                                             TimeStamp, ProviderId, EventDescriptor, ProcessorTime, ActivityId;
                                             then extended data items if Flags has EXTENDED_INFO, each 8 bytes
                                             (Reserved1, ExtType, Linkage bit 0, DataSize) and its data, 8-aligned
  message (MESSAGE_TRACE_HEADER)          8: Size, flags, MessageNumber, OptionFlags; then by OptionFlags:
                                             sequence, GUID or component id, timestamp, ThreadId and ProcessId
"""

from __future__ import annotations

import struct

SYSTEM32 = 0x01
SYSTEM64 = 0x02
COMPACT32 = 0x03
COMPACT64 = 0x04
FULL32 = 0x0A
INSTANCE32 = 0x0B
PERFINFO32 = 0x10
PERFINFO64 = 0x11
EVENT32 = 0x12
EVENT64 = 0x13
FULL64 = 0x14
INSTANCE64 = 0x15

MARKER_EVENT_TRACE = 0xC0  # TRACE_HEADER_FLAG | TRACE_HEADER_EVENT_TRACE, in the marker's last byte
MARKER_MESSAGE = 0x90  # TRACE_HEADER_FLAG | TRACE_MESSAGE

KIND_SYSTEM = "system"
KIND_COMPACT = "compact"
KIND_PERFINFO = "perfinfo"
KIND_CLASSIC = "classic"
KIND_INSTANCE = "instance"
KIND_EVENT = "event"
KIND_MESSAGE = "message"

# header type -> (kind, header size, where the uint16 size is)
HEADER_TYPES: dict[int, tuple[str, int, int]] = {
    SYSTEM32: (KIND_SYSTEM, 32, 4),
    SYSTEM64: (KIND_SYSTEM, 32, 4),
    COMPACT32: (KIND_COMPACT, 24, 4),
    COMPACT64: (KIND_COMPACT, 24, 4),
    PERFINFO32: (KIND_PERFINFO, 16, 4),
    PERFINFO64: (KIND_PERFINFO, 16, 4),
    FULL32: (KIND_CLASSIC, 48, 0),
    FULL64: (KIND_CLASSIC, 48, 0),
    INSTANCE32: (KIND_INSTANCE, 72, 0),
    INSTANCE64: (KIND_INSTANCE, 72, 0),
    EVENT32: (KIND_EVENT, 80, 0),
    EVENT64: (KIND_EVENT, 80, 0),
}
POINTER_SIZE = {SYSTEM32: 4, COMPACT32: 4, PERFINFO32: 4, FULL32: 4, INSTANCE32: 4, EVENT32: 4}

# EVENT_HEADER after its first 4 bytes: Flags, EventProperty, ThreadId, ProcessId, TimeStamp, ProviderId,
# Id, Version, Channel, Level, Opcode, Task, Keyword, ProcessorTime, ActivityId
EVENT_HEADER = struct.Struct("<HHIIq16sHBBBBHQQ16s")
EXTENDED_ITEM = struct.Struct("<HHHH")  # Reserved1, ExtType, Linkage, DataSize
# SYSTEM_TRACE_HEADER after the marker: Size, Type, Group, ThreadId, ProcessId, SystemTime
SYSTEM_HEADER = struct.Struct("<HBBIIq")
PERFINFO_HEADER = struct.Struct("<HBBq")  # Size, Type, Group, SystemTime
# EVENT_TRACE_HEADER: Size, HeaderType, MarkerFlags, Type, Level, Version, ThreadId, ProcessId, TimeStamp, Guid
CLASSIC_HEADER = struct.Struct("<HBBBBHIIq16s")
MESSAGE_HEADER = struct.Struct("<HBBHH")  # Size, Reserved, Flags, MessageNumber, OptionFlags

MESSAGE_SEQUENCE = 0x01
MESSAGE_GUID = 0x02
MESSAGE_COMPONENTID = 0x04
MESSAGE_TIMESTAMP = 0x08
MESSAGE_PERFORMANCE_TIMESTAMP = 0x10
MESSAGE_SYSTEMINFO = 0x20

# Kernel event groups (the high byte of a hook id), named as the kernel providers' tasks are.
GROUPS = {
    0x00: "EventTrace", 0x01: "DiskIo", 0x02: "PageFault", 0x03: "Process", 0x04: "FileIo", 0x05: "Thread",
    0x06: "TcpIp", 0x07: "Job", 0x08: "UdpIp", 0x09: "Registry", 0x0A: "DbgPrint", 0x0B: "SystemConfig",
    0x0C: "Spare1", 0x0D: "Wnf", 0x0E: "Pool", 0x0F: "PerfInfo", 0x10: "Heap", 0x11: "Object", 0x12: "Power",
    0x13: "Modbound", 0x14: "Image", 0x15: "Dpc", 0x16: "Gdi", 0x17: "CritSec", 0x18: "StackWalk", 0x19: "Ums",
    0x1A: "ALPC", 0x1B: "SplitIo", 0x1C: "ThreadPool", 0x1D: "Hypervisor", 0x1E: "HypervisorX",
}
KERNEL_PROVIDER = "Windows Kernel"


def group_name(group: int) -> str:
    return GROUPS.get(group) or f"Group({group})"


def message_fields(data: bytes, pos: int, end: int, options: int) -> tuple[bytes | None, int | None, int, int, int]:
    """(GUID, timestamp, thread id, process id, data start) of a WPP message whose 8-byte header is at `pos`."""
    p = pos + 8
    guid: bytes | None = None
    ts: int | None = None
    tid = pid = 0
    if options & MESSAGE_SEQUENCE:
        p += 4
    if options & MESSAGE_GUID:
        if end - p >= 16:
            guid = bytes(data[p:p + 16])
        p += 16
    elif options & MESSAGE_COMPONENTID:
        p += 4
    if options & (MESSAGE_TIMESTAMP | MESSAGE_PERFORMANCE_TIMESTAMP):
        if end - p >= 8:
            ts = int.from_bytes(data[p:p + 8], "little", signed=True)
        p += 8
    if options & MESSAGE_SYSTEMINFO:
        if end - p >= 8:
            tid, pid = struct.unpack_from("<II", data, p)
        p += 8
    return guid, ts, tid, pid, p
