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
    assert out.err == ""


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
