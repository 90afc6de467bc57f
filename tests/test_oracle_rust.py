"""`dyntel decode` beside the decoding oracle: LinuxTracepoints' own Rust crates (tracepoint_perf's
PerfDataFileReader and tracepoint_decode's JSON formatting, tests/peers/tracepoint-rs) on every perf.data the tests
have: the corpus, the host recordings of tests/data (file and pipe mode), the EventHeader writer's recordings from
the user_events VM (tests/data/eh-*.perf.data, every field encoding and format, tags, file and pipe mode) and the
demo recording. Both sides print file order; fields, tags, values and meta must be equal, except the differences
the crates themselves have from perf-decode, each named in tests/oracle_rust.py and counted here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from oracle_rust import DIFFERENCES, comparable_pair, parse_line
from peers import rust_peer
from recordings import DATA, committed_recordings, is_pipe_mode, resolve

# The Rust reader (0.5.0) does not decompress PERF_RECORD_COMPRESSED: it reads no sample from a -z recording and
# says nothing (dyntel reads them: tests/test_perf_zstd.py compares those with perf script instead).
NOT_FOR_THE_ORACLE = {"zstd.perf.data", "zstd-pipe.perf.data"}

CASES = ["corpus:linuxtracepoints/perf.data"] + [
    p.name for p in committed_recordings() if p.name not in NOT_FOR_THE_ORACLE]


def oracle() -> Path:
    return rust_peer("tracepoint-rs", "tracepoint-json")


def run_oracle(path: Path, *, stdin: bool = False) -> list[Any]:
    args = [str(oracle()), "--order", "file", "/proc/self/fd/0" if stdin else str(path)]
    with path.open("rb") as f:
        proc = subprocess.run(args, stdin=f if stdin else subprocess.DEVNULL, capture_output=True, check=False,
                              timeout=600)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return [parse_line(line) for line in proc.stdout.splitlines()]


def run_dyntel(path: Path, *, stdin: bool = False, native: bool = True) -> list[Any]:
    args = [sys.executable, "-m", "dyntel.cli", "decode", "--format", "jsonl", "--order", "file", "--strict",
            *([] if native else ["--no-native"]), "-" if stdin else str(path)]
    with path.open("rb") as f:
        proc = subprocess.run(args, stdin=f if stdin else subprocess.DEVNULL, capture_output=True, check=False,
                              timeout=600)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return [parse_line(line) for line in proc.stdout.splitlines()]


def compare(ours: list[Any], theirs: list[Any]) -> tuple[Counter[str], Counter[str]]:
    assert len(ours) == len(theirs), f"dyntel {len(ours)} events, the Rust reader {len(theirs)}"
    mine: Counter[str] = Counter()
    its: Counter[str] = Counter()
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        ca, cb = comparable_pair(a, b, mine, its)
        assert ca == cb, f"event {i} differs:\n dyntel: {a}\n   Rust: {b}"
    assert set(mine) | set(its) <= set(DIFFERENCES)
    return mine, its


@pytest.mark.parametrize("rid", CASES)
def test_dyntel_equals_the_rust_reader(rid: str) -> None:
    path = resolve(rid)
    theirs = run_oracle(path)
    assert theirs, "the oracle read no sample"
    mine, its = compare(run_dyntel(path), theirs)
    print(f"{rid}: {len(theirs)} events equal; forgiven: dyntel {dict(mine)}, Rust {dict(its)}")


# Pipe mode: the recordings perf record -o - wrote (the Rust reader seeks in a file-mode one, so it takes those
# only as files).
PIPE_CASES = [p.name for p in committed_recordings() if p.name not in NOT_FOR_THE_ORACLE and is_pipe_mode(p)]


@pytest.mark.parametrize("rid", PIPE_CASES)
def test_dyntel_equals_the_rust_reader_from_a_pipe(rid: str) -> None:
    """Both read the recording from standard input, as perf record -o - wrote it."""
    path = resolve(rid)
    compare(run_dyntel(path, stdin=True), run_oracle(path, stdin=True))


def test_the_corpus_tags_as_the_rust_reader_prints_them() -> None:
    path = resolve("corpus:linuxtracepoints/perf.data")
    theirs = [e for e in run_oracle(path) if dict(e)["n"] == "TestProviderC:CScalars3"]
    ours = [e for e in run_dyntel(path) if dict(e)["n"] == "TestProviderC:CScalars3"]
    assert ours[0][1][0] == theirs[0][1][0] == "Struct20;tag=0xBEEF"
    assert [k for k, _ in ours[0][1][1]] == ["hi;tag=0x12", "ch10;tag=0x10"]


def test_the_data_loc_strings_the_rust_reader_empties_are_the_ones_perf_script_shows() -> None:
    """Where dyntel and the Rust reader differ on a tracefs string (DIFFERENCES["dataloc-string"]), perf itself
    sides with dyntel: sched_process_fork's comm fields as `perf script` prints them."""
    import re
    import shutil

    if shutil.which("perf") is None:
        pytest.fail("perf is not installed") if os.environ.get("CI") == "true" else pytest.skip("needs perf")
    path = DATA / "escape.perf.data"
    # perf prints the comm bytes as they are; dyntel reads tracefs char arrays as Latin-1, as perf-decode does
    script = subprocess.run(["perf", "script", "-i", str(path)], capture_output=True, check=True).stdout
    theirs = re.findall(r"sched_process_fork: comm=(.*?) pid=\d+ child_comm=(.*?) child_pid=", script.decode("latin-1"),
                        re.DOTALL)
    ours = [(dict(e)["parent_comm"], dict(e)["child_comm"]) for e in run_dyntel(path)
            if dict(e)["n"] == "sched:sched_process_fork"]
    assert ours == theirs and len(ours) > 10
    assert all(dict(e)["parent_comm"] == "" for e in run_oracle(path) if dict(e)["n"] == "sched:sched_process_fork")


def test_the_rust_reader_reads_nothing_from_a_zstd_recording() -> None:
    """Why the -z recordings are compared with perf script and not with this oracle (see NOT_FOR_THE_ORACLE)."""
    assert run_oracle(DATA / "zstd.perf.data") == []
    assert len(run_dyntel(DATA / "zstd.perf.data")) > 200
