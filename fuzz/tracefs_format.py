"""tracefs format files (from tracefs on a live host, or the tracing data inside a perf.data) and the raw entries
decoded by them. Input: `format text SEPARATOR raw entry bytes` (the format text may hold NUL bytes, as the tracing
data inside a perf.data may).

Documented outcomes: a TracepointFormat, or DecodeError naming the line (strict and lenient parsing both); then
decoding any raw entry never raises, and the compiled decoder (generated code) gives exactly what the field-by-field
decoder gives, in both byte orders.

    python -m fuzz.tracefs_format [libFuzzer flags] [corpus dirs]     fuzz
    python -m fuzz.tracefs_format --run FILE...                          run inputs once
"""

from __future__ import annotations

from fuzz.common import Finding, entry

MODULES = ["dyntel.decoders.tracefs_format", "dyntel.decoders.tracefs_decl", "dyntel.decoders.tracefs_decode"]
SEPARATOR = b"\n\0raw\0\n"


def run(data: bytes) -> None:
    from dyntel.decoders.tracefs_format import decode_slowly, parse_format
    from dyntel.errors import DecodeError

    text, _, raw = data.partition(SEPARATOR)
    for strict in (True, False):
        for long_size in (8, 4):
            try:
                fmt = parse_format(text, "fuzz", long_size, strict=strict)
            except DecodeError as e:
                if "line" not in str(e):
                    raise Finding(f"a format error that names no line: {e}") from e
                continue
            for big in (False, True):
                fast = fmt.decode(raw, big)
                slow = decode_slowly(fmt.user_fields, raw, big)
                if list(fast) != list(slow):
                    raise Finding(f"compiled decoder {fast!r} != field by field {slow!r} "
                                  f"(big-endian {big}, long {long_size})")
                if len(fast) != len(fmt.schema.fields):
                    raise Finding(f"{len(fast)} values for {len(fmt.schema.fields)} fields in the schema")


def TestOneInput(data: bytes) -> None:
    run(data)


if __name__ == "__main__":
    entry(run, MODULES)
