"""Every thread's Python frames of a CPython 3.11 process, read from its memory by dyntel itself (no py-spy start).

Two steps, so the target's pause holds only the first:
- `walk` (while the threads are stopped, dyntel.capture.ptrace.frozen): from _PyRuntime, the interpreter's thread
  states, and for each its chain of interpreter frames (code object and last instruction of each), copied with
  process_vm_readv. Stopped threads cannot be half-way through a call or return, the reason py-spy stops the
  process too.
- `name` (after the target runs again): each code object's qualified name, file and line table, and the threading
  module's Thread objects (for "MainThread", "Thread-1 (f)"). Code objects and strings do not change once made.

The struct offsets are CPython 3.11's on x86-64 (Include/cpython/pystate.h, Include/internal/pycore_frame.h,
pycore_runtime.h, pycore_interp.h, pycore_dict.h, code.h, unicodeobject.h); tests/test_capture_pyframes.py checks
each one against the interpreter running the tests and the result against py-spy on live targets. Other versions
are `supported() == False`: the caller uses py-spy for them.
"""

from __future__ import annotations

import bisect
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from dyntel.capture.ptrace import Frozen, read_many

__all__ = ["Layout", "RawThread", "layout_for", "name", "reader_for", "walk"]

Reader = Callable[[int, int], bytes]
MAX_FRAMES = 1024  # deeper than CPython's default recursion limit; a cycle (torn memory) stops here
MAX_THREADS = 4096
_cache_lock = threading.Lock()  # the caches below are shared by the action pool's workers


@dataclass(frozen=True, slots=True)
class Layout:
    """Byte offsets of the fields read, for one CPython minor version."""

    runtime_interp_head: int
    runtime_gil_last_holder: int
    runtime_gil_locked: int
    interp_threads_head: int
    interp_modules: int
    ts_next: int
    ts_cframe: int
    cframe_current_frame: int
    ts_thread_id: int
    ts_native_thread_id: int
    frame_code: int
    frame_previous: int
    frame_prev_instr: int
    frame_owner: int
    frame_size: int
    code_firstlineno: int
    code_filename: int
    code_qualname: int
    code_linetable: int
    code_firsttraceable: int
    code_code: int          # co_code_adaptive: the instructions (PyCode_Type's tp_basicsize)
    str_ascii_data: int     # sizeof(PyASCIIObject)
    str_compact_data: int   # sizeof(PyCompactUnicodeObject)
    type_flags: int
    type_dictoffset: int
    heaptype_cached_keys: int
    managed_values: int     # before the object header: PyDictValues* of a Py_TPFLAGS_MANAGED_DICT object
    managed_dict: int       # and its dict, once one was made
    module_dict: int


PY311 = Layout(
    runtime_interp_head=40, runtime_gil_last_holder=368, runtime_gil_locked=376,
    interp_threads_head=16, interp_modules=888,
    ts_next=8, ts_cframe=56, cframe_current_frame=8, ts_thread_id=152, ts_native_thread_id=160,
    frame_code=32, frame_previous=48, frame_prev_instr=56, frame_owner=69, frame_size=72,
    code_firstlineno=72, code_filename=112, code_qualname=128, code_linetable=136, code_firsttraceable=168,
    code_code=184,
    str_ascii_data=48, str_compact_data=72,
    type_flags=168, type_dictoffset=288, heaptype_cached_keys=872, managed_values=-32, managed_dict=-24,
    module_dict=16,
)

FRAME_OWNED_BY_GENERATOR = 1
TPFLAGS_MANAGED_DICT = 1 << 4


def layout_for(version: str | None) -> Layout | None:
    """The layout of a "3.11.7"-style version, or None when this module does not read that version."""
    if version is not None and (version == "3.11" or version.startswith("3.11.")):
        return PY311
    return None


@dataclass(slots=True)
class RawThread:
    """What the walk copied of one thread: code object addresses and instruction pointers, innermost first."""

    native_id: int
    ident: int            # the pthread id: threading's key for the thread
    holds_gil: bool
    frames: list[tuple[int, int]]  # (code object, prev_instr)
    truncated: bool = False


def reader_for(pid: int) -> Reader:
    """Reads of a running process's memory (process_vm_readv: no stop needed)."""
    return Frozen(pid).read


def _u64(data: bytes, at: int) -> int:
    value: int = struct.unpack_from("<Q", data, at)[0]
    return value


def walk(read: Reader, runtime: int, layout: Layout) -> list[RawThread]:
    """Every thread state of the main interpreter with its frames. Call with the threads stopped; reads only."""
    head = read(runtime + layout.runtime_interp_head, 8)
    gil = read(runtime + layout.runtime_gil_last_holder, 12)
    if len(head) < 8:
        raise ValueError(f"_PyRuntime at {runtime:#x} is not readable")
    holder = _u64(gil, 0) if len(gil) == 12 and struct.unpack_from("<i", gil, 8)[0] else 0
    interp = _u64(head, 0)
    ts_raw = read(interp + layout.interp_threads_head, 8) if interp else b""
    tstate = _u64(ts_raw, 0) if len(ts_raw) == 8 else 0
    threads: list[RawThread] = []
    seen: set[int] = set()
    span = layout.ts_native_thread_id + 8
    while tstate and tstate not in seen and len(threads) < MAX_THREADS:
        seen.add(tstate)
        ts = read(tstate, span)
        if len(ts) < span:
            break
        thread = RawThread(_u64(ts, layout.ts_native_thread_id), _u64(ts, layout.ts_thread_id), tstate == holder, [])
        cframe = _u64(ts, layout.ts_cframe)
        current = read(cframe + layout.cframe_current_frame, 8) if cframe else b""
        frame = _u64(current, 0) if len(current) == 8 else 0
        visited: set[int] = set()
        while frame and frame not in visited:
            if len(thread.frames) >= MAX_FRAMES:
                thread.truncated = True
                break
            visited.add(frame)
            raw = read(frame, layout.frame_size)
            if len(raw) < layout.frame_size:
                thread.truncated = True
                break
            thread.frames.append((_u64(raw, layout.frame_code), _u64(raw, layout.frame_prev_instr)
                                  | (raw[layout.frame_owner] << 56)))
            frame = _u64(raw, layout.frame_previous)
        threads.append(thread)
        tstate = _u64(ts, layout.ts_next)
    return threads


# --- naming, after the target runs again ---------------------------------------------------------------------


@dataclass(slots=True)
class CodeInfo:
    qualname: str
    filename: str
    firstlineno: int
    firsttraceable: int
    linetable: bytes
    lines: dict[int, int | None] = field(default_factory=dict)  # line_of's answers, by instruction offset
    ranges: tuple[list[int], list[int | None]] | None = None  # the location table read, once needed


def read_str(read: Reader, address: int, layout: Layout) -> str | None:
    head = read(address, layout.str_ascii_data)
    if len(head) < layout.str_ascii_data:
        return None
    length = _u64(head, 16)
    state = struct.unpack_from("<I", head, 32)[0]
    kind, compact, ascii_ = state >> 2 & 7, state >> 5 & 1, state >> 6 & 1
    if not compact or kind not in (1, 2, 4) or length > 1 << 20:
        return None
    data = read(address + (layout.str_ascii_data if ascii_ else layout.str_compact_data), length * kind)
    if len(data) < length * kind:
        return None
    codec = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[kind]
    return data.decode(codec, "replace")


def _read_bytes(read: Reader, address: int) -> bytes:
    head = read(address, 32)
    if len(head) < 32:
        return b""
    size = _u64(head, 16)
    return read(address + 32, size) if size < 1 << 24 else b""


def _read_int(read: Reader, address: int) -> int | None:
    head = read(address, 24)
    if len(head) < 24:
        return None
    size = struct.unpack_from("<q", head, 16)[0]
    if abs(size) > 8:
        return None
    digits = read(address + 24, 4 * abs(size))
    value = 0
    for i in reversed(range(abs(size))):
        value = value << 30 | struct.unpack_from("<I", digits, 4 * i)[0]
    return -value if size < 0 else value


def code_info(read: Reader, code: int, layout: Layout, head: bytes | None = None) -> CodeInfo | None:
    raw = head if head is not None and len(head) >= layout.code_code else read(code, layout.code_code)
    if len(raw) < layout.code_code:
        return None
    qualname = read_str(read, _u64(raw, layout.code_qualname), layout)
    filename = read_str(read, _u64(raw, layout.code_filename), layout)
    if qualname is None or filename is None:
        return None
    return CodeInfo(qualname, filename, struct.unpack_from("<i", raw, layout.code_firstlineno)[0],
                    struct.unpack_from("<i", raw, layout.code_firsttraceable)[0],
                    _read_bytes(read, _u64(raw, layout.code_linetable)))


# Code objects named in earlier captures, by (pid, start time, address). An address can be reused by another code
# object once the first is freed, so an entry counts only while the object there still points to the same name,
# file and line table strings and starts on the same line (read in one batch for all frames of a capture).
_codes: OrderedDict[tuple[int, str | None, int], tuple[bytes, CodeInfo]] = OrderedDict()
_CODES_KEPT = 8192


def _signature(head: bytes, layout: Layout) -> bytes:
    return (head[layout.code_firstlineno:layout.code_firstlineno + 4]
            + head[layout.code_filename:layout.code_linetable + 8])


def code_infos(read: Reader, pid: int, identity: str | None, addresses: list[int],
               layout: Layout) -> dict[int, CodeInfo | None]:
    heads = read_many(pid, [(code, layout.code_code) for code in addresses])
    out: dict[int, CodeInfo | None] = {}
    for code, head in zip(addresses, heads, strict=True):
        if len(head) < layout.code_code:
            head = read(code, layout.code_code)  # a batch stops at the first unreadable range
        if len(head) < layout.code_code:
            out[code] = None
            continue
        signature = _signature(head, layout)
        key = (pid, identity, code)
        with _cache_lock:
            cached = _codes.get(key)
        if cached is not None and cached[0] == signature:
            out[code] = cached[1]
            continue
        info = out[code] = code_info(read, code, layout, head)
        if info is not None:
            with _cache_lock:
                _codes[key] = (signature, info)
                while len(_codes) > _CODES_KEPT:
                    _codes.popitem(last=False)
    return out


def _varint(table: bytes, at: int) -> tuple[int, int]:
    byte = table[at]
    value, shift = byte & 63, 0
    at += 1
    while byte & 64:
        byte = table[at]
        shift += 6
        value |= (byte & 63) << shift
        at += 1
    return value, at


def _ranges(table: bytes, firstlineno: int) -> tuple[list[int], list[int | None]]:
    """The 3.11 location table (PEP 626/657; Objects/locations.md) as (end offsets, lines): entries of (code units,
    line delta), the line None where an entry has no location."""
    ends: list[int] = []
    lines: list[int | None] = []
    line = firstlineno
    address = 0
    at = 0
    try:
        while at < len(table):
            first = table[at]
            code = first >> 3 & 15
            address += ((first & 7) + 1) * 2
            if code in (13, 14):  # no columns / long form: a signed varint line delta first
                raw, _ = _varint(table, at + 1)
                line += -(raw >> 1) if raw & 1 else raw >> 1
            elif code in (11, 12):  # one-line forms 1 and 2
                line += code - 10
            ends.append(address)
            lines.append(None if code == 15 else line)
            at += 1
            while at < len(table) and not table[at] & 128:
                at += 1
    except IndexError:
        pass  # a torn table: the entries read so far stand
    return ends, lines


def line_of(info: CodeInfo, offset: int) -> int | None:
    """The line of the instruction at byte `offset` of the code."""
    if offset < 0:
        return info.firstlineno
    if info.ranges is None:
        info.ranges = _ranges(info.linetable, info.firstlineno)
    ends, lines = info.ranges
    i = bisect.bisect_right(ends, offset)
    return lines[i] if i < len(lines) else None


@dataclass(slots=True)
class NamedFrame:
    function: str
    file: str | None
    line: int | None


def frames_of(thread: RawThread, layout: Layout, codes: dict[int, CodeInfo | None]) -> list[NamedFrame]:
    """The thread's frames named (innermost first); frames not yet started (CPython's "incomplete" frames, which
    its own tracebacks leave out too) are skipped."""
    out: list[NamedFrame] = []
    for code, tagged in thread.frames:
        owner, prev_instr = tagged >> 56, tagged & ((1 << 56) - 1)
        info = codes.get(code)
        if info is None:
            out.append(NamedFrame("<unreadable code object>", None, None))
            continue
        units = (prev_instr - (code + layout.code_code)) // 2
        if owner != FRAME_OWNED_BY_GENERATOR and units < info.firsttraceable:
            continue
        if units not in info.lines:
            info.lines[units] = line_of(info, units * 2)
        out.append(NamedFrame(info.qualname, info.filename, info.lines[units]))
    return out


# --- thread names: threading._active, found once a process ---------------------------------------------------


def _dict_items(read: Reader, address: int) -> list[tuple[int, int]]:
    """(key, value) object addresses of a dict (combined or split table)."""
    head = read(address, 48)
    if len(head) < 48:
        return []
    keys, values = _u64(head, 32), _u64(head, 40)
    return _keys_items(read, keys, values)


def _keys_items(read: Reader, keys: int, values: int) -> list[tuple[int, int]]:
    khead = read(keys, 32)
    if len(khead) < 32:
        return []
    log2_index_bytes, kind = khead[9], khead[10]
    nentries = _u64(khead, 24)
    if nentries > 1 << 16:  # not a dict of this process (torn or stale memory)
        return []
    size = 24 if kind == 0 else 16  # PyDictKeyEntry (hash, key, value) or PyDictUnicodeEntry (key, value)
    entries = read(keys + 32 + (1 << log2_index_bytes), nentries * size)
    vals = read(values, nentries * 8) if values else b""
    items = []
    for i in range(len(entries) // size):
        key = _u64(entries, i * size + size - 16)
        value = _u64(vals, i * 8) if values and len(vals) >= (i + 1) * 8 else _u64(entries, i * size + size - 8)
        if key and value:
            items.append((key, value))
    return items


def _find_str_key(read: Reader, pid: int, items: list[tuple[int, int]], wanted: str, layout: Layout) -> int | None:
    """The value whose key is the ASCII string `wanted`; the key headers are read in one batch."""
    heads = read_many(pid, [(key, layout.str_ascii_data + len(wanted)) for key, _ in items])
    for (_, value), head in zip(items, heads, strict=True):
        if len(head) == layout.str_ascii_data + len(wanted) and _u64(head, 16) == len(wanted) and (
                head[layout.str_ascii_data:] == wanted.encode()):
            return value
    return None


def _instance_items(read: Reader, obj: int, layout: Layout) -> list[tuple[int, int]]:
    type_raw = read(read_ptr(read, obj + 8), layout.heaptype_cached_keys + 8)
    if len(type_raw) < layout.heaptype_cached_keys + 8:
        return []
    flags = _u64(type_raw, layout.type_flags)
    if flags & TPFLAGS_MANAGED_DICT:
        made = read_ptr(read, obj + layout.managed_dict)
        if made:
            return _dict_items(read, made)
        values = read_ptr(read, obj + layout.managed_values)
        keys = _u64(type_raw, layout.heaptype_cached_keys)
        return _keys_items(read, keys, values) if values and keys else []
    offset = struct.unpack_from("<q", type_raw, layout.type_dictoffset)[0]
    made = read_ptr(read, obj + offset) if offset > 0 else 0
    return _dict_items(read, made) if made else []


def read_ptr(read: Reader, address: int) -> int:
    raw = read(address, 8)
    return _u64(raw, 0) if len(raw) == 8 else 0


_active_cache: OrderedDict[tuple[int, str | None], int] = OrderedDict()


def _active_dict(read: Reader, pid: int, identity: str | None, runtime: int, layout: Layout) -> int | None:
    """threading._active's address (a module global: the same dict for the process's life), or None when the
    threading module was never imported."""
    with _cache_lock:
        cached = _active_cache.get((pid, identity))
    if cached:
        return cached
    interp = read_ptr(read, runtime + layout.runtime_interp_head)
    modules = read_ptr(read, interp + layout.interp_modules) if interp else 0
    module = _find_str_key(read, pid, _dict_items(read, modules), "threading", layout) if modules else None
    md_dict = read_ptr(read, module + layout.module_dict) if module else 0
    active = _find_str_key(read, pid, _dict_items(read, md_dict), "_active", layout) if md_dict else None
    if active:
        with _cache_lock:
            _active_cache[(pid, identity)] = active
            while len(_active_cache) > 16:
                _active_cache.popitem(last=False)
    return active


def thread_names(read: Reader, pid: int, identity: str | None, runtime: int, layout: Layout) -> dict[int, str]:
    """{pthread ident: Thread.name} of the threads the threading module knows."""
    active = _active_dict(read, pid, identity, runtime, layout)
    names: dict[int, str] = {}
    for key, thread in _dict_items(read, active) if active else []:
        ident = _read_int(read, key)
        if ident is None:
            continue
        for attr, value in _instance_items(read, thread, layout):
            if read_str(read, attr, layout) == "_name":
                text = read_str(read, value, layout)
                if text is not None:
                    names[ident] = text
                break
    return names


def name(read: Reader, pid: int, identity: str | None, runtime: int, layout: Layout,
         threads: list[RawThread]) -> dict[int, tuple[str | None, bool, list[NamedFrame]]]:
    """{native thread id: (Python thread name, holds the GIL, frames innermost first)}."""
    codes = code_infos(read, pid, identity, list(dict.fromkeys(c for t in threads for c, _ in t.frames)), layout)
    names = thread_names(read, pid, identity, runtime, layout)
    return {t.native_id: (names.get(t.ident), t.holds_gil, frames_of(t, layout, codes)) for t in threads}
