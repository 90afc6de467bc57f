"""`dyntel decode` is a drop-in for the reference perf-decode: same events, same fields, same order.

Runs the real command line on the reference corpus and compares with what perf-decode printed for the same files,
parsed as JSON with key order and duplicate keys kept.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from support import corpus_file, load_reference_json, tagged_keys, untagged

CASES = [
    ("linuxtracepoints/perf.data", "linuxtracepoints/perf.data.linux.json"),
    ("linuxtracepoints/EventHeaderInterceptorLE64.dat", "linuxtracepoints/EventHeaderInterceptorLE64.dat.linux.json"),
]


def run_decode(*args: str) -> bytes:
    proc = subprocess.run([sys.executable, "-m", "dyntel.cli", "decode", *args], capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


def parse(data: bytes) -> Any:
    return json.loads(data.decode("utf-8", "surrogateescape"), object_pairs_hook=list)


def first_difference(ours: list[Any], ref: list[Any]) -> str:
    for i, (a, b) in enumerate(zip(ours, ref, strict=False)):
        if a != b:
            return f"event {i}:\n ours: {a}\n  ref: {b}"
    return f"event counts differ: ours {len(ours)}, reference {len(ref)}"


@pytest.mark.parametrize(("rec", "ref"), CASES)
def test_json_equals_reference(rec: str, ref: str) -> None:
    path = corpus_file(rec)
    [(_, ref_events)] = load_reference_json(corpus_file(ref))
    [(label, events)] = parse(run_decode(str(path), "--format", "json"))
    assert label == str(path)
    if rec.endswith("perf.data"):  # made by a perf-decode that did not print field tags: see support.untagged
        events = [untagged(e) for e in events]
    assert events == ref_events, first_difference(events, ref_events)


@pytest.mark.parametrize(("rec", "ref"), CASES)
def test_jsonl_equals_reference(rec: str, ref: str) -> None:
    [(_, ref_events)] = load_reference_json(corpus_file(ref))
    lines = run_decode(str(corpus_file(rec)), "--format", "jsonl").splitlines()
    events = [parse(line) for line in lines]
    if rec.endswith("perf.data"):
        events = [untagged(e) for e in events]
    assert events == ref_events, first_difference(events, ref_events)


def test_perf_data_shows_the_field_tags_the_reference_shows_for_the_same_events() -> None:
    """The corpus's perf.data and .dat hold the same test events; the .dat output shows the field tags (as
    perf-decode 1.4 does for perf.data). dyntel's perf.data output shows the same tagged keys on the same events."""
    [(_, dat_ref)] = load_reference_json(corpus_file(CASES[1][1]))
    ours = [parse(line) for line in run_decode(str(corpus_file(CASES[0][0])), "--format", "jsonl").splitlines()]

    def tags(events: Any) -> list[tuple[str, list[str]]]:
        return [(dict(e)["n"], tagged_keys(e)) for e in events if tagged_keys(e)]

    assert tags(ours) == tags(dat_ref)
    assert ("TestProviderC:CScalars3", ["Struct20;tag=0xBEEF", "Struct20;tag=0xBEEF/hi;tag=0x12",
                                        "Struct20;tag=0xBEEF/ch10;tag=0x10"]) in tags(ours)


def test_unknown_file_is_a_clear_error(tmp_path: Any) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello\n")
    proc = subprocess.run([sys.executable, "-m", "dyntel.cli", "decode", str(bogus)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "not a recording dyntel reads" in proc.stderr and str(bogus) in proc.stderr
