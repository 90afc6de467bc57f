"""`dyntel validate`: the exit status, the summary, errors on stderr, and the JSON form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dyntel.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_valid_files_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").write_text("rules:\n  - {name: a}\n  - {name: b, enabled: false}\n")
    (tmp_path / "b.yaml").write_text("macros: {m: pid == 1}\nrules:\n  - {name: c, condition: m}\n")
    assert main(["validate", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]) == 0
    out = capsys.readouterr()
    assert out.out == "ok: 2 rules in 2 files (1 disabled: b)\n"
    # Neither loaded rule names a provider or event: each is evaluated for every event, which is worth a warning.
    assert [line.split(": warning: ")[0] for line in out.err.splitlines()] == [
        f"{tmp_path / 'a.yaml'}:2:5", f"{tmp_path / 'b.yaml'}:3:5"]


def test_errors_on_stderr_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: a\n    cooldown: soon\n    condition: zzz\n")
    assert main(["validate", str(bad)]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.splitlines() == [
        f"{bad}:3:15: cooldown: bad duration 'soon': expected a number and a unit (ms, s, m, h), like 500ms, 30s, "
        "5m or 1h",
        f"{bad}:4:16: unknown name 'zzz'; expected an event property (provider, event, level, keyword, opcode, id, "
        "version, tag, activity, related_activity, pid, tid, cpu, time, source), fields.NAME, process.NAME, a list "
        "or a macro",
        "2 errors",
    ]


def test_json_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {name: a, window: {count: 0, within: 1s}}\n")
    assert main(["validate", "--format", "json", str(bad)]) == 1
    assert json.loads(capsys.readouterr().out) == [
        {"file": str(bad), "line": 2, "column": 31, "message": "window.count: must be at least 1, got 0"}]
    good = tmp_path / "good.yaml"
    good.write_text("rules: []\n")
    assert main(["validate", "--format", "json", str(good)]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_the_bundled_rule_pack_validates(capsys: pytest.CaptureFixture[str]) -> None:
    pack = ROOT / "rules"
    assert main(["validate", str(pack)]) == 0, capsys.readouterr().err


WARNED = """version: 1
rules:
  - name: named
    condition: provider == "syscalls" and event == "sys_enter_openat"
  - name: everything
    condition: fields.sig == 9
"""
WARNING = ("{f}:5:5: warning: rule 'everything' has no match and a condition that requires no provider or event "
           "name: it is evaluated for every event; add match: {{provider: ..., event: ...}} if it is meant for some "
           "events only")


def test_warnings_on_stderr_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text(WARNED)
    assert main(["validate", str(f)]) == 0
    out = capsys.readouterr()
    assert out.out == "ok: 2 rules in 1 file\n"
    assert out.err.splitlines() == [WARNING.format(f=f)]
    # The JSON on stdout stays the list of errors; the warning is on stderr.
    assert main(["validate", "--format", "json", str(f)]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == []
    assert out.err.splitlines() == [WARNING.format(f=f)]


def test_replay_and_test_show_the_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text(WARNED)
    events = tmp_path / "events.jsonl"
    events.write_text('{"n": "signal:signal_generate", "sig": 9, "meta": {"time": 1000}}\n')
    assert main(["replay", "-q", "--rules", str(f), str(events)]) == 0
    out = capsys.readouterr()
    assert "everything" in out.out
    assert out.err.splitlines() == [WARNING.format(f=f)]
    (tmp_path / "case.yaml").write_text("rules: [rules.yaml]\nevents: events.jsonl\n"
                                        "expect:\n  - {rule: everything, event: 0}\n")
    assert main(["test", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("PASS")
    assert out.err.splitlines() == [WARNING.format(f=f)]
