"""JSON lines recordings (given to their reader whatever the sniff says): events, or bad lines counted with their
place, or a DecodeError; nothing else.

    python -m fuzz.jsonl [libFuzzer flags] [corpus dirs]     fuzz
    python -m fuzz.jsonl --run FILE...                          run inputs once
"""

from __future__ import annotations

from fuzz.common import entry, read_recording

MODULES = ["dyntel.sources.files.jsonl", "dyntel.event_json"]


def run(data: bytes) -> None:
    read_recording("dyntel.sources.files.jsonl", data)


def TestOneInput(data: bytes) -> None:
    run(data)


if __name__ == "__main__":
    entry(run, MODULES)
