"""dyntel._prefilter.scan called directly, with the plans a replay's rules make: per sample id, drop or keep, and
field tests (offset and size inside the raw data, signedness, comparison, values) read from the tracefs format in
the recording. (fuzz.perf_file reaches the same code through the whole reader; this target spends every execution
in C.)

Input: 16 bytes of parameters (sample_type bits, sort, tests), then the data section. The documented outcome is
the scan's result or None, with no sanitizer report; anything else is a finding.

    python -m fuzz.native_prefilter [libFuzzer flags] [corpus dirs]     fuzz
    python -m fuzz.native_prefilter --run FILE...                          run inputs once
"""

from __future__ import annotations

import struct

from fuzz.common import entry
from fuzz.native_speedups import sample_type_of, selector_of

MODULES: list[str] = []
PARAMS = 16
_ORDER = (1 << 16, 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 6)  # IDENTIFIER, IP, TID, TIME, ADDR, ID: the fixed head


def offsets(sample_type: int) -> tuple[int, int]:
    """(id offset, time offset) in a sample record, as the reader's dispatch computes them (0: none)."""
    def at(bit: int) -> int:
        return 8 + 8 * sum(1 for b in _ORDER[: _ORDER.index(bit)] if sample_type & b)

    id_off = 8 if sample_type & (1 << 16) else at(1 << 6) if sample_type & (1 << 6) else 0
    return id_off, at(1 << 2) if sample_type & (1 << 2) else 0


def params_of(sample_type: int) -> bytes:
    """Parameters that keep every sample of the one plan, in time order (seeds; the fuzzer adds tests)."""
    return struct.pack("<HBBBq", selector_of(sample_type), 1, 0, 0, 0).ljust(PARAMS, b"\0")


def run(data: bytes) -> None:
    from dyntel import _prefilter  # type: ignore[attr-defined]

    params = data[:PARAMS].ljust(PARAMS, b"\0")
    sel, flags, a, b, value = struct.unpack_from("<HBBBq", params)
    sample_type = sample_type_of(sel)
    id_off, time_off = offsets(sample_type)
    tests = []
    for spec in (a, b)[: flags >> 2 & 3]:
        tests.append((spec & 0x1F, (1, 2, 4, 8)[spec >> 5 & 3], bool(spec & 0x80), flags >> 4 & 7,
                      (value, value >> 3) if (flags >> 4 & 7) >= 6 else (value,)))
    keep = (sample_type, (tuple(tests),) if tests else ())
    plans = [keep, None] if id_off else [keep]
    buf = data[PARAMS:]
    _prefilter.scan(buffer=buf, start=0, end=len(buf), id_offset=id_off, time_offset=time_off,
                    plan_ids={0: 0, 1: 0, 100: 0, 101: 1} if id_off else {}, plans=plans, sort=bool(flags & 1))


def TestOneInput(data: bytes) -> None:
    run(data)


if __name__ == "__main__":
    entry(run, MODULES)
