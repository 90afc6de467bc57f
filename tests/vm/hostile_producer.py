"""A hostile user_events producer for the VM tests (`python hostile_producer.py NAME`): it registers NAME as an
EventHeader tracepoint and writes malformed EventHeader events as fast as it can, each malformed by construction in
one of the ways `KINDS` lists, chosen and shaped by a seeded random generator (truncated payloads, block lengths
that lie, unknown flags, a level that contradicts the name, missing or broken metadata, garbage).

Commands on stdin, one a line, each answered with one line on stdout:

    state             -> "enabled 0|1"
    ping              -> "wrote W" after one well-formed `Ping` event (for a listener to show it is recording)
    fuzz N SEED       -> "wrote W seconds S KIND=n,KIND=n,..." after N malformed events (W written: 0 while nobody
                         listens), with how many of each kind were written
    quit              -> "bye", after unregistering

Every event is at least the 8 bytes the kernel insists on for an EventHeader tracepoint, so the kernel takes them
all and the listener has to cope.
"""

from __future__ import annotations

import random
import struct
import sys
import time
from collections.abc import Callable

from producer import METADATA, header, metadata_extension, payload, ping

from dyntel.decoders.eventheader_name import parse_tracepoint_name
from dyntel.sources.perf.user_events import UserEventsData

EXTENSION_METADATA = 1


# perf pads a sample's raw data with up to 7 zero bytes to 8-byte alignment, and nothing in the sample says where
# the event ended: an event short by fewer bytes than that padding reads as complete, with zeros, to dyntel and to
# the reference decoder alike. So every shortfall below is of 8 bytes or more.


def truncated(rng: random.Random, level: int) -> bytes:
    """A Tick cut inside its fixed-size fields: the metadata promises 12 bytes of numbers; at most 4 follow."""
    return header(level) + metadata_extension() + payload(rng.randrange(1 << 30))[: rng.randrange(5)]


def extension_overrun(rng: random.Random, level: int) -> bytes:
    """The metadata block says it is 8 or more bytes longer than the event."""
    meta = METADATA[: rng.randrange(len(METADATA) + 1)]
    return header(level) + struct.pack("<HH", len(meta) + 8 + rng.randrange(2000), EXTENSION_METADATA) + meta


def bad_flags(rng: random.Random, level: int) -> bytes:
    """Flags with a bit eventheader.h does not define."""
    flags = 0x07 | rng.choice([0x08, 0x10, 0x20, 0x40, 0x80]) | rng.randrange(256) & 0xF8
    return header(level, flags=flags) + metadata_extension() + payload(1)


def wrong_level(rng: random.Random, level: int) -> bytes:
    """A header level that is not the one in the tracepoint name."""
    other = rng.choice([lvl for lvl in range(256) if lvl != level])
    return header(other) + metadata_extension() + payload(2)


def no_metadata(rng: random.Random, level: int) -> bytes:
    """No extension at all: nothing says how to read the payload."""
    return header(level, flags=0x03) + rng.randbytes(rng.randrange(64))


def metadata_without_name(rng: random.Random, level: int) -> bytes:
    """A metadata block with no NUL, so no event name."""
    meta = bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 40)))
    return header(level) + struct.pack("<HH", len(meta), EXTENSION_METADATA) + meta + payload(3)


def garbage(rng: random.Random, level: int) -> bytes:
    """Random bytes whose first byte (the flags) has an undefined bit set."""
    body = rng.randbytes(rng.randrange(7, 200))
    return bytes([rng.randrange(0x08, 0x100)]) + body


# kind -> (generator, the reason dyntel counts it under)
KINDS: dict[str, tuple[Callable[[random.Random, int], bytes], str]] = {
    "truncated": (truncated, "payload"),
    "extension-overrun": (extension_overrun, "not EventHeader: extension"),
    "bad-flags": (bad_flags, "not EventHeader: flags"),
    "wrong-level": (wrong_level, "not EventHeader: level"),
    "no-metadata": (no_metadata, "not EventHeader: no metadata"),
    "metadata-without-name": (metadata_without_name, "not EventHeader: metadata"),
    "garbage": (garbage, "not EventHeader: flags"),
}


def generate(n: int, seed: int, level: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    names = list(KINDS)
    out = []
    for _ in range(n):
        kind = rng.choice(names)
        out.append((kind, KINDS[kind][0](rng, level)))
    return out


def main() -> int:
    name = sys.argv[1]
    level = parse_tracepoint_name(name).level
    data = UserEventsData()
    tp = data.register_eventheader(name)
    print(f"ready {tp.write_index} {int(tp.is_enabled)}", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "state":
            print(f"enabled {int(tp.is_enabled)}", flush=True)
        elif words[0] == "ping":
            print(f"wrote {int(tp.write(ping(level)))}", flush=True)
        elif words[0] == "fuzz":
            events = generate(int(words[1]), int(words[2]), level)  # made before the clock starts: write rate only
            counts = dict.fromkeys(KINDS, 0)
            write = tp.write
            start = time.monotonic()
            for kind, event in events:
                if write(event):
                    counts[kind] += 1
            seconds = time.monotonic() - start
            listed = ",".join(f"{k}={n}" for k, n in counts.items())
            print(f"wrote {sum(counts.values())} seconds {seconds:.3f} {listed}", flush=True)
        elif words[0] == "quit":
            data.close()
            print("bye", flush=True)
            return 0
        else:
            print(f"error unknown command {words[0]!r}", flush=True)
    data.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
