"""EventHeader interceptor `.dat` files (given to its reader whatever the sniff says): events, or malformed records
counted with a byte offset inside the file, or a DecodeError naming one; nothing else.

    python -m fuzz.interceptor_dat [libFuzzer flags] [corpus dirs]     fuzz
    python -m fuzz.interceptor_dat --run FILE...                          run inputs once
"""

from __future__ import annotations

from fuzz.common import entry, read_recording

MODULES = ["dyntel.sources.files.interceptor_dat", "dyntel.event_json"]


def run(data: bytes) -> None:
    read_recording("dyntel.sources.files.interceptor_dat", data)


def TestOneInput(data: bytes) -> None:
    run(data)


if __name__ == "__main__":
    entry(run, MODULES)
