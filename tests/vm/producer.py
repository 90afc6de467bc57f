"""An EventHeader user_events producer for the VM tests, run as its own process (`python producer.py NAME`).

It registers NAME through dyntel.sources.perf.user_events and answers commands on stdin, one a line, each with one line
on stdout, so that a test can ask what the enable bit is at any moment and have events written when it wants:

    state          -> "enabled 0|1"
    write N [BAD]  -> "wrote W" (W of N were written; 0 while nobody listens)
    bad KIND       -> "wrote W" after one malformed event of KIND (see `malformed`)
    ping           -> "wrote W" after one `Ping` event (no fields), for a listener to show it is recording
    quit           -> "bye", after unregistering

The events are built by hand from eventheader.h: header, one metadata extension, payload.
"""

from __future__ import annotations

import struct
import sys

from dyntel.decoders.eventheader_name import parse_tracepoint_name
from dyntel.sources.perf.user_events import UserEventsData

FLAGS = 0x01 | 0x02 | 0x04  # pointer64, little-endian, extension follows
EXTENSION_METADATA = 1
ENC_VALUE32 = 4
ENC_VALUE64 = 5
ENC_ZSTRING_CHAR8 = 7
ENC_HAS_FORMAT = 0x80
FMT_SIGNED_INT = 2

EVENT_NAME = "Tick"
EVENT_ID = 7
EVENT_VERSION = 1
EVENT_TAG = 0x2A
OPCODE_INFO = 0

# "Tick" with fields seq (u32), value (i64, shown signed), text (NUL-terminated UTF-8).
METADATA = (
    EVENT_NAME.encode() + b"\0"
    + b"seq\0" + bytes([ENC_VALUE32])
    + b"value\0" + bytes([ENC_VALUE64 | ENC_HAS_FORMAT, FMT_SIGNED_INT])
    + b"text\0" + bytes([ENC_ZSTRING_CHAR8])
)


def header(level: int, flags: int = FLAGS) -> bytes:
    return struct.pack("<BBHHBB", flags, EVENT_VERSION, EVENT_ID, EVENT_TAG, OPCODE_INFO, level)


def metadata_extension(meta: bytes = METADATA) -> bytes:
    return struct.pack("<HH", len(meta), EXTENSION_METADATA) + meta


def expected_fields(seq: int) -> dict[str, object]:
    return {"seq": seq, "value": -3 * seq, "text": f"tick {seq} \u00e9"}


def payload(seq: int) -> bytes:
    f = expected_fields(seq)
    return struct.pack("<Iq", seq, f["value"]) + str(f["text"]).encode() + b"\0"


def tick(level: int, seq: int) -> bytes:
    return header(level) + metadata_extension() + payload(seq)


def ping(level: int) -> bytes:
    return header(level) + metadata_extension(b"Ping\0")


# Malformed events, each at least the 8 bytes the kernel insists on for an EventHeader tracepoint.
MALFORMED_KINDS = ("short-payload", "extension-overrun", "no-metadata")


def malformed(kind: str, level: int) -> bytes:
    if kind == "short-payload":  # the metadata promises 12 bytes of numbers and a string; 2 bytes follow
        return header(level) + metadata_extension() + b"\x01\x02"
    if kind == "extension-overrun":  # the extension block says it is longer than the event
        return header(level) + struct.pack("<HH", 500, EXTENSION_METADATA) + METADATA
    if kind == "no-metadata":  # no extension at all, so nothing says how to read the payload
        return header(level, flags=0x03) + payload(0)
    raise ValueError(kind)


def main() -> int:
    name = sys.argv[1]
    level = parse_tracepoint_name(name).level
    data = UserEventsData()
    tp = data.register_eventheader(name)
    print(f"ready {tp.write_index} {int(tp.is_enabled)}", flush=True)
    seq = 0
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "state":
            print(f"enabled {int(tp.is_enabled)}", flush=True)
        elif words[0] == "write":
            written = 0
            for _ in range(int(words[1])):
                if tp.write(tick(level, seq)):
                    written += 1
                seq += 1
            print(f"wrote {written}", flush=True)
        elif words[0] == "ping":
            print(f"wrote {int(tp.write(ping(level)))}", flush=True)
        elif words[0] == "bad":
            print(f"wrote {int(tp.write(malformed(words[1], level)))}", flush=True)
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
