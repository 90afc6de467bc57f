"""The native pre-filter's tests on a tracepoint's raw bytes (dyntel._prefilter), compiled from the field tests
of a `FieldFilter` and the event's tracefs format. Shared by the recording (sources.perf.data) and the live
(sources.perf.live) paths.
"""

from __future__ import annotations

from typing import Any

from dyntel.event import ArrayKind
from dyntel.sources.perf import abi

# Sample layouts whose raw data the C scan can find (fixed fields, the call chain, RAW).
WALKABLE = (abi.SAMPLE_IP | abi.SAMPLE_TID | abi.SAMPLE_TIME | abi.SAMPLE_ADDR | abi.SAMPLE_CALLCHAIN
             | abi.SAMPLE_ID | abi.SAMPLE_CPU | abi.SAMPLE_PERIOD | abi.SAMPLE_STREAM_ID | abi.SAMPLE_RAW
             | abi.SAMPLE_IDENTIFIER)
_OPS = {"==": 0, "!=": 1, "<": 2, "<=": 3, ">": 4, ">=": 5, "in": 6, "not in": 7}
_WIDE_MIN, _WIDE_MAX = -(1 << 63), (1 << 64) - 1


def raw_alternatives(fmt: Any, alternatives: Any) -> tuple[tuple[Any, ...], ...] | None:
    """The native pre-filter's tests on raw bytes for a tracepoint's field-test alternatives (any one may let a
    sample through), or None when a sample cannot be dropped: no alternatives, or one with nothing checkable, which
    might hold for any sample. Shared by the recording and the live paths."""
    if not alternatives:
        return None
    compiled = []
    for alternative in alternatives:
        tests = tuple(t for t in (_raw_test(fmt, *test) for test in alternative) if t is not None)
        if not tests:
            return None
        compiled.append(tests)
    return tuple(compiled)


def _raw_test(fmt: Any, field: str, op: str, values: tuple[int, ...]) -> tuple[int, int, bool, int,
                                                                             tuple[int, ...]] | None:
    """A field test as the C scan reads it: (offset, element size, signed, op, values), or None when the field is
    not an integer the decoder reads at a fixed place, or the test is not one the scan knows."""
    from dyntel.decoders.tracefs_format import FieldShow

    code = _OPS.get(op)
    if code is None or not values or (code < 6 and len(values) != 1):
        return None
    if any(type(v) is not int or not _WIDE_MIN <= v <= _WIDE_MAX for v in values):
        return None
    for f in fmt.user_fields:
        if f.name != field:
            continue
        # The first field of the name is the one `fields.NAME` reads (Event.fields keeps the first).
        if (f.dynamic is not None or f.array != ArrayKind.NONE or f.element_size not in (1, 2, 4, 8)
                or f.size < f.element_size or f.show not in (FieldShow.SIGNED, FieldShow.UNSIGNED, FieldShow.HEX)):
            return None
        # Read signed exactly where the decoder does (tracefs_decl._reads_signed).
        signed = f.show == FieldShow.SIGNED and f.element_size >= 4
        return f.offset, f.element_size, signed, code, tuple(values)
    return None
