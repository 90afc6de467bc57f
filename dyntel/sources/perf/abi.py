"""Numbers and byte layouts of the perf.data format (include/uapi/linux/perf_event.h, tools/perf/util/header.h).

Only constants and precompiled `struct.Struct`s live here, so that the readers can import them without pulling in
any parsing code. Layouts that depend on the file's byte order come in pairs, indexed by `big_endian` (0 or 1).
"""

from __future__ import annotations

import struct
from typing import Final

MAGIC: Final = b"PERFILE2"
MAGIC_SWAPPED: Final = MAGIC[::-1]  # what a big-endian file starts with, read as bytes
PIPE_HEADER_SIZE: Final = 16
FILE_HEADER_SIZE: Final = 104  # magic, size, attr_size, 3 sections, 256 feature bits

# perf_event_header.type
RECORD_MMAP: Final = 1
RECORD_LOST: Final = 2
RECORD_COMM: Final = 3
RECORD_SAMPLE: Final = 9
RECORD_HEADER_ATTR: Final = 64
RECORD_HEADER_EVENT_TYPE: Final = 65
RECORD_HEADER_TRACING_DATA: Final = 66
RECORD_HEADER_BUILD_ID: Final = 67
RECORD_FINISHED_ROUND: Final = 68
RECORD_AUXTRACE: Final = 71
RECORD_EVENT_UPDATE: Final = 78
RECORD_HEADER_FEATURE: Final = 80
RECORD_COMPRESSED: Final = 81
RECORD_FINISHED_INIT: Final = 82

RECORD_NAMES: Final[dict[int, str]] = {
    1: "MMAP",
    2: "LOST",
    3: "COMM",
    4: "EXIT",
    5: "THROTTLE",
    6: "UNTHROTTLE",
    7: "FORK",
    8: "READ",
    9: "SAMPLE",
    10: "MMAP2",
    11: "AUX",
    12: "ITRACE_START",
    13: "LOST_SAMPLES",
    14: "SWITCH",
    15: "SWITCH_CPU_WIDE",
    16: "NAMESPACES",
    17: "KSYMBOL",
    18: "BPF_EVENT",
    19: "CGROUP",
    20: "TEXT_POKE",
    21: "AUX_OUTPUT_HW_ID",
    64: "HEADER_ATTR",
    65: "HEADER_EVENT_TYPE",
    66: "HEADER_TRACING_DATA",
    67: "HEADER_BUILD_ID",
    68: "FINISHED_ROUND",
    69: "ID_INDEX",
    70: "AUXTRACE_INFO",
    71: "AUXTRACE",
    72: "AUXTRACE_ERROR",
    73: "THREAD_MAP",
    74: "CPU_MAP",
    75: "STAT_CONFIG",
    76: "STAT",
    77: "STAT_ROUND",
    78: "EVENT_UPDATE",
    79: "TIME_CONV",
    80: "HEADER_FEATURE",
    81: "COMPRESSED",
    82: "FINISHED_INIT",
}


def record_name(record_type: int) -> str:
    return RECORD_NAMES.get(record_type) or f"UNKNOWN_{record_type}"


# perf_event_attr.type
TYPE_HARDWARE: Final = 0
TYPE_SOFTWARE: Final = 1
TYPE_TRACEPOINT: Final = 2

# perf_event_attr.sample_type bits, in the order their fields appear in a sample (except IDENTIFIER, which is
# first, and AUX, which is last)
SAMPLE_IP: Final = 1 << 0
SAMPLE_TID: Final = 1 << 1
SAMPLE_TIME: Final = 1 << 2
SAMPLE_ADDR: Final = 1 << 3
SAMPLE_READ: Final = 1 << 4
SAMPLE_CALLCHAIN: Final = 1 << 5
SAMPLE_ID: Final = 1 << 6
SAMPLE_CPU: Final = 1 << 7
SAMPLE_PERIOD: Final = 1 << 8
SAMPLE_STREAM_ID: Final = 1 << 9
SAMPLE_RAW: Final = 1 << 10
SAMPLE_BRANCH_STACK: Final = 1 << 11
SAMPLE_REGS_USER: Final = 1 << 12
SAMPLE_STACK_USER: Final = 1 << 13
SAMPLE_WEIGHT: Final = 1 << 14
SAMPLE_DATA_SRC: Final = 1 << 15
SAMPLE_IDENTIFIER: Final = 1 << 16
SAMPLE_TRANSACTION: Final = 1 << 17
SAMPLE_REGS_INTR: Final = 1 << 18
SAMPLE_PHYS_ADDR: Final = 1 << 19
SAMPLE_AUX: Final = 1 << 20
SAMPLE_CGROUP: Final = 1 << 21
SAMPLE_DATA_PAGE_SIZE: Final = 1 << 22
SAMPLE_CODE_PAGE_SIZE: Final = 1 << 23
SAMPLE_WEIGHT_STRUCT: Final = 1 << 24
SAMPLE_KNOWN: Final = (1 << 25) - 1

# perf_event_attr.branch_sample_type: a u64 hw_idx precedes the branch entries
BRANCH_HW_INDEX: Final = 1 << 17

# perf_event_attr.read_format bits
FORMAT_TOTAL_TIME_ENABLED: Final = 1 << 0
FORMAT_TOTAL_TIME_RUNNING: Final = 1 << 1
FORMAT_ID: Final = 1 << 2
FORMAT_GROUP: Final = 1 << 3
FORMAT_LOST: Final = 1 << 4

# Call-chain context markers (perf_callchain_context), as the u64 values stored among the addresses
CONTEXT_HV: Final = (1 << 64) - 32
CONTEXT_KERNEL: Final = (1 << 64) - 128
CONTEXT_USER: Final = (1 << 64) - 512
CONTEXT_GUEST: Final = (1 << 64) - 2048
CONTEXT_GUEST_KERNEL: Final = (1 << 64) - 2176
CONTEXT_GUEST_USER: Final = (1 << 64) - 2560
CONTEXT_MAX: Final = (1 << 64) - 4095  # every value from here up is a marker, not an address

# Feature bits of the file header (tools/perf/util/header.h)
HEADER_TRACING_DATA: Final = 1
HEADER_BUILD_ID: Final = 2
HEADER_HOSTNAME: Final = 3
HEADER_OSRELEASE: Final = 4
HEADER_VERSION: Final = 5
HEADER_ARCH: Final = 6
HEADER_NRCPUS: Final = 7
HEADER_CPUDESC: Final = 8
HEADER_CPUID: Final = 9
HEADER_TOTAL_MEM: Final = 10
HEADER_CMDLINE: Final = 11
HEADER_EVENT_DESC: Final = 12
HEADER_CPU_TOPOLOGY: Final = 13
HEADER_NUMA_TOPOLOGY: Final = 14
HEADER_BRANCH_STACK: Final = 15
HEADER_PMU_MAPPINGS: Final = 16
HEADER_GROUP_DESC: Final = 17
HEADER_AUXTRACE: Final = 18
HEADER_STAT: Final = 19
HEADER_CACHE: Final = 20
HEADER_SAMPLE_TIME: Final = 21
HEADER_MEM_TOPOLOGY: Final = 22
HEADER_CLOCKID: Final = 23
HEADER_DIR_FORMAT: Final = 24
HEADER_BPF_PROG_INFO: Final = 25
HEADER_BPF_BTF: Final = 26
HEADER_COMPRESSED: Final = 27
HEADER_CPU_PMU_CAPS: Final = 28
HEADER_CLOCK_DATA: Final = 29
HEADER_HYBRID_TOPOLOGY: Final = 30
HEADER_PMU_CAPS: Final = 31
HEADER_FEATURE_BITS: Final = 256

# perf_event_attr: the fields this reader uses, at their offsets (the first 64 bytes are PERF_ATTR_SIZE_VER0)
ATTR_SIZE_VER0: Final = 64
ATTR_OFFSET_SIZE: Final = 4
ATTR_FLAGS_OFFSET: Final = 40  # the u64 of 1-bit flags
ATTR_BRANCH_SAMPLE_TYPE_OFFSET: Final = 72  # present when size >= 80
ATTR_SAMPLE_REGS_USER_OFFSET: Final = 80  # present when size >= 96
ATTR_SAMPLE_REGS_INTR_OFFSET: Final = 96  # present when size >= 104
# sample_id_all is flag bit 18: byte 2 of the flags, bit 2 in a little-endian file. A big-endian compiler numbers
# bit-fields from the top of each byte, so there it is bit 5 of the same byte.
ATTR_SAMPLE_ID_ALL_BYTE: Final = ATTR_FLAGS_OFFSET + 2
ATTR_SAMPLE_ID_ALL_MASK: Final = (0x04, 0x20)

# type, size, config, sample_period, sample_type, read_format
ATTR_HEAD: Final = (struct.Struct("<IIQQQQ"), struct.Struct(">IIQQQQ"))
U16: Final = (struct.Struct("<H"), struct.Struct(">H"))
U32: Final = (struct.Struct("<I"), struct.Struct(">I"))
U64: Final = (struct.Struct("<Q"), struct.Struct(">Q"))
U32X2: Final = (struct.Struct("<II"), struct.Struct(">II"))
U64X2: Final = (struct.Struct("<QQ"), struct.Struct(">QQ"))
# perf_event_header as (type, size); misc is not used
RECORD_HEADER: Final = (struct.Struct("<I2xH"), struct.Struct(">I2xH"))
# perf_file_header after the magic: size, attr_size, attrs, data, event_types, flags[4]
FILE_HEADER_REST: Final = (struct.Struct("<QQQQQQQQQQQQ"), struct.Struct(">QQQQQQQQQQQQ"))
# HEADER_CLOCK_DATA: version, clockid, wall_clock_ns, clockid_time_ns
CLOCK_DATA: Final = (struct.Struct("<IIQQ"), struct.Struct(">IIQQ"))

CLOCKID_UNKNOWN: Final = 0xFFFFFFFF
