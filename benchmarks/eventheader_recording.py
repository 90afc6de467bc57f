"""Big EventHeader perf.data files for benchmarks, made from real ones.

`eventheader_only(src, dst, samples)` writes a file-mode perf.data whose data section holds only the EventHeader
samples of `src` (real events of real providers: the corpus's test providers, the OpenTelemetry exporters, the
writer), repeated in order until there are `samples` of them, each copy closed by a FINISHED_ROUND; every other
section (attrs, ids, features: tracing data, event names, clock) is `src`'s, so every decoder reads it as it reads
`src`. Needs file mode, little-endian, and PERF_SAMPLE_IDENTIFIER (or one attr), which perf record gives.
"""

from __future__ import annotations

import struct
from pathlib import Path

from dyntel.sources.perf import abi
from dyntel.sources.perf.data import PerfDataSource

_FINISHED_ROUND = struct.pack("<IHH", abi.RECORD_FINISHED_ROUND, 0, 8)


def eventheader_samples(src: Path) -> tuple[bytes, list[bytes]]:
    """(the file's bytes, its EventHeader sample records in file order)."""
    data = src.read_bytes()
    with src.open("rb") as f:
        source = PerfDataSource(str(src), f)
        events = source.events()
        if source.big_endian or source.data_range is None or source.header is None or source.header.pipe:
            raise ValueError(f"{src}: not a little-endian file-mode perf.data")
        attrs = source.attrs
        eh_ids: set[int] = set()
        for attr in attrs:
            fmt = source.formats.get(attr.config & 0xFFFFFFFF) if attr.type == abi.TYPE_TRACEPOINT else None
            if fmt is not None and fmt.kind == "eventheader":
                eh_ids.update(attr.ids or [0])
        if not eh_ids:
            events.close()
            return data, []
        by_identifier = all(a.sample_type & abi.SAMPLE_IDENTIFIER for a in attrs)
        if not by_identifier and len(attrs) != 1:
            raise ValueError(f"{src}: samples without PERF_SAMPLE_IDENTIFIER and more than one attr")
        start, end = source.data_range
        events.close()
    out = []
    pos = start
    while pos + 8 <= end:
        rtype, _, size = struct.unpack_from("<IHH", data, pos)
        if size < 8:
            raise ValueError(f"{src}: bad record size at {pos}")
        if rtype == abi.RECORD_SAMPLE:
            ident = struct.unpack_from("<Q", data, pos + 8)[0] if by_identifier else 0
            if ident in eh_ids or (not by_identifier and eh_ids):
                out.append(data[pos : pos + size])
        pos += size
    return data, out


def eventheader_only(src: Path, dst: Path, samples: int) -> int:
    """Write the file; returns its number of samples (0 when `src` has no EventHeader samples: nothing written)."""
    data, records = eventheader_samples(src)
    if not records:
        return 0
    copy = b"".join(records) + _FINISHED_ROUND
    copies = max(1, -(-samples // len(records)))
    body = copy * copies
    data_off, data_size = struct.unpack_from("<QQ", data, 40)
    flags = struct.unpack_from("<4Q", data, 72)
    nfeatures = sum(bin(f).count("1") for f in flags)
    table_off = data_off + data_size
    delta = len(body) - data_size
    table = bytearray(data[table_off : table_off + 16 * nfeatures])
    for i in range(nfeatures):
        off, size = struct.unpack_from("<QQ", table, 16 * i)
        struct.pack_into("<QQ", table, 16 * i, off + delta, size)
    head = bytearray(data[:data_off])
    struct.pack_into("<Q", head, 48, len(body))
    dst.write_bytes(bytes(head) + body + bytes(table) + data[table_off + 16 * nfeatures :])
    return len(records) * copies
