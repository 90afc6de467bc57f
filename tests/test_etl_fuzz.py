"""Damaged ETL files: truncated at many points and with seeded bit flips, every corpus file ends in counted
problems (with byte offsets) or a DecodeError, never another exception or a hang."""

from __future__ import annotations

import io
import random

import pytest
from support import deadline
from test_etl import FILES, etl_bytes

from dyntel.errors import DecodeError
from dyntel.sources.etw.etl import EtlSource
from dyntel.sources.recordings import open_recording_bytes

# The 4.9 MB PerfView collection is fuzzed through its first buffers: the walk is the same, and the whole file
# takes 2 s a pass.
_MAX_BASE = 256 * 1024


def _base(name: str) -> bytes:
    return etl_bytes(name)[:_MAX_BASE]


def _read_all(data: bytes) -> EtlSource:
    source = EtlSource("fuzz.etl", io.BytesIO(data))
    try:
        for _ in source.events():
            pass
    except DecodeError as e:
        assert e.offset is not None, str(e)
    for p in source.stats.problems:
        assert 0 <= p.offset <= len(data), str(p)
    return source


@pytest.mark.parametrize("name", list(FILES))
def test_truncated_prefixes(name: str) -> None:
    data = _base(name)
    stride = max(len(data) // 150, 7)
    truncated_with_problems = 0
    for cut in range(0, len(data), stride):
        with deadline(60):  # a hang guard for each input, not a time limit on the whole loop (load varies)
            source = _read_all(data[:cut])
        truncated_with_problems += bool(source.stats.problems)
    # A cut that is not on a buffer boundary is reported (a few cuts land on one, or inside the unused end).
    assert truncated_with_problems > (len(data) // stride) // 2


@pytest.mark.parametrize("name", list(FILES))
def test_bit_flips(name: str) -> None:
    data = _base(name)
    rng = random.Random(f"etl-fuzz-{name}")
    for _ in range(150):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(damaged))
            damaged[i] ^= 1 << rng.randrange(8)
        with deadline(60):  # a hang guard for each input, not a time limit on the whole loop (load varies)
            _read_all(bytes(damaged))


def test_damage_is_named_with_its_offset() -> None:
    data = bytearray(etl_bytes("gcevents.etl.zip"))
    # The first record of the second buffer (at 65536 + 72): an EVENT_HEADER whose size now overruns the buffer.
    data[65536 + 72:65536 + 74] = (0xFFF0).to_bytes(2, "little")
    source = _read_all(bytes(data))
    assert any(p.offset == 65536 + 72 and "does not fit" in p.message for p in source.stats.problems)
    # The other buffers still give their events.
    assert source.stats.events > 50


def test_not_an_etl_file_is_not_sniffed() -> None:
    from dyntel.errors import UnsupportedFormat

    with pytest.raises(UnsupportedFormat):
        open_recording_bytes(b"\x01" * 200, "x.etl")
