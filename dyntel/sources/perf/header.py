"""The metadata parts of perf.data: file header, event attributes, feature sections, and their pipe-mode records.

In file mode the header points at an attrs section (each perf_event_attr followed by a perf_file_section that
locates its sample ids), the data section, and, after the data, one perf_file_section per feature bit set in the
header's 256-bit map. In pipe mode the same facts arrive as records in the stream (HEADER_ATTR, HEADER_FEATURE,
HEADER_TRACING_DATA, EVENT_UPDATE). Both end up in the same `Attr` and `Features` structures.

Every parser here takes bytes from the recording and either returns what it could read or raises `HeaderError`
with the offset of the first byte it could not use; none of them trusts a count or size it has not checked against
the bytes available.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from dyntel.sources.perf import abi

MAX_IDS = 1 << 20  # sample ids per attr worth believing


class HeaderError(Exception):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass(slots=True)
class FileHeader:
    big_endian: bool
    size: int  # 16 in pipe mode
    attr_size: int = 0  # bytes per entry of the attrs section: a perf_event_attr and a perf_file_section
    attrs_offset: int = 0
    attrs_size: int = 0
    data_offset: int = 0
    data_size: int = 0
    features: int = 0  # the 256-bit feature map as one integer; bit n is feature n

    @property
    def pipe(self) -> bool:
        return self.size == abi.PIPE_HEADER_SIZE

    def feature_bits(self) -> list[int]:
        return [bit for bit in range(abi.HEADER_FEATURE_BITS) if self.features >> bit & 1]


def byte_order(head: bytes) -> bool | None:
    """True for a big-endian file, False for little-endian, None when `head` is not perf.data."""
    if head[:8] == abi.MAGIC:
        return False
    if head[:8] == abi.MAGIC_SWAPPED:
        return True
    return None


def parse_pipe_header(head: bytes) -> FileHeader:
    """The first 16 bytes of any perf.data: magic and header size (16 means pipe mode)."""
    be = byte_order(head)
    if be is None or len(head) < abi.PIPE_HEADER_SIZE:
        raise HeaderError("not a perf.data file (no PERFILE2 magic)", 0)
    (size,) = abi.U64[be].unpack_from(head, 8)
    return FileHeader(big_endian=be, size=size)


def parse_file_header(head: bytes, file_size: int) -> FileHeader:
    """The whole file-mode header; sections are checked against `file_size`."""
    hdr = parse_pipe_header(head)
    if hdr.pipe:
        return hdr
    if hdr.size < abi.FILE_HEADER_SIZE:
        raise HeaderError(f"file header size {hdr.size} is smaller than the {abi.FILE_HEADER_SIZE} bytes it holds", 8)
    if len(head) < abi.FILE_HEADER_SIZE:
        raise HeaderError("file ends inside its header", len(head))
    (_, attr_size, a_off, a_size, d_off, d_size, _e_off, _e_size, f0, f1, f2, f3) = abi.FILE_HEADER_REST[
        hdr.big_endian
    ].unpack_from(head, 8)
    hdr.attr_size = attr_size
    hdr.attrs_offset, hdr.attrs_size = a_off, a_size
    hdr.data_offset, hdr.data_size = d_off, d_size
    hdr.features = f0 | f1 << 64 | f2 << 128 | f3 << 192
    return hdr


@dataclass(slots=True, eq=False)
class Attr:
    """One perf_event_attr, the fields this reader uses, and the sample ids and name that belong to it."""

    type: int
    config: int
    sample_type: int
    read_format: int
    sample_id_all: bool
    branch_sample_type: int = 0
    sample_regs_user: int = 0
    sample_regs_intr: int = 0
    ids: tuple[int, ...] = ()
    name: str = ""  # "system:event" from HEADER_EVENT_DESC or EVENT_UPDATE; "" when the file gave none
    size: int = 0  # bytes of the attr as stored

    @property
    def sample_id_offset(self) -> int | None:
        """Byte offset of the sample id within a PERF_RECORD_SAMPLE (header included), or None when absent."""
        st = self.sample_type
        if st & abi.SAMPLE_IDENTIFIER:
            return 8
        if not st & abi.SAMPLE_ID:
            return None
        before = abi.SAMPLE_IP | abi.SAMPLE_TID | abi.SAMPLE_TIME | abi.SAMPLE_ADDR
        return 8 + 8 * (st & before).bit_count()


    @property
    def sample_time_offset(self) -> int | None:
        """Byte offset of the time within a PERF_RECORD_SAMPLE (header included), or None when absent."""
        st = self.sample_type
        if not st & abi.SAMPLE_TIME:
            return None
        before = abi.SAMPLE_IDENTIFIER | abi.SAMPLE_IP | abi.SAMPLE_TID
        return 8 + 8 * (st & before).bit_count()


def parse_attr(buf: bytes, offset: int, avail: int, big_endian: bool) -> Attr:
    """A perf_event_attr at `offset`; `avail` is how many bytes belong to it there (its size field may say less)."""
    be = int(big_endian)
    if avail < abi.ATTR_SIZE_VER0 or offset + abi.ATTR_SIZE_VER0 > len(buf):
        raise HeaderError(f"perf_event_attr needs {abi.ATTR_SIZE_VER0} bytes, has {avail}", offset)
    typ, size, config, _period, sample_type, read_format = abi.ATTR_HEAD[be].unpack_from(buf, offset)
    # The attr's own size may be smaller than the slot it sits in (older writer) or larger (newer writer); read
    # only what both cover.
    size = min(size or abi.ATTR_SIZE_VER0, avail, len(buf) - offset)
    u64 = abi.U64[be]
    attr = Attr(
        type=typ,
        config=config,
        sample_type=sample_type,
        read_format=read_format,
        sample_id_all=bool(buf[offset + abi.ATTR_SAMPLE_ID_ALL_BYTE] & abi.ATTR_SAMPLE_ID_ALL_MASK[be]),
        size=size,
    )
    if size >= abi.ATTR_BRANCH_SAMPLE_TYPE_OFFSET + 8:
        attr.branch_sample_type = u64.unpack_from(buf, offset + abi.ATTR_BRANCH_SAMPLE_TYPE_OFFSET)[0]
    if size >= abi.ATTR_SAMPLE_REGS_USER_OFFSET + 8:
        attr.sample_regs_user = u64.unpack_from(buf, offset + abi.ATTR_SAMPLE_REGS_USER_OFFSET)[0]
    if size >= abi.ATTR_SAMPLE_REGS_INTR_OFFSET + 8:
        attr.sample_regs_intr = u64.unpack_from(buf, offset + abi.ATTR_SAMPLE_REGS_INTR_OFFSET)[0]
    return attr


def read_ids(buf: bytes, offset: int, size: int, big_endian: bool) -> tuple[int, ...]:
    n = size // 8
    if n <= 0:
        return ()
    fmt = (">" if big_endian else "<") + f"{n}Q"
    ids: tuple[int, ...] = struct.unpack_from(fmt, buf, offset)
    return ids


def parse_attrs_section(buf: bytes, hdr: FileHeader, file_size: int) -> list[Attr]:
    """The attrs section of a file-mode perf.data, with each attr's ids (which live elsewhere in the file)."""
    entry = hdr.attr_size
    if entry < abi.ATTR_SIZE_VER0 + 16 or entry > 0x10000:
        raise HeaderError(f"attr entry size {entry} is not plausible", 16)
    start, size = hdr.attrs_offset, hdr.attrs_size
    if start + size > file_size:
        # Placed at the header's attrs field (byte 24) when the section starts past the end: no byte of it exists.
        raise HeaderError(f"attrs section ({size} bytes at {start}) runs past the end of the file ({file_size} "
                          "bytes)", start if start < file_size else 24)
    be = hdr.big_endian
    attr_bytes = entry - 16
    attrs: list[Attr] = []
    for pos in range(start, start + size - entry + 1, entry):
        attr = parse_attr(buf, pos, attr_bytes, be)
        ids_off, ids_size = abi.U64X2[be].unpack_from(buf, pos + attr_bytes)
        if ids_off + ids_size > file_size:
            raise HeaderError(f"ids of attr {len(attrs)} ({ids_size} bytes at {ids_off}) are outside the file", pos)
        if ids_size > MAX_IDS * 8:
            # perf opens one event per CPU (and per thread when following tasks); millions would be a bad size
            raise HeaderError(f"attr {len(attrs)} claims {ids_size // 8} sample ids", pos)
        attr.ids = read_ids(buf, ids_off, ids_size, be)
        attrs.append(attr)
    return attrs


def feature_sections(buf: bytes, hdr: FileHeader, file_size: int) -> tuple[dict[int, bytes], list[HeaderError]]:
    """Feature number -> its bytes, from the perf_file_sections that follow the data section.

    A section that points outside the file is reported and left out; the others are still read.
    """
    out: dict[int, bytes] = {}
    errors: list[HeaderError] = []
    pos = hdr.data_offset + hdr.data_size
    u64x2 = abi.U64X2[hdr.big_endian]
    for bit in hdr.feature_bits():
        if pos + 16 > file_size:
            if pos > file_size:
                # The data section's size puts the table past the end: the fault is in the header (byte 40).
                errors.append(HeaderError(f"feature section table at byte {pos} (after the data section) is past "
                                          f"the end of the file ({file_size} bytes)", 40))
            else:
                errors.append(HeaderError(f"feature section table ends early (at feature {bit})", pos))
            break
        off, size = u64x2.unpack_from(buf, pos)
        if off + size > file_size:
            errors.append(HeaderError(f"feature {bit} ({size} bytes at {off}) runs past the end of the file", pos))
        else:
            out[bit] = bytes(buf[off : off + size])
        pos += 16
    return out, errors


@dataclass(slots=True)
class EventDesc:
    attr: Attr
    name: str
    ids: tuple[int, ...]


def parse_event_desc(blob: bytes, big_endian: bool) -> list[EventDesc]:
    """HEADER_EVENT_DESC: per event its attr, "system:event" name and sample ids.

    Stops (keeping what it read) at the first entry that does not fit, as the reference reader does.
    """
    be = int(big_endian)
    out: list[EventDesc] = []
    if len(blob) < 8:
        return out
    count, attr_size = abi.U32X2[be].unpack_from(blob, 0)
    if attr_size < abi.ATTR_SIZE_VER0 or attr_size > 0x10000:
        return out
    pos = 8
    end = len(blob)
    for _ in range(count):
        if pos + attr_size + 8 > end:
            break
        attr = parse_attr(blob, pos, attr_size, bool(be))
        pos += attr_size
        n_ids, str_size = abi.U32X2[be].unpack_from(blob, pos)
        pos += 8
        if n_ids > 0x10000 or str_size > 0x10000 or pos + str_size + 8 * n_ids > end:
            break
        raw_name = blob[pos : pos + str_size]
        pos += str_size
        nul = raw_name.find(b"\0")
        if nul < 0:
            break
        name = raw_name[:nul].decode("utf-8", "surrogateescape")
        ids = read_ids(blob, pos, 8 * n_ids, bool(be))
        pos += 8 * n_ids
        attr.ids = ids
        attr.name = name
        out.append(EventDesc(attr, name, ids))
    return out


@dataclass(slots=True)
class ClockData:
    clockid: int
    wall_clock_ns: int
    clockid_time_ns: int

    @property
    def offset_ns(self) -> int:
        """What to add to a sample's time to get nanoseconds since the Unix epoch."""
        return self.wall_clock_ns - self.clockid_time_ns


def parse_clock_data(blob: bytes, big_endian: bool) -> ClockData | None:
    """HEADER_CLOCK_DATA (version >= 1, clockid known), else None: then the clock's offset to wall time is unknown."""
    layout = abi.CLOCK_DATA[int(big_endian)]
    if len(blob) < layout.size:
        return None
    version, clockid, wall_ns, clock_ns = layout.unpack_from(blob, 0)
    if version < 1 or clockid == abi.CLOCKID_UNKNOWN:
        return None
    return ClockData(clockid, wall_ns, clock_ns)


def parse_u64(blob: bytes, big_endian: bool) -> int | None:
    if len(blob) < 8:
        return None
    v: int = abi.U64[int(big_endian)].unpack_from(blob, 0)[0]
    return v


def parse_string(blob: bytes, big_endian: bool) -> str | None:
    """A perf_header_string (u32 length, NUL-padded text), as HOSTNAME, OSRELEASE, VERSION, ARCH, CMDLINE use."""
    if len(blob) < 4:
        return None
    (n,) = abi.U32[int(big_endian)].unpack_from(blob, 0)
    text = blob[4 : 4 + n]
    nul = text.find(b"\0")
    if nul >= 0:
        text = text[:nul]
    return text.decode("utf-8", "surrogateescape")


@dataclass(slots=True)
class Features:
    """What the feature sections (or HEADER_FEATURE records) said, parsed; `raw` keeps every section's bytes."""

    raw: dict[int, bytes] = field(default_factory=dict)
    event_desc: list[EventDesc] = field(default_factory=list)
    clock: ClockData | None = None
    clock_resolution_ns: int | None = None  # HEADER_CLOCKID: despite its name, the clock's resolution

    def add(self, bit: int, blob: bytes, big_endian: bool) -> None:
        self.raw[bit] = blob
        if bit == abi.HEADER_EVENT_DESC:
            self.event_desc = parse_event_desc(blob, big_endian)
        elif bit == abi.HEADER_CLOCK_DATA:
            self.clock = parse_clock_data(blob, big_endian)
        elif bit == abi.HEADER_CLOCKID:
            self.clock_resolution_ns = parse_u64(blob, big_endian)


def parse_header_attr_record(buf: bytes, pos: int, end: int, big_endian: bool) -> Attr:
    """PERF_RECORD_HEADER_ATTR: a perf_event_attr (its own size says how long) followed by its u64 ids."""
    body = pos + 8
    avail = end - body
    if avail < abi.ATTR_SIZE_VER0:
        raise HeaderError(f"HEADER_ATTR record too small for an attr ({avail} bytes)", pos)
    (size,) = abi.U32[int(big_endian)].unpack_from(buf, body + abi.ATTR_OFFSET_SIZE)
    if size < abi.ATTR_SIZE_VER0 or size > avail:
        raise HeaderError(f"HEADER_ATTR attr size {size} does not fit its {avail}-byte record", pos)
    attr = parse_attr(buf, body, size, big_endian)
    attr.ids = read_ids(buf, body + size, end - body - size, big_endian)
    return attr


def parse_event_update_name(buf: bytes, pos: int, end: int, big_endian: bool) -> tuple[int, str] | None:
    """PERF_RECORD_EVENT_UPDATE of type NAME (pipe mode's event names): (sample id, name), else None."""
    if end - pos < 24:
        return None
    typ, ident = abi.U64X2[int(big_endian)].unpack_from(buf, pos + 8)
    if typ != 2:  # PERF_EVENT_UPDATE__NAME
        return None
    raw = bytes(buf[pos + 24 : end])
    nul = raw.find(b"\0")
    return ident, (raw if nul < 0 else raw[:nul]).decode("utf-8", "surrogateescape")
