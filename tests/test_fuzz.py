"""Bad input never escapes as an unhandled exception or a hang.

Every truncated prefix of each reference recording, and a few thousand seeded random byte flips, must end in one of:
events decoded with malformed records counted (each problem naming its byte offset), or a DyntelError whose message
names the byte offset. Anything else (IndexError, struct.error, a hang) is a defect.
"""

from __future__ import annotations

import random
import re
import time

import pytest
from support import corpus_file, deadline

from dyntel.errors import DecodeError, DyntelError, UnsupportedFormat
from dyntel.sources.recordings import open_recording_bytes

FILES = ["linuxtracepoints/perf.data", "linuxtracepoints/EventHeaderInterceptorLE64.dat"]
FLIPS = 2000
SEED = 20261124
PER_RUN_SECONDS = 10




def decode_all(data: bytes, name: str) -> tuple[int, int]:
    """(events, bad records); raises only DyntelError, which must name a byte offset."""
    try:
        source = open_recording_bytes(data, name)
        n = 0
        for event in source.events():
            n += 1
            event.fields  # noqa: B018 - building the mapping must not fail either
    except UnsupportedFormat:
        return 0, 1
    except DyntelError as e:
        assert isinstance(e, DecodeError) and e.offset is not None, f"error without a byte offset: {e}"
        assert re.search(r"byte \d+", str(e)), str(e)
        return 0, 1
    for problem in source.stats.problems:
        assert problem.offset >= 0 and problem.message
    return n, source.stats.bad


@pytest.mark.parametrize("rel", FILES)
def test_every_truncated_prefix(rel: str) -> None:
    data = corpus_file(rel).read_bytes()
    full_events, full_bad = decode_all(data, rel)
    assert full_events > 0 and full_bad == 0
    start = time.monotonic()
    silent_cuts = 0
    for cut in range(len(data)):
        with deadline(60):  # a hang guard for each prefix, not a time limit on the whole loop (load varies)
            events, bad = decode_all(data[:cut], rel)
        assert events <= full_events, "a prefix yielded more events than the whole file"
        if bad == 0:
            silent_cuts += 1
    # A cut that lands exactly between two records may look like a shorter, valid file; a cut anywhere else must
    # be reported. So the silent cuts are at most one per record boundary.
    assert silent_cuts <= full_events + 1, f"{silent_cuts} truncations went unreported"
    elapsed = time.monotonic() - start
    print(f"{rel}: {len(data)} prefixes in {elapsed:.1f}s, {silent_cuts} at record boundaries")


@pytest.mark.parametrize("rel", FILES)
def test_random_byte_flips(rel: str) -> None:
    data = corpus_file(rel).read_bytes()
    rng = random.Random(SEED)
    for _ in range(FLIPS):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(len(mutated))
            mutated[pos] = rng.randrange(256)
        with deadline(PER_RUN_SECONDS):
            decode_all(bytes(mutated), rel)
