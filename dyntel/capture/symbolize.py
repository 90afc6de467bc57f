"""Instruction addresses of a live process → module, function symbol and offset, from the ELF symbol tables.

Read in-process rather than by running eu-addr2line: the listener is long-lived and captures the same services
again and again, so each module's table is parsed once and kept (keyed by inode and mtime, so a library upgraded
on disk is read afresh); a lookup is then a bisect. Symbols come from, best first: the separate debug file found by
build id or .gnu_debuglink under /usr/lib/debug (Debian's -dbg packages: static functions of a stripped libc), the
file's own .symtab, its .gnu_debugdata (Fedora's xz-compressed "minidebuginfo"), and its .dynsym.
"""

from __future__ import annotations

import bisect
import lzma
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dyntel.capture.procfs import MapEntry, build_id, read_maps

__all__ = ["Location", "SymbolTable", "exported", "is_kernel_address", "load_table", "module_path", "resolve",
           "runtime_address", "table_for_bytes"]

SHT_SYMTAB = 2
SHT_DYNSYM = 11
SHT_NOBITS = 8
PT_LOAD = 1
STT_FUNC = 2
STT_GNU_IFUNC = 10
STB_LOCAL = 0
DEBUG_ROOT = "/usr/lib/debug"
# x86_64 user space ends below this; perf's kernel frames and PERF_CONTEXT_* markers sit above.
KERNEL_START = 0xFFFF_8000_0000_0000
PERF_CONTEXT_MIN = 2**64 - 4095

Reader = Callable[[int, int], bytes]


@dataclass(frozen=True, slots=True)
class Location:
    address: int
    module: str | None
    symbol: str | None
    offset: int | None  # address - symbol start


@dataclass(slots=True)
class SymbolTable:
    """Function symbols sorted by start; `segments` maps file offsets to ELF virtual addresses (PT_LOAD)."""

    starts: list[int]
    ends: list[int]
    names: list[str]
    segments: list[tuple[int, int, int]]  # (p_offset, p_filesz, p_vaddr)

    def lookup(self, vaddr: int) -> tuple[str, int] | None:
        i = bisect.bisect_right(self.starts, vaddr) - 1
        if i < 0:
            return None
        # A size-0 symbol (hand-written assembly) is taken to reach the next symbol.
        end = self.ends[i] if self.ends[i] > self.starts[i] else (
            self.starts[i + 1] if i + 1 < len(self.starts) else self.starts[i] + 1)
        if vaddr >= end:
            return None
        return self.names[i], vaddr - self.starts[i]

    def vaddr_of(self, file_offset: int) -> int | None:
        for p_offset, p_filesz, p_vaddr in self.segments:
            if p_offset <= file_offset < p_offset + max(p_filesz, 1):
                return file_offset - p_offset + p_vaddr
        return None


@dataclass(slots=True)
class _Elf:
    is64: bool
    sections: list[tuple[str, int, int, int, int, int]]  # name, type, offset, size, link, entsize
    segments: list[tuple[int, int, int]]
    read: Reader


def _parse(read: Reader) -> _Elf | None:
    ident = read(0, 64)
    if len(ident) < 52 or ident[:4] != b"\x7fELF" or ident[5] != 1:  # little-endian only: x86_64 and its 32-bit
        return None
    is64 = ident[4] == 2
    if is64:
        phoff, shoff = struct.unpack_from("<QQ", ident, 32)
        phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from("<HHHHH", ident, 54)
    else:
        phoff, shoff = struct.unpack_from("<II", ident, 28)
        phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from("<HHHHH", ident, 42)
    segments = []
    if 0 < phnum <= 4096 and phentsize:
        table = read(phoff, phentsize * phnum)
        for i in range(len(table) // phentsize):
            if is64:
                p_type, _, p_offset, p_vaddr, _, p_filesz, _, _ = struct.unpack_from("<IIQQQQQQ", table, i * phentsize)
            else:
                p_type, p_offset, p_vaddr, _, p_filesz, _, _, _ = struct.unpack_from("<IIIIIIII", table, i * phentsize)
            if p_type == PT_LOAD:
                segments.append((p_offset, p_filesz, p_vaddr))
    raw = []
    if 0 < shnum <= 65535 and shentsize and shoff:
        table = read(shoff, shentsize * shnum)
        for i in range(len(table) // shentsize):
            if is64:
                name, kind, _, _, offset, size, link, _, _, entsize = struct.unpack_from("<IIQQQQIIQQ", table,
                                                                                        i * shentsize)
            else:
                name, kind, _, _, offset, size, link, _, _, entsize = struct.unpack_from("<IIIIIIIIII", table,
                                                                                        i * shentsize)
            raw.append((name, kind, offset, size, link, entsize))
    sections = []
    names = read(raw[shstrndx][2], raw[shstrndx][3]) if shstrndx < len(raw) else b""
    for name, kind, offset, size, link, entsize in raw:
        label = names[name:names.find(b"\0", name)].decode("ascii", "replace") if name < len(names) else ""
        sections.append((label, kind, offset, size, link, entsize))
    return _Elf(is64, sections, segments, read)


def _symbols(elf: _Elf, kind: int) -> list[tuple[int, int, int, str]]:
    """(start, size, binding, name) of the defined functions in the sections of `kind`."""
    found = []
    for _, sh_type, offset, size, link, entsize in elf.sections:
        if sh_type != kind or not entsize or link >= len(elf.sections):
            continue
        data = elf.read(offset, size)
        strtab_section = elf.sections[link]
        if strtab_section[1] == SHT_NOBITS:
            continue
        strtab = elf.read(strtab_section[2], strtab_section[3])
        layout = "<IBBHQQ" if elf.is64 else "<IIIBBH"
        step = struct.calcsize(layout)
        if entsize != step:
            continue
        for fields in struct.iter_unpack(layout, data[:len(data) - len(data) % step]):
            if elf.is64:
                st_name, st_info, _, st_shndx, st_value, st_size = fields
            else:
                st_name, st_value, st_size, st_info, _, st_shndx = fields
            if st_info & 0xF not in (STT_FUNC, STT_GNU_IFUNC) or st_shndx == 0 or st_value == 0:
                continue
            end = strtab.find(b"\0", st_name)
            found.append((st_value, st_size, st_info >> 4, strtab[st_name:end].decode("utf-8", "replace")))
    return found


def _rank(binding: int, name: str) -> tuple[int, int, int]:
    # Of aliases at one address (glibc: read, __read, __libc_read) prefer the name people call.
    return len(name) - len(name.lstrip("_")), binding == STB_LOCAL, len(name)


def _table(symbols: list[tuple[int, int, int, str]], segments: list[tuple[int, int, int]]) -> SymbolTable:
    best: dict[int, tuple[int, int, str]] = {}
    for start, size, binding, name in symbols:
        current = best.get(start)
        if current is None or (_rank(binding, name), -size) < (_rank(current[1], current[2]), -current[0]):
            best[start] = (size, binding, name)
    starts = sorted(best)
    return SymbolTable(starts, [s + best[s][0] for s in starts], [best[s][2] for s in starts], segments)


def _file_reader(path: str) -> tuple[Reader, Callable[[], None]] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    return (lambda offset, size: os.pread(fd, size, offset)), (lambda: os.close(fd))


def _bytes_reader(data: bytes) -> Reader:
    return lambda offset, size: data[offset:offset + size]


def _debug_file(path: str, elf: _Elf) -> str | None:
    bid = build_id(path)
    if bid and len(bid) > 1:
        candidate = f"{DEBUG_ROOT}/.build-id/{bid[:1].hex()}/{bid[1:].hex()}.debug"
        if os.path.exists(candidate):
            return candidate
    for name, _, offset, size, _, _ in elf.sections:
        if name == ".gnu_debuglink":
            link = elf.read(offset, size).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            directory = os.path.dirname(os.path.realpath(path))
            for candidate in (f"{directory}/{link}", f"{directory}/.debug/{link}", f"{DEBUG_ROOT}{directory}/{link}"):
                if link and candidate != path and os.path.exists(candidate):
                    return candidate
    return None


def table_for_bytes(data: bytes) -> SymbolTable | None:
    """The table of an ELF image held in memory (the vDSO, a .gnu_debugdata payload)."""
    elf = _parse(_bytes_reader(data))
    if elf is None:
        return None
    return _table(_symbols(elf, SHT_SYMTAB) + _symbols(elf, SHT_DYNSYM), elf.segments)


def _load(path: str) -> SymbolTable | None:
    opened = _file_reader(path)
    if opened is None:
        return None
    read, close = opened
    try:
        elf = _parse(read)
        if elf is None:
            return None
        symbols = _symbols(elf, SHT_SYMTAB)
        debug = _debug_file(path, elf) if not symbols else None
        if debug is not None:
            debug_opened = _file_reader(debug)
            if debug_opened is not None:
                try:
                    debug_elf = _parse(debug_opened[0])
                    if debug_elf is not None:
                        symbols = _symbols(debug_elf, SHT_SYMTAB)
                finally:
                    debug_opened[1]()
        if not symbols:
            for name, _, offset, size, _, _ in elf.sections:
                if name == ".gnu_debugdata":
                    try:
                        inner = _parse(_bytes_reader(lzma.decompress(read(offset, size))))
                    except lzma.LZMAError:
                        inner = None
                    if inner is not None:
                        symbols = _symbols(inner, SHT_SYMTAB)
        return _table(symbols + _symbols(elf, SHT_DYNSYM), elf.segments)
    except (OSError, struct.error, IndexError):
        return None
    finally:
        close()


_tables: dict[tuple[int, int, int, int], SymbolTable | None] = {}
_TABLES_MAX = 256


def load_table(path: str) -> SymbolTable | None:
    """The symbol table of the ELF file at `path` (None if unreadable or not ELF); cached by identity."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _tables:
        if len(_tables) >= _TABLES_MAX:
            _tables.clear()
        _tables[key] = _load(path)
    return _tables[key]


def is_kernel_address(address: int) -> bool:
    return KERNEL_START <= address < PERF_CONTEXT_MIN


def module_path(pid: int, entry: MapEntry) -> str:
    """The path to open for a mapped file, as the target sees it (its mount namespace, a file since replaced)."""
    # Through /proc/PID/root the path means what it means to the target, even inside a container's mount namespace.
    if entry.path.endswith(" (deleted)"):  # replaced on disk: only the mapping still holds the old file
        return f"/proc/{pid}/map_files/{entry.start:x}-{entry.end:x}"
    rooted = f"/proc/{pid}/root{entry.path}"
    return rooted if os.path.exists(rooted) else entry.path


def _vdso_table(pid: int, entry: MapEntry) -> SymbolTable | None:
    try:
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as f:
            f.seek(entry.start)
            data = f.read(entry.size)
    except OSError:
        return None
    return table_for_bytes(data)


_kernel: tuple[list[int], list[str], list[str]] | None = None


def _kernel_symbols() -> tuple[list[int], list[str], list[str]]:
    global _kernel
    if _kernel is None:
        rows = []
        try:
            with open("/proc/kallsyms", encoding="utf-8", errors="replace") as f:
                for line in f:
                    fields = line.split()
                    if len(fields) >= 3 and fields[1] in "tTwW":
                        address = int(fields[0], 16)
                        if address:  # all zeros: kptr_restrict hides the addresses
                            module = fields[3].strip("[]") if len(fields) > 3 else "kernel"
                            rows.append((address, fields[2], f"[{module}]"))
        except OSError:
            pass
        rows.sort()
        _kernel = ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    return _kernel


def _kernel_location(address: int, lookup_at: int) -> Location:
    starts, names, modules = _kernel_symbols()
    i = bisect.bisect_right(starts, lookup_at) - 1
    if i < 0:
        return Location(address, "[kernel]", None, None)
    return Location(address, modules[i], names[i], address - starts[i])


def resolve(pid: int, addresses: Sequence[int], *, return_addresses: Sequence[bool] | None = None,
            maps: list[MapEntry] | None = None) -> list[Location]:
    """Locate each address in the process's mappings and name it.

    A return address (`return_addresses[i]` true) is looked up one byte back: a call that ends its function
    (a noreturn callee) returns past the end, into the next symbol. The offset is still from the address itself.
    """
    entries = maps if maps is not None else read_maps(pid)
    starts = [e.start for e in entries]
    vdso: dict[int, SymbolTable | None] = {}
    tables: dict[int, SymbolTable | None] = {}  # by mapping: module_path stats a file, once a call is enough
    found = []
    for i, address in enumerate(addresses):
        lookup_at = address - 1 if return_addresses is not None and return_addresses[i] and address else address
        if is_kernel_address(address):
            found.append(_kernel_location(address, lookup_at))
            continue
        j = bisect.bisect_right(starts, lookup_at) - 1
        entry = entries[j] if j >= 0 and lookup_at < entries[j].end else None
        if entry is None or not entry.path:
            found.append(Location(address, None, None, None))
            continue
        if entry.path == "[vdso]":
            if entry.start not in vdso:
                vdso[entry.start] = _vdso_table(pid, entry)
            table = vdso[entry.start]
            vaddr = lookup_at - entry.start if table is not None else None
            if table is not None and table.segments:
                vaddr = lookup_at - entry.start + table.segments[0][2] - table.segments[0][0]
        elif entry.path.startswith("["):
            found.append(Location(address, entry.path, None, None))
            continue
        else:
            if entry.start not in tables:
                tables[entry.start] = load_table(module_path(pid, entry))
            table = tables[entry.start]
            vaddr = table.vaddr_of(lookup_at - entry.start + entry.offset) if table is not None else None
        hit = table.lookup(vaddr) if table is not None and vaddr is not None else None
        if hit is None:
            found.append(Location(address, entry.path, None, None))
        else:
            found.append(Location(address, entry.path, hit[0], hit[1] + (address - lookup_at)))
    return found


_exports: dict[tuple[int, int, int, int], dict[str, int]] = {}


def exported(path: str) -> dict[str, int]:
    """Every defined .dynsym symbol of the file (functions and data) by name, at its ELF virtual address."""
    try:
        st = os.stat(path)
    except OSError:
        return {}
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _exports:
        if len(_exports) >= _TABLES_MAX:
            _exports.clear()
        _exports[key] = _read_exports(path)
    return _exports[key]


def _read_exports(path: str) -> dict[str, int]:
    opened = _file_reader(path)
    if opened is None:
        return {}
    read, close = opened
    try:
        elf = _parse(read)
        if elf is None:
            return {}
        found: dict[str, int] = {}
        for _, sh_type, offset, size, link, entsize in elf.sections:
            if sh_type != SHT_DYNSYM or link >= len(elf.sections):
                continue
            layout = "<IBBHQQ" if elf.is64 else "<IIIBBH"
            step = struct.calcsize(layout)
            if entsize != step:
                continue
            data = read(offset, size)
            strtab = read(elf.sections[link][2], elf.sections[link][3])
            for fields in struct.iter_unpack(layout, data[:len(data) - len(data) % step]):
                st_name, st_value, st_shndx = (fields[0], fields[4], fields[3]) if elf.is64 else (
                    fields[0], fields[1], fields[5])
                if st_shndx and st_value:
                    found[strtab[st_name:strtab.find(b"\0", st_name)].decode("utf-8", "replace")] = st_value
        return found
    except (OSError, struct.error, IndexError):
        return {}
    finally:
        close()


def runtime_address(pid: int, entries: Sequence[MapEntry], path: str, vaddr: int) -> int | None:
    """Where the ELF virtual address `vaddr` of the mapped file `path` sits in the process."""
    first = next((e for e in entries if e.path == path), None)
    table = load_table(module_path(pid, first)) if first is not None else None
    if table is None:
        return None
    # The file can be mapped more than once: by the dynamic linker (its segments, one of them executable) and as
    # plain copies (a process that runs libdw, as dyntel does, maps whole ELF files at offset 0 to read them). Each
    # mapping at offset 0 starts an image; the linker's, the one with code, is searched first.
    images: list[list[MapEntry]] = []
    for e in entries:
        if e.path == path:
            if e.offset == 0 or not images:
                images.append([])
            images[-1].append(e)
    images.sort(key=lambda image: not any(e.executable for e in image))
    for p_offset, p_filesz, p_vaddr in table.segments:
        if p_vaddr <= vaddr < p_vaddr + max(p_filesz, 1):
            file_offset = vaddr - p_vaddr + p_offset
            for image in images:
                for e in image:
                    if e.offset <= file_offset < e.offset + e.size:
                        return e.start + file_offset - e.offset
    return None
