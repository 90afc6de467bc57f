"""dyntel._speedups.write_tracefs_samples called directly, with every plan the Python side can hand it: the
fields' kinds, array shapes, offsets, sizes and element sizes come from the tracefs format inside the recording,
so a hostile perf.data chooses them as freely as the records. (fuzz.perf_file reaches the same code through the
whole reader; this target spends every execution in C.)

Input: 16 bytes of parameters (sample_type bits, clock, sort, field count, and per field kind, array shape,
offset, size, element size), then the data section. The documented outcome is a count or None, with no sanitizer
report; anything else is a finding.

    python -m fuzz.native_speedups [libFuzzer flags] [corpus dirs]     fuzz
    python -m fuzz.native_speedups --run FILE...                          run inputs once
"""

from __future__ import annotations

import os
import struct

from fuzz.common import entry

MODULES: list[str] = []
# The sample_type bits the module walks, in the order of the parameter bits that select them
_BITS = (1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 5, 1 << 6, 1 << 7, 1 << 8, 1 << 9, 1 << 16)
_RAW = 1 << 10
PARAMS = 20  # sample_type selector (2), flags (1), clock offset (8), 3 fields of (spec, offset, size)


def sample_type_of(sel: int) -> int:
    return _RAW | sum(bit for i, bit in enumerate(_BITS) if sel >> i & 1)


def selector_of(sample_type: int) -> int:
    return sum(1 << i for i, bit in enumerate(_BITS) if sample_type & bit)


def plan_of(params: bytes) -> tuple[int, bool, int, bool, tuple[bytes, tuple[tuple[bytes, int, int, int, int, int],
                                                                                 ...]]]:
    """flags: bit 0 wall-clock time, bit 1 sort, bits 4-5 the field count. A field's spec: kind (mod 5) in bits 0-2,
    array shape in bits 3-4, element size 1/2/4/8 in bits 5-6."""
    sel, flags, offset = struct.unpack_from("<HBq", params.ljust(PARAMS, b"\0"))
    spec = params[11:PARAMS].ljust(9, b"\0")
    fields = []
    for i in range(flags >> 4 & 3):
        s, off, size = spec[3 * i : 3 * i + 3]
        fields.append((b'"f%d":' % i, (s & 7) % 5, off, size, (1, 2, 4, 8)[s >> 5 & 3], s >> 3 & 3))
    return sample_type_of(sel), bool(flags & 1), offset, bool(flags & 2), (b'{"n":"fuzz:event"', tuple(fields))


def params_of(sample_type: int, fields: list[tuple[int, int, int, int, int]], wall: bool = True) -> bytes:
    """The parameter bytes for a plan: fields as (kind, array, offset, size, element size)."""
    out = struct.pack("<HBq", selector_of(sample_type), int(wall) | 2 | len(fields) << 4, 1_700_000_000_000_000_000)
    for kind, array, off, size, elem in fields:
        out += bytes([kind | array << 3 | (1, 2, 4, 8).index(elem) << 5, off, size])
    return out.ljust(PARAMS, b"\0")


def run(data: bytes) -> None:
    from dyntel import _speedups  # type: ignore[attr-defined]

    sample_type, wall, clock_offset, sort, plan = plan_of(data[:PARAMS])
    buf = data[PARAMS:]
    fd = os.open(os.devnull, os.O_WRONLY)
    try:
        _speedups.write_tracefs_samples(
            buffer=buf, start=0, end=len(buf), sample_type=sample_type, plan_ids={0: 0, 1: 0, 100: 0, 101: 1},
            plans=[plan, None], time_is_wall=wall, clock_offset=clock_offset, first_sep=b"", sep=b"",
            suffix=b"\n", fd=fd, sort=sort)
    finally:
        os.close(fd)


def TestOneInput(data: bytes) -> None:
    run(data)


if __name__ == "__main__":
    entry(run, MODULES)
