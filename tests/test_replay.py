"""`dyntel replay`: rules over recordings and JSON lines, end to end, and the pieces replay adds (time order,
the pre-decode filter, the summary, the progress bar)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, corpus_file

from dyntel.event import Event
from dyntel.progress import Progress
from dyntel.replay import time_ordered

DEMO = ROOT / "dyntel" / "data" / "demo.perf.data"

RULES = """\
version: 1
rules:
  - name: cat-exec
    description: three execs of one program within 10s
    match: {provider: sched, event: sched_process_exec}
    condition: endswith(fields.filename, "/cat")
    window: {count: 3, within: 10s, group_by: [fields.filename]}
    actions:
      - log: {message: "cat ran {fields.filename} in {pid}"}
  - name: kill
    match: {provider: signal, event: signal_generate}
    condition: fields.sig == 9
    actions:
      - log: {message: "kill {fields.sig}"}
      - exec: {argv: [/bin/true]}
  - name: never
    match: {provider: MyService, event: RequestDone}
    condition: fields.status >= 500
    actions:
      - log: {message: "5xx"}
"""


def dyntel(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "dyntel.cli", *argv], capture_output=True, text=True, cwd=ROOT,
                          encoding="utf-8", errors="surrogateescape")
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture()
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return path


def decode_lines(path: Path, order: str = "round") -> list[str]:
    return dyntel("decode", "--format", "jsonl", "--order", order, str(path)).stdout.splitlines()


def test_json_firings_have_the_contract_shape(rules: Path) -> None:
    proc = dyntel("replay", "--rules", str(rules), str(DEMO), "--dry-run", "--format", "json")
    firings = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(firings) == 27
    decoded = set(decode_lines(DEMO))
    for f in firings:
        assert list(f) == ["rule", "time", "group", "event", "actions"]
        assert isinstance(f["time"], int)
        # The EVENT is the line `dyntel decode` prints for that event.
        assert json.dumps(f["event"], separators=(",", ":"), ensure_ascii=False) in decoded
        assert all(a["status"] == "dry-run" for a in f["actions"])
    cat = [f for f in firings if f["rule"] == "cat-exec"]
    kill = [f for f in firings if f["rule"] == "kill"]
    assert len(cat) == 26 and len(kill) == 1
    assert cat[0]["group"] == {"fields.filename": "/usr/bin/cat"}
    assert cat[0]["actions"] == [{"type": "log", "status": "dry-run",
                                  "options": {"message": f"cat ran /usr/bin/cat in {cat[0]['event']['meta']['pid']}"}}]
    assert [a["type"] for a in kill[0]["actions"]] == ["log", "exec"]
    assert kill[0]["group"] == {}
    times = [f["time"] for f in firings]
    assert times == sorted(times)
    assert all(f["time"] == _iso_ns(f["event"]["meta"]["time"]) for f in firings)


def _iso_ns(text: str) -> int:
    import calendar

    parts = (text[0:4], text[5:7], text[8:10], text[11:13], text[14:16], text[17:19])
    sec = calendar.timegm((*(int(x) for x in parts), 0, 0, 0))
    return sec * 1_000_000_000 + int(text[20:29])


def test_actions_run_without_dry_run(rules: Path) -> None:
    proc = dyntel("replay", "--rules", str(rules), str(DEMO), "--format", "json")
    firings = [json.loads(line) for line in proc.stdout.splitlines()]
    kill = next(f for f in firings if f["rule"] == "kill")
    assert kill["actions"][0] == {"type": "log", "status": "ok", "message": "kill 9"} or \
        kill["actions"][0]["status"] == "ok"
    # exec is off unless allowed: the outcome says so, and says how to allow it.
    assert kill["actions"][1]["type"] == "exec" and kill["actions"][1]["status"] == "skipped"
    assert "--allow-exec" in json.dumps(kill["actions"][1])
    # The log action writes to stderr, never into the firings on stdout.
    assert "kill 9" in proc.stderr


def test_exec_runs_when_allowed(tmp_path: Path) -> None:
    """With --allow-exec the command really runs, once per firing, with the firing in its environment."""
    out = tmp_path / "ran.txt"
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.replace("exec: {argv: [/bin/true]}",
                                   f"exec: {{argv: [/bin/sh, -c, 'echo \"$DYNTEL_RULE $DYNTEL_PID\" >> {out}']}}"))
    proc = dyntel("replay", "--rules", str(rules), str(DEMO), "--format", "json", "--allow-exec")
    kills = [f for f in map(json.loads, proc.stdout.splitlines()) if f["rule"] == "kill"]
    assert kills and all(f["actions"][1]["status"] == "ok" for f in kills)
    assert out.read_text().splitlines() == [f"kill {f['event']['meta']['pid']}" for f in kills]


def test_text_output_and_summary(rules: Path) -> None:
    proc = dyntel("replay", "--rules", str(rules), str(DEMO), "--dry-run")
    lines = proc.stdout.splitlines()
    assert len(lines) == 27
    assert lines[0].startswith("2026-11-24T22:12:31.")
    assert ' cat-exec {fields.filename: "/usr/bin/cat"} sched:sched_process_exec pid ' in lines[0]
    assert lines[0].endswith(": log dry-run")
    assert lines[-1].endswith("kill signal:signal_generate pid 4006: log dry-run, exec dry-run")
    err = proc.stderr
    assert "5657 events: 5573 filtered before decoding" in err
    assert "84 to the rules" in err and "27 firing(s)" in err
    assert "cat-exec" in err and "1 rule(s) saw no events" in err
    # No progress bar when stderr is not a terminal.
    assert "\r" not in err


def test_the_last_rules_name_can_be_the_events_file(rules: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("version: 1\nrules:\n  - name: other\n    match: {provider: sched}\n    condition: pid == 1\n"
                     "    actions: [{log: {}}]\n")
    proc = dyntel("replay", "--rules", str(rules), str(other), str(DEMO), "--dry-run", "-q")
    assert len(proc.stdout.splitlines()) == 27
    assert proc.stderr == ""


def test_rule_errors_are_file_line_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - name: x\n    match: {provider: a}\n    condition: fields.a ==\n"
                   "    actions: [{log: {}}]\n")
    proc = dyntel("replay", "--rules", str(bad), str(DEMO), check=False)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"{bad}:5:")


def test_unreadable_events_exit_1(rules: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01\x02 not a recording")
    proc = dyntel("replay", "--rules", str(rules), str(junk), check=False)
    assert proc.returncode == 1 and "not a recording" in proc.stderr


def test_jsonl_and_recording_give_the_same_firings(rules: Path, tmp_path: Path) -> None:
    events = tmp_path / "demo.jsonl"
    events.write_text("\n".join(decode_lines(DEMO, "file")) + "\n")
    a = dyntel("replay", "--rules", str(rules), str(DEMO), "--dry-run", "--format", "json").stdout
    b = dyntel("replay", "--rules", str(rules), str(events), "--dry-run", "--format", "json").stdout
    assert a == b and a


def test_jsonl_out_of_order_is_replayed_in_time_order(tmp_path: Path) -> None:
    # A sequence that only completes in time order: open, then close, by pid. Written close-first in the file.
    rules = tmp_path / "seq.yaml"
    rules.write_text("version: 1\nrules:\n  - name: open-close\n    match: {provider: app}\n"
                     "    condition: pid == 7\n"
                     "    sequence: {steps: ['event == \"Open\"', 'event == \"Close\"'], within: 1s, by: pid}\n"
                     "    actions: [{log: {}}]\n")
    events = tmp_path / "ev.jsonl"
    events.write_text(
        '{"n":"app:Close","meta":{"time":"2024-01-01T00:00:00.000000002Z","pid":7}}\n'
        '{"n":"app:Open","meta":{"time":"2024-01-01T00:00:00.000000001Z","pid":7}}\n')
    fired = dyntel("replay", "--rules", str(rules), str(events), "--dry-run", "--format", "json").stdout
    assert [json.loads(x)["event"]["n"] for x in fired.splitlines()] == ["app:Close"]
    # With no reordering the close comes first and nothing fires.
    unordered = dyntel("replay", "--rules", str(rules), str(events), "--dry-run", "--format", "json", "--hold", "0")
    assert unordered.stdout == ""


def test_explain(rules: Path) -> None:
    proc = dyntel("replay", "--rules", str(rules), str(DEMO), "--dry-run", "--explain", "cat-exec")
    lines = proc.stdout.splitlines()
    explained = [x for x in lines if " cat-exec sched:sched_process_exec " in x]
    assert len(explained) == 83  # every event that met the rule's match, once
    assert sum("condition false: `endswith(fields.filename, \"/cat\")`" in x for x in explained) == 3
    assert sum(": window: count 1 of 3" in x for x in explained) == 27
    assert sum(": fired group" in x for x in explained) == 26
    # With --format json stdout keeps only the firings; the explanation goes to stderr.
    js = dyntel("replay", "--rules", str(rules), str(DEMO), "--dry-run", "--explain", "cat-exec", "--format", "json")
    assert all(json.loads(x)["rule"] for x in js.stdout.splitlines())
    assert "condition false" in js.stderr
    missing = dyntel("replay", "--rules", str(rules), str(DEMO), "--explain", "nope", check=False)
    assert missing.returncode == 1 and "nope" in missing.stderr


def test_filter_changes_nothing_but_the_work(rules: Path) -> None:
    with_filter = dyntel("replay", "--rules", str(rules), str(DEMO), "--dry-run", "--format", "json")
    without = dyntel("replay", "--rules", str(rules), str(DEMO), "--dry-run", "--format", "json", "--no-filter")
    assert with_filter.stdout == without.stdout
    assert "5573 filtered" in with_filter.stderr
    assert " 0 filtered" in without.stderr and "5657 to the rules" in without.stderr


def test_corpus_eventheader_replay(tmp_path: Path) -> None:
    path = corpus_file("linuxtracepoints/perf.data")
    rules = tmp_path / "eh.yaml"
    rules.write_text("version: 1\nrules:\n  - name: c-errors\n    match: {provider: TestProviderC}\n"
                     "    condition: level <= 4\n    actions: [{log: {}}]\n")
    proc = dyntel("replay", "--rules", str(rules), str(path), "--dry-run", "--format", "json")
    firings = [json.loads(x) for x in proc.stdout.splitlines()]
    assert firings and all(f["event"]["n"].startswith("TestProviderC:") for f in firings)
    decoded = [json.loads(x) for x in decode_lines(path)]
    expect = [e for e in decoded if e["n"].startswith("TestProviderC:") and e["meta"].get("level", 0) <= 4]
    assert [f["event"] for f in firings] == expect


# -- pieces ------------------------------------------------------------------------------------------------------

def _ev(t: int | None, name: str = "e") -> Event:
    return Event("p", name, time=t)


def test_time_ordered_sorts_within_the_hold() -> None:
    times = [1, 3, 2, 5, 4, 6, 9, 7, 8, 10]
    late = [0]
    out = [e.time for e in time_ordered([_ev(t) for t in times], 2, late)]
    assert out == sorted(times) and late == [0]


def test_time_ordered_counts_what_comes_too_late() -> None:
    times = [5, 6, 7, 8, 9, 10, 1]
    late = [0]
    out = [e.time for e in time_ordered([_ev(t) for t in times], 2, late)]
    assert sorted(out) == sorted(times) and late == [1]


def test_time_ordered_events_without_time_keep_their_place() -> None:
    evs = [_ev(2), _ev(1), _ev(None, "x"), _ev(4), _ev(3)]
    late = [0]
    out = [(e.name, e.time) for e in time_ordered(evs, 8, late)]
    assert out == [("e", 1), ("e", 2), ("x", None), ("e", 3), ("e", 4)]
    assert [e.time for e in time_ordered(evs, 0, late)] == [2, 1, None, 4, 3]


def test_progress_bar() -> None:
    buf = io.StringIO()
    p = Progress(buf, 1000, enabled=True, label="f ")
    line = p.line(250, 5000, 2.0)
    assert line.startswith("f [") and " 25.0% " in line and "2.5k events/s" in line
    p._next = 0
    p.update(500, 10)
    p.close()
    assert buf.getvalue().startswith("\r\x1b[K") and buf.getvalue().endswith("\r\x1b[K")
    off = io.StringIO()
    q = Progress.for_stream(off, 1000)
    q.update(1, 1)
    q.close()
    assert off.getvalue() == ""
