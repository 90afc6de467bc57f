"""One output whatever the path: `dyntel decode` with the native fast path (dyntel/_speedups.c, taken for tracefs
samples of file-mode recordings) and with `--no-native` (the Python decoder) must write the same bytes, for every
recording the tests have: the corpus, tests/data (control characters in strings, zstd, pipe mode, the EventHeader
writer's VM recordings) and the demo. Also read from standard input (a real pipe), where pipe-mode recordings go
through the streaming reader."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from recordings import DATA, recording_ids, resolve
from support import native_module

DYNTEL = [sys.executable, "-m", "dyntel.cli", "decode"]


def decode(*args: str, stdin: Path | None = None) -> bytes:
    with (stdin.open("rb") if stdin else open("/dev/null", "rb")) as f:
        proc = subprocess.run([*DYNTEL, *args], stdin=f, capture_output=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


@pytest.mark.parametrize("rid", recording_ids())
@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_native_and_python_paths_write_the_same_bytes(rid: str, fmt: str) -> None:
    path = resolve(rid)
    native = decode("--format", fmt, str(path))
    python = decode("--format", fmt, "--no-native", str(path))
    assert native == python, _first_difference(native, python)
    assert native.count(b'"n":') > 0


@pytest.mark.parametrize("rid", [r for r in recording_ids() if not r.endswith(".dat")])
def test_standard_input_gives_the_same_events(rid: str) -> None:
    path = resolve(rid)
    whole = decode("--format", "jsonl", str(path))
    piped = decode("--format", "jsonl", "-", stdin=path)
    assert whole == piped, _first_difference(whole, piped)


def test_the_native_path_is_taken_where_it_applies() -> None:
    """Otherwise the comparison above would compare the Python path with itself."""
    native_module("dyntel._speedups")
    from dyntel.sources.perf import data as perf_data
    from dyntel.sources.perf.fast import write_samples

    for name in ("escape.perf.data", "zstd.perf.data"):
        path = DATA / name
        with path.open("rb") as f, open("/dev/null", "wb") as sink:
            src = perf_data.open_source(str(path), f, "file")
            events = src.events()
            written = write_samples(src, sink.fileno())
            events.close()
        assert written is not None and written > 100, name


def test_control_characters_are_written_as_perf_decode_writes_them() -> None:
    """\\t \\n \\r \\b \\f as two-character escapes, other control characters as \\u00XX, DEL as it is."""
    out = decode("--format", "jsonl", str(DATA / "escape.perf.data"))
    assert b'"esc\\t\\n\\r\\b\\f"' in out
    assert b'"ctl\\u0001\\u001f\\"\\\\\x7f"' in out
    assert b"\\u0009" not in out and b"\\u000a" not in out


def _first_difference(a: bytes, b: bytes) -> str:
    for i, (x, y) in enumerate(zip(a.splitlines(), b.splitlines(), strict=False)):
        if x != y:
            return f"line {i + 1}:\n native: {x[:400]!r}\n python: {y[:400]!r}"
    return f"lengths differ: {len(a)} and {len(b)} bytes"
