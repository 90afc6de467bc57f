"""ETL files (given to the ETL reader whatever the sniff says): buffers, records, TraceLogging and classic events;
events, or problems counted with a byte offset inside the file, or a DecodeError naming one; nothing else.

    python -m fuzz.etl [libFuzzer flags] [corpus dirs]     fuzz
    python -m fuzz.etl --run FILE...                          run inputs once
"""

from __future__ import annotations

from fuzz.common import entry, read_recording

MODULES = ["dyntel.sources.etw.etl", "dyntel.event_json"]


def run(data: bytes) -> None:
    read_recording("dyntel.sources.etw.etl", data)


def TestOneInput(data: bytes) -> None:
    run(data)


if __name__ == "__main__":
    entry(run, MODULES)
