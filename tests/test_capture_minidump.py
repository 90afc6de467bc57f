"""The minidump writer against a real process: what the `minidump` package reads back, and what a reader of our
own (plain struct reads at the documented offsets) finds, so a layout slip shows even where the package is lenient.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest
from minidump.minidumpfile import MinidumpFile
from minidump.streams.ContextStream import CONTEXT
from minidump.streams.SystemInfoStream import PLATFORM_ID, PROCESSOR_ARCHITECTURE
from support import CaptureTarget, deadline

from dyntel.capture import minidump_format as fmt
from dyntel.capture.errors import CaptureError
from dyntel.capture.minidump import PAGE, _copy, _Sink, process_info, write_minidump
from dyntel.capture.procfs import build_id, read_maps
from dyntel.capture.ptrace import Frozen, frozen
from dyntel.capture.regions import DumpResult, Region
from dyntel.security import redact_nul_separated


@pytest.fixture(autouse=True)
def _quiet_peb(caplog: pytest.LogCaptureFixture) -> None:
    # The package looks for a Windows PEB through the TEB of every dump and logs its failure as an error.
    caplog.set_level(logging.CRITICAL)


@pytest.fixture(scope="module")
def target() -> Iterator[CaptureTarget]:
    with CaptureTarget() as t:
        yield t


@dataclass
class Dump:
    path: Path
    result: DumpResult
    frozen: Frozen
    beats_after: int
    max_gap_ms: float
    seconds: float


def _dump(target: CaptureTarget, path: Path, memory: str, max_size: int | None = None) -> Dump:
    """A dump of the target, then proof that it runs on: its heartbeat keeps beating after the dump."""
    maps = read_maps(target.pid)
    info = process_info(target.pid, maps)
    target.mark()
    with deadline(60):
        started = time.perf_counter()
        with open(path, "wb") as out, frozen(target.pid) as f:
            result = write_minidump(f, maps, out, memory=memory, max_size=max_size, info=info)
        seconds = time.perf_counter() - started
    beat = target.wait_beats(10)  # the heartbeat goes on after the dump
    return Dump(path, result, f, int(beat["beats"]), float(beat["max_gap_ms"]), seconds)  # type: ignore[arg-type]


# --- our own reader: the documented offsets, nothing shared with the writer -------------------------------------

@dataclass
class Raw:
    data: bytes
    streams: dict[int, tuple[int, int]]  # type -> (rva, size)

    def stream(self, kind: int) -> bytes:
        rva, size = self.streams[kind]
        return self.data[rva:rva + size]

    def u32(self, at: int) -> int:
        return int(struct.unpack_from("<I", self.data, at)[0])

    def string(self, rva: int) -> str:
        length = self.u32(rva)
        assert rva + 4 + length + 2 <= len(self.data)
        assert self.data[rva + 4 + length:rva + 6 + length] == b"\0\0", "MINIDUMP_STRING without its terminator"
        return self.data[rva + 4:rva + 4 + length].decode("utf-16-le")

    def memory64(self) -> list[tuple[int, int, int]]:
        """(address, size, rva) of every Memory64 range."""
        body = self.stream(fmt.MEMORY64_LIST_STREAM)
        count, base = struct.unpack_from("<QQ", body, 0)
        assert len(body) == 16 + 16 * count
        out, rva = [], base
        for i in range(count):
            start, size = struct.unpack_from("<QQ", body, 16 + 16 * i)
            out.append((start, size, rva))
            rva += size
        return out

    def memory_list(self) -> list[tuple[int, int, int]]:
        body = self.stream(fmt.MEMORY_LIST_STREAM)
        count = struct.unpack_from("<I", body, 0)[0]
        assert len(body) == 4 + 16 * count
        return [struct.unpack_from("<QII", body, 4 + 16 * i) for i in range(count)]

    def read(self, address: int, size: int) -> bytes:
        for start, length, rva in self.memory64():
            if start <= address and address + size <= start + length:
                return self.data[rva + address - start:rva + address - start + size]
        raise KeyError(hex(address))


def _raw(path: Path) -> Raw:
    data = path.read_bytes()
    signature, version, count, directory, _checksum, _stamp, _flags = struct.unpack_from("<IIIIIIQ", data, 0)
    assert (signature, version & 0xFFFF) == (0x504D444D, 0xA793)
    assert directory == 32 and directory + 12 * count <= len(data)
    streams = {}
    for i in range(count):
        kind, size, rva = struct.unpack_from("<III", data, directory + 12 * i)
        assert kind not in streams, f"stream {kind:#x} twice"
        assert rva % 4 == 0 and rva >= directory + 12 * count and rva + size <= len(data), (kind, rva, size)
        streams[kind] = (rva, size)
    return Raw(data, streams)


def _syscall(pid: int, tid: int) -> list[str]:
    return Path(f"/proc/{pid}/task/{tid}/syscall").read_text().split()


# --- tests ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("memory", ["stacks", "writable"])
def test_threads_and_registers_read_back(target: CaptureTarget, tmp_path: Path, memory: str) -> None:
    reader_tid = int(target.info["reader_tid"])  # type: ignore[call-overload]
    before = _syscall(target.pid, reader_tid)
    dump = _dump(target, tmp_path / "t.dmp", memory)
    after = _syscall(target.pid, reader_tid)
    assert before[0] == "0" and before == after, "the reader thread should sit in read(2) throughout"
    sp, pc = int(before[-2], 16), int(before[-1], 16)

    md = MinidumpFile.parse(str(dump.path))
    tids = sorted(th.ThreadId for th in md.threads.threads)
    assert tids == sorted(int(t) for t in os.listdir(f"/proc/{target.pid}/task"))
    assert {int(t["tid"]) for t in target.info["threads"]} <= set(tids)  # type: ignore[attr-defined]
    reader = next(th for th in md.threads.threads if th.ThreadId == reader_tid)
    ctx = reader.ContextObject
    assert (ctx.Rsp, ctx.Rip) == (sp, pc)
    # Stopped inside read(2): the kernel reports the interrupted call as -ERESTARTSYS until it restarts it, and
    # orig_rax keeps the call's number (0, read), which the minidump has no field for.
    state = next(t for t in dump.frozen.threads if t.tid == reader_tid)
    assert state.regs["orig_rax"] == 0
    assert ctx.Rax == state.regs["rax"] and ctx.Rax in {2**64 - 512, 2**64 - 4}
    assert ctx.ContextFlags == 0x0010000F and ctx.SegCs == state.regs["cs"] and ctx.EFlags == state.regs["eflags"]
    assert reader.Teb == state.regs["fs_base"]
    for th in md.threads.threads:
        regs = next(t for t in dump.frozen.threads if t.tid == th.ThreadId).regs
        c = th.ContextObject
        assert (c.Rip, c.Rsp, c.Rbp, c.Rbx, c.R12, c.R15) == (regs["rip"], regs["rsp"], regs["rbp"], regs["rbx"],
                                                              regs["r12"], regs["r15"])
        # The thread's stack descriptor starts in the red zone below rsp and holds the bytes there.
        assert th.Stack.StartOfMemoryRange <= c.Rsp < th.Stack.StartOfMemoryRange + th.Stack.DataSize

    # The blocked thread's frames above rsp do not change while it waits: the dump holds what memory holds now.
    with open(f"/proc/{target.pid}/mem", "rb") as mem:
        live = os.pread(mem.fileno(), 512, sp)
    raw = _raw(dump.path)
    stack = raw.data[reader.Stack.MemoryLocation.Rva + sp - reader.Stack.StartOfMemoryRange:][:512]
    assert stack == live
    assert raw.read(sp, 512) == live
    assert dump.result.threads == len(tids) and not dump.result.truncated


@pytest.mark.parametrize("memory", ["stacks", "writable"])
def test_modules_are_the_mapped_elf_files(target: CaptureTarget, tmp_path: Path, memory: str) -> None:
    dump = _dump(target, tmp_path / "m.dmp", memory)
    expected: dict[str, int] = {}
    for entry in read_maps(target.pid):
        if entry.inode and entry.path.startswith("/") and entry.offset == 0:
            with open(entry.path, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    expected[entry.path] = min(expected.get(entry.path, entry.start), entry.start)
    md = MinidumpFile.parse(str(dump.path))
    got = {m.name: m.baseaddress for m in md.modules.modules}
    assert got == expected
    names = [os.path.basename(p) for p in got]
    assert any(n.startswith("libm.so") for n in names)
    assert any(n.startswith(("libpython", "python")) for n in names)

    # Each module's CodeView record is Breakpad's 'BpEL' with the file's build id.
    raw = _raw(dump.path)
    body = raw.stream(fmt.MODULE_LIST_STREAM)
    count = raw.u32(raw.streams[fmt.MODULE_LIST_STREAM][0])
    assert len(body) == 4 + 108 * count
    with_id = 0
    for i in range(count):
        base, size, _sum, _stamp, name_rva = struct.unpack_from("<QIIII", body, 4 + 108 * i)
        cv_size, cv_rva = struct.unpack_from("<II", body, 4 + 108 * i + 76)
        path = raw.string(name_rva)
        assert base == expected[path] and size > 0
        wanted = build_id(path)
        if wanted is None:
            assert cv_size == 0
            continue
        with_id += 1
        assert raw.data[cv_rva:cv_rva + cv_size] == b"BpEL" + wanted
    assert with_id >= 2


def test_writable_memory_holds_the_magic_value(target: CaptureTarget, tmp_path: Path) -> None:
    dump = _dump(target, tmp_path / "w.dmp", "writable")
    addr, value = int(target.info["magic_addr"]), int(target.info["magic_value"])  # type: ignore[call-overload]
    # The untouched pages of the threads' 8 MiB stacks are holes, not written zeros.
    assert dump.path.stat().st_blocks * 512 < dump.result.size // 2
    md = MinidumpFile.parse(str(dump.path))
    assert md.get_reader().read(addr, 8) == value.to_bytes(8, "little")
    assert _raw(dump.path).read(addr, 8) == value.to_bytes(8, "little")
    stacks = _dump(target, tmp_path / "s.dmp", "stacks")
    with pytest.raises(KeyError):
        _raw(stacks.path).read(addr, 8)  # the heap is not a stack: "stacks" must leave it out


def test_linux_streams_hold_the_proc_files(target: CaptureTarget, tmp_path: Path) -> None:
    pid = target.pid
    for _ in range(5):  # the target may map a new arena meanwhile: retry until maps held still around the dump
        maps_before = Path(f"/proc/{pid}/maps").read_bytes()
        dump = _dump(target, tmp_path / "l.dmp", "stacks")
        if Path(f"/proc/{pid}/maps").read_bytes() == maps_before:
            break
    raw = _raw(dump.path)
    assert raw.stream(fmt.LINUX_CMD_LINE) == Path(f"/proc/{pid}/cmdline").read_bytes()
    assert raw.stream(fmt.LINUX_MAPS) == maps_before
    # Secrets are redacted by default (dyntel.security); everything else is the file as it was.
    assert raw.stream(fmt.LINUX_ENVIRON) == redact_nul_separated(Path(f"/proc/{pid}/environ").read_bytes())
    assert raw.stream(fmt.LINUX_AUXV) == Path(f"/proc/{pid}/auxv").read_bytes()
    assert raw.stream(fmt.LINUX_CPU_INFO).startswith(b"processor")
    assert b"\nPid:\t%d\n" % pid in raw.stream(fmt.LINUX_PROC_STATUS)
    assert b"=" in raw.stream(fmt.LINUX_LSB_RELEASE)

    md = MinidumpFile.parse(str(dump.path))
    assert md.sysinfo.ProcessorArchitecture == PROCESSOR_ARCHITECTURE.AMD64
    assert md.sysinfo.PlatformId == PLATFORM_ID.VER_PLATFORM_CRASHPAD_LINUX
    assert md.sysinfo.NumberOfProcessors == os.cpu_count()
    assert md.sysinfo.CSDVersion.startswith(f"Linux {os.uname().release} ")
    assert md.misc_info.ProcessId == pid
    assert abs(md.misc_info.ProcessCreateTime - time.time()) < 3600

    # Thread names (stream 24, which the package lists but does not parse): every tid with its comm.
    body = raw.stream(fmt.THREAD_NAMES_STREAM)
    names = {}
    for i in range(struct.unpack_from("<I", body)[0]):
        tid, rva = struct.unpack_from("<IQ", body, 4 + 12 * i)
        names[tid] = raw.string(rva)
    reader_tid = int(target.info["reader_tid"])  # type: ignore[call-overload]
    assert names[reader_tid] == Path(f"/proc/{pid}/task/{reader_tid}/comm").read_text().strip()


@pytest.mark.parametrize("memory", ["stacks", "writable"])
def test_layout_by_hand(target: CaptureTarget, tmp_path: Path, memory: str) -> None:
    dump = _dump(target, tmp_path / "h.dmp", memory)
    raw = _raw(dump.path)
    size = len(raw.data)
    assert size == dump.result.size
    wanted = {3, 4, 5, 7, 9, 15, 24} | set(range(0x47670003, 0x4767000A))
    assert set(raw.streams) == wanted

    # Streams do not overlap one another.
    spans = sorted(raw.streams.values())
    for (a, asize), (b, _) in pairwise(spans):
        assert a + asize <= b

    body = raw.stream(fmt.THREAD_LIST_STREAM)
    count = struct.unpack_from("<I", body)[0]
    assert len(body) == 4 + 48 * count == 4 + 48 * dump.result.threads
    for i in range(count):
        tid, _, _, _, teb, stack_start, stack_size, stack_rva, ctx_size, ctx_rva = \
            struct.unpack_from("<IIIIQQIIII", body, 4 + 48 * i)
        assert ctx_size == 1232 and ctx_rva + 1232 <= size
        flags, = struct.unpack_from("<I", raw.data, ctx_rva + 0x30)
        rsp, = struct.unpack_from("<Q", raw.data, ctx_rva + 0x98)
        rip, = struct.unpack_from("<Q", raw.data, ctx_rva + 0xF8)
        regs = next(t for t in dump.frozen.threads if t.tid == tid).regs
        assert (flags, rsp, rip, teb) == (0x0010000F, regs["rsp"], regs["rip"], regs["fs_base"])
        assert raw.data[ctx_rva + 0x100:ctx_rva + 0x300] == next(
            t for t in dump.frozen.threads if t.tid == tid).fpregs_raw
        assert stack_size > 0 and stack_rva + stack_size <= size
        assert raw.data[stack_rva:stack_rva + stack_size] == raw.read(stack_start, stack_size)

    # The Memory64 block runs to the end of the file; the memory list's stacks point into it.
    ranges = raw.memory64()
    assert ranges[0][2] % PAGE == 0 and ranges[-1][2] + ranges[-1][1] == size
    assert sum(r[1] for r in ranges) == dump.result.memory_bytes
    listed = raw.memory_list()
    assert listed and all((start, length, rva) in ranges for start, length, rva in listed)
    assert all(rva < 1 << 32 for _, _, rva in listed)

    system = raw.stream(fmt.SYSTEM_INFO_STREAM)
    arch, _level, _rev, ncpu, _product, major, minor, _build, platform, csd_rva = \
        struct.unpack_from("<HHHBBIIIII", system)
    assert (arch, platform, ncpu) == (9, 0x8201, os.cpu_count())
    assert (major, minor) == tuple(int(x) for x in os.uname().release.split(".")[:2])
    assert raw.string(csd_rva).split()[1] == os.uname().release
    misc = raw.stream(fmt.MISC_INFO_STREAM)
    assert len(misc) == 24 and struct.unpack_from("<III", misc) == (24, 3, target.pid)


def test_context_offsets_match_the_package() -> None:
    regs = {name: 0x1111 * (i + 1) for i, name in enumerate(
        ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
         "r15", "rip", "cs", "ds", "es", "fs", "gs", "ss", "eflags"))}
    regs.update(cs=0x33, ds=0x2B, es=0x2B, fs=0x63, gs=0x6B, ss=0x2B, eflags=0x246)
    fxsave = bytearray(range(256)) * 2
    struct.pack_into("<I", fxsave, 24, 0x1F80)
    buf = bytearray(fmt.CONTEXT_SIZE)
    fmt.pack_context(buf, 0, regs, bytes(fxsave))
    ctx = CONTEXT.parse(io.BytesIO(bytes(buf)))
    assert (ctx.Rax, ctx.Rcx, ctx.Rsp, ctx.R8, ctx.R15, ctx.Rip) == tuple(
        regs[n] for n in ("rax", "rcx", "rsp", "r8", "r15", "rip"))
    assert (ctx.SegCs, ctx.SegDs, ctx.SegSs, ctx.EFlags, ctx.MxCsr) == (0x33, 0x2B, 0x2B, 0x246, 0x1F80)
    assert bytes(buf[0x100:0x300]) == bytes(fxsave)
    assert ctx.ContextFlags == 0x0010000F


def test_max_size_truncates_and_still_parses(target: CaptureTarget, tmp_path: Path) -> None:
    full = _dump(target, tmp_path / "full.dmp", "writable")
    fixed = full.result.size - full.result.memory_bytes
    limit = fixed + 3 * PAGE
    small = _dump(target, tmp_path / "small.dmp", "writable", max_size=limit)
    assert small.path.stat().st_size == small.result.size <= limit
    assert small.result.truncated and small.result.skipped_regions > 0
    md = MinidumpFile.parse(str(small.path))
    assert len(md.threads.threads) == full.result.threads
    raw = _raw(small.path)
    assert len(raw.data) <= limit and raw.memory_list()

    with pytest.raises(CaptureError, match="max_size"):
        _dump(target, tmp_path / "tiny.dmp", "writable", max_size=4096)
    time.sleep(0.05)  # a few heartbeats' time
    assert target.heartbeat()["beats"]  # released after the refusal too


def test_unreadable_pages_are_zeros(target: CaptureTarget) -> None:
    """A range that runs off the end of a mapping into unmapped space: the mapped page as it is, the rest zeros."""
    maps = read_maps(target.pid)
    edge = next(a for a, b in pairwise(maps)
                if a.readable and a.writable and b.start - a.end >= 2 * PAGE)
    with frozen(target.pid) as f:
        out = io.BytesIO()
        sink = _Sink(out)
        zeroed = _copy(f, Region(edge.end - PAGE, 3 * PAGE, "writable"), sink, bytearray(8 * PAGE))
        sink.close()
        page = f.read(edge.end - PAGE, PAGE)
    assert zeroed == 2 * PAGE and len(page) == PAGE
    assert out.getvalue() == page + bytes(2 * PAGE)


def test_out_may_be_a_pipe(target: CaptureTarget, tmp_path: Path) -> None:
    path = tmp_path / "p.dmp"
    maps = read_maps(target.pid)
    with open(path, "wb") as sink:
        cat = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=sink)
        assert cat.stdin is not None
        with frozen(target.pid) as f:
            result = write_minidump(f, maps, cat.stdin, memory="stacks")
        cat.stdin.close()
        assert cat.wait(timeout=10) == 0
    assert path.stat().st_size == result.size
    assert len(MinidumpFile.parse(str(path)).threads.threads) == result.threads
