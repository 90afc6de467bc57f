"""The minidump (MDMP) structures a Linux x86_64 dump needs, as fixed-size struct layouts.

Layouts follow Microsoft's minidumpapiset.h (which packs to 4 bytes, so 8-byte fields may sit at 4-byte offsets)
and Breakpad's minidump_format.h for the Linux extensions: the 'BpEL' CodeView record, platform id 0x8201 and the
0x4767xxxx streams of raw /proc files. Everything is little-endian and packed by hand with struct formats that have
no implicit alignment ("<").
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

SIGNATURE = 0x504D444D  # "MDMP" read as a little-endian u32
VERSION = 0xA793  # low 16 bits of Version; the high 16 are the writer's own version (0)

# Stream types (MINIDUMP_STREAM_TYPE).
THREAD_LIST_STREAM = 3
MODULE_LIST_STREAM = 4
MEMORY_LIST_STREAM = 5
SYSTEM_INFO_STREAM = 7
MEMORY64_LIST_STREAM = 9
MISC_INFO_STREAM = 15
THREAD_NAMES_STREAM = 24

# Breakpad's Linux streams (MD_LINUX_*): the raw bytes of a file each.
LINUX_CPU_INFO = 0x47670003
LINUX_PROC_STATUS = 0x47670004
LINUX_LSB_RELEASE = 0x47670005
LINUX_CMD_LINE = 0x47670006
LINUX_ENVIRON = 0x47670007
LINUX_AUXV = 0x47670008
LINUX_MAPS = 0x47670009

# Header flags (MINIDUMP_TYPE): what kinds of memory the dump may hold.
MINIDUMP_WITH_PRIVATE_READ_WRITE_MEMORY = 0x200
MINIDUMP_WITH_FULL_MEMORY = 0x2
MINIDUMP_WITH_THREAD_INFO = 0x1000

PROCESSOR_ARCHITECTURE_AMD64 = 9
PLATFORM_LINUX = 0x8201  # Breakpad's MD_OS_LINUX

MISC1_PROCESS_ID = 0x1
MISC1_PROCESS_TIMES = 0x2

CONTEXT_AMD64 = 0x00100000
CONTEXT_CONTROL = CONTEXT_AMD64 | 0x1
CONTEXT_INTEGER = CONTEXT_AMD64 | 0x2
CONTEXT_SEGMENTS = CONTEXT_AMD64 | 0x4
CONTEXT_FLOATING_POINT = CONTEXT_AMD64 | 0x8
CONTEXT_FLAGS = CONTEXT_CONTROL | CONTEXT_INTEGER | CONTEXT_SEGMENTS | CONTEXT_FLOATING_POINT

CV_SIGNATURE_ELF = 0x4C457042  # "BpEL": Breakpad's CodeView record holding an ELF build id

# MINIDUMP_HEADER: Signature, Version, NumberOfStreams, StreamDirectoryRva, CheckSum, TimeDateStamp, Flags (u64).
HEADER = struct.Struct("<IIIIIIQ")
# MINIDUMP_DIRECTORY: StreamType, Location (DataSize, Rva).
DIRECTORY = struct.Struct("<III")
# MINIDUMP_THREAD: ThreadId, SuspendCount, PriorityClass, Priority, Teb, Stack (StartOfMemoryRange, DataSize, Rva),
# ThreadContext (DataSize, Rva).
THREAD = struct.Struct("<IIIIQQIIII")
# MINIDUMP_MEMORY_DESCRIPTOR: StartOfMemoryRange, Memory (DataSize, Rva).
MEMORY_DESCRIPTOR = struct.Struct("<QII")
# MINIDUMP_MEMORY64_LIST header: NumberOfMemoryRanges, BaseRva; then MINIDUMP_MEMORY_DESCRIPTOR64 (start, size).
MEMORY64_LIST = struct.Struct("<QQ")
MEMORY_DESCRIPTOR64 = struct.Struct("<QQ")
# MINIDUMP_MODULE: BaseOfImage, SizeOfImage, CheckSum, TimeDateStamp, ModuleNameRva, VersionInfo (VS_FIXEDFILEINFO,
# 13 u32 left zero as Breakpad does on Linux), CvRecord, MiscRecord, Reserved0, Reserved1.
MODULE = struct.Struct("<QIIII52xIIIIQQ")
# MINIDUMP_SYSTEM_INFO: ProcessorArchitecture, ProcessorLevel, ProcessorRevision, NumberOfProcessors, ProductType,
# MajorVersion, MinorVersion, BuildNumber, PlatformId, CSDVersionRva, SuiteMask, Reserved2, then the x86
# CPU_INFORMATION: VendorId[3], VersionInformation, FeatureInformation, AMDExtendedCpuFeatures.
SYSTEM_INFO = struct.Struct("<HHHBBIIIIIHHIIIIII")
# MINIDUMP_MISC_INFO: SizeOfInfo, Flags1, ProcessId, ProcessCreateTime, ProcessUserTime, ProcessKernelTime.
MISC_INFO = struct.Struct("<IIIIII")
# MINIDUMP_THREAD_NAME: ThreadId, RvaOfThreadName (a 64-bit RVA).
THREAD_NAME = struct.Struct("<IQ")
U32 = struct.Struct("<I")

CONTEXT_SIZE = 1232  # CONTEXT for AMD64 (Breakpad's MDRawContextAMD64)
FXSAVE_SIZE = 512

# Offsets inside the AMD64 CONTEXT.
_CTX_FLAGS_MXCSR = struct.Struct("<II")  # ContextFlags, MxCsr at 0x30
_CTX_SEGMENTS_EFLAGS = struct.Struct("<HHHHHHI")  # SegCs, SegDs, SegEs, SegFs, SegGs, SegSs, EFlags at 0x38
_CTX_INTEGER = struct.Struct("<17Q")  # Rax, Rcx, Rdx, Rbx, Rsp, Rbp, Rsi, Rdi, R8-R15, Rip at 0x78
_CTX_OFF_FLAGS = 0x30
_CTX_OFF_SEGMENTS = 0x38
_CTX_OFF_INTEGER = 0x78
_CTX_OFF_FLTSAVE = 0x100
_FXSAVE_MXCSR = struct.Struct("<I")  # MXCSR at offset 24 of the FXSAVE area
_CONTEXT_REGS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                 "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip")

assert HEADER.size == 32 and DIRECTORY.size == 12 and THREAD.size == 48 and MEMORY_DESCRIPTOR.size == 16
assert MODULE.size == 108 and SYSTEM_INFO.size == 56 and MISC_INFO.size == 24 and THREAD_NAME.size == 12
assert _CTX_OFF_INTEGER + _CTX_INTEGER.size == _CTX_OFF_FLTSAVE


def pack_context(buf: bytearray | memoryview, offset: int, regs: Mapping[str, int], fxsave: bytes) -> None:
    """An AMD64 CONTEXT at buf[offset:offset + CONTEXT_SIZE] (which must be zero) from user_regs_struct names.

    Debug registers and the vector/branch fields stay zero: ptrace's register sets do not carry them, and the flags
    say so by leaving out CONTEXT_DEBUG_REGISTERS.
    """
    mxcsr = _FXSAVE_MXCSR.unpack_from(fxsave, 24)[0] if len(fxsave) >= FXSAVE_SIZE else 0
    _CTX_FLAGS_MXCSR.pack_into(buf, offset + _CTX_OFF_FLAGS, CONTEXT_FLAGS, mxcsr)
    _CTX_SEGMENTS_EFLAGS.pack_into(buf, offset + _CTX_OFF_SEGMENTS, regs["cs"] & 0xFFFF, regs["ds"] & 0xFFFF,
                                   regs["es"] & 0xFFFF, regs["fs"] & 0xFFFF, regs["gs"] & 0xFFFF,
                                   regs["ss"] & 0xFFFF, regs["eflags"] & 0xFFFFFFFF)
    _CTX_INTEGER.pack_into(buf, offset + _CTX_OFF_INTEGER,
                           *(regs[name] & 0xFFFFFFFFFFFFFFFF for name in _CONTEXT_REGS))
    if len(fxsave) >= FXSAVE_SIZE:
        start = offset + _CTX_OFF_FLTSAVE
        buf[start:start + FXSAVE_SIZE] = fxsave[:FXSAVE_SIZE]


def string_size(text: str) -> int:
    """Bytes of a MINIDUMP_STRING: the u32 length, UTF-16LE code units, a NUL code unit."""
    return 4 + len(text.encode("utf-16-le", "surrogatepass")) + 2


def pack_string(buf: bytearray | memoryview, offset: int, text: str) -> int:
    """A MINIDUMP_STRING at offset; returns its size. Surrogate escapes of undecodable path bytes pass through."""
    data = text.encode("utf-16-le", "surrogatepass")
    U32.pack_into(buf, offset, len(data))
    buf[offset + 4:offset + 4 + len(data)] = data
    buf[offset + 4 + len(data):offset + 6 + len(data)] = b"\0\0"
    return 6 + len(data)


def cpu_version_information(family: int, model: int, stepping: int) -> int:
    """CPUID leaf 1 EAX from /proc/cpuinfo's decoded family, model and stepping (the x86 CPU_INFORMATION field)."""
    base_family = min(family, 0xF)
    ext_family = family - 0xF if family >= 0xF else 0
    return (stepping & 0xF) | (model & 0xF) << 4 | base_family << 8 | (model >> 4 & 0xF) << 16 | ext_family << 20


def align(value: int, to: int = 8) -> int:
    return (value + to - 1) & ~(to - 1)
