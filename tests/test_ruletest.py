"""`dyntel test`: case files, matching firings against expectations, the report, and the command's exit status."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dyntel.cli import main
from dyntel.ruletest import (
    ERROR,
    FAIL,
    PASS,
    CaseError,
    CaseResult,
    Expected,
    Fired,
    compare,
    discover,
    format_text,
    load_case,
    parse_duration,
    parse_time,
    run_paths,
)

ROOT = Path(__file__).resolve().parent.parent
PACK = ROOT / "rules"
T0 = 1_768_046_400 * 1_000_000_000  # 2026-01-10T12:00:00Z

RULES = """\
version: 1
rules:
  - name: five-errors
    description: five 5xx from one pid within 30s
    match: {provider: MyService, event: RequestDone}
    condition: fields.status >= 500
    window: {count: 5, within: 30s, group_by: [pid]}
    actions:
      - log: {message: "burst in {pid}"}
"""


def _event(sec: float, pid: int, status: int) -> str:
    ns = T0 + round(sec * 1e9)
    s, frac = divmod(ns, 1_000_000_000)
    import time

    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{frac:09d}Z"
    return json.dumps({"n": "MyService:RequestDone", "status": status, "path": "/x", "duration_ms": 1,
                       "meta": {"time": stamp, "cpu": 0, "pid": pid, "tid": pid, "level": 4}})


def _case(tmp_path: Path, expect: str, events: list[str] | None = None, extra: str = "") -> Path:
    d = tmp_path / "case1"
    d.mkdir(parents=True, exist_ok=True)
    (d / "rules.yaml").write_text(RULES)
    if events is None:
        events = [_event(i, 42, 503) for i in range(5)] + [_event(10, 43, 503)]
    (d / "events.jsonl").write_text("\n".join(events) + "\n")
    (d / "case.yaml").write_text(f"rules: [rules.yaml]\n{extra}expect:\n{expect}")
    return d / "case.yaml"


# -- pure parts: no engine needed ----------------------------------------------------------------------------------


def test_times_and_durations() -> None:
    assert parse_time("2026-01-10T12:00:00Z") == T0
    assert parse_time("2026-01-10T12:00:00.000000001Z") == T0 + 1
    assert parse_time("2026-01-10T13:00:00.5+01:00") == T0 + 500_000_000
    assert parse_time(T0) == T0
    import datetime

    assert parse_time(datetime.datetime(2026, 1, 10, 12, 0, 0, 250, tzinfo=datetime.UTC)) == T0 + 250_000
    assert parse_duration("30s") == 30 * 10**9
    assert parse_duration("500ms") == 500 * 10**6
    assert parse_duration("1.5m") == 90 * 10**9
    with pytest.raises(ValueError):
        parse_time("yesterday")
    with pytest.raises(ValueError):
        parse_duration("5 minutes")


def test_discover_finds_case_files_only(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "case.yaml").write_text("")
    (tmp_path / "a" / "rules.yaml").write_text("")
    (tmp_path / "b.case.yaml").write_text("")
    (tmp_path / "other.yaml").write_text("")
    assert [p.relative_to(tmp_path).as_posix() for p in discover([tmp_path])] == ["a/case.yaml", "b.case.yaml"]


def test_case_file_errors_carry_file_line_column(tmp_path: Path) -> None:
    path = _case(tmp_path, "  - {rule: five-errors}\n  - {rule: five-errors, cuont: 2}\n")
    with pytest.raises(CaseError) as e:
        load_case(path)
    assert str(e.value).startswith(f"{path}:4:5: unknown key 'cuont'")

    path.write_text("rules: [rules.yaml]\nexpect:\n  - {rule: five-errors, event: -1}\n")
    with pytest.raises(CaseError, match=r":3:5: 'event' is the 0-based index"):
        load_case(path)

    path.write_text("rules: [missing.yaml]\nexpect: []\n")
    with pytest.raises(CaseError, match=r":1:1: rule file 'missing.yaml' does not exist"):
        load_case(path)

    path.write_text("rules: [rules.yaml]\nexpect: [\n")
    with pytest.raises(CaseError, match="not valid YAML"):
        load_case(path)

    path.write_text("rules: [rules.yaml]\nonly: [a]\nexpect:\n  - {rule: b}\n")
    with pytest.raises(CaseError, match=r":4:5: rule 'b' is not in 'only'"):
        load_case(path)


def test_compare_claims_in_order_and_reports_the_rest() -> None:
    fired = [Fired("r", T0, {"pid": 1}, 4), Fired("r", T0 + 5, {"pid": 2}, 9), Fired("q", T0, {"pid": 1}, 4)]
    ok = CaseResult("c", Path("c"), PASS)
    compare([Expected("r", group={"pid": 2}), Expected("r", count=1), Expected("q", event=4)], fired, ok)
    assert not ok.missing and not ok.unexpected and not ok.forbidden

    bad = CaseResult("c", Path("c"), PASS)
    compare([Expected("r", group={"pid": 1}, event=5, where="case.yaml:3:5"), Expected("q", count=0)], fired, bad)
    assert [(m.expected.event, m.fired) for m in bad.missing] == [(5, 0)]
    assert [f.rule for _, f in bad.forbidden] == ["q"]
    assert [f.event for f in bad.unexpected] == [4, 9]


def test_group_values_compare_as_text_too() -> None:
    guid = "a1b2c3d4-0000-4000-8000-000000000001"
    f = Fired("r", T0, {"activity": guid.upper(), "keyword": 31}, None)
    assert Expected("r", group={"activity": guid}).matches(f)
    assert Expected("r", group={"keyword": "31"}).matches(f)
    assert not Expected("r", group={"keyword": 30}).matches(f)
    assert not Expected("r", group={"pid": 1}).matches(f)


def test_report_shows_the_diff() -> None:
    r = CaseResult("c", Path("rules/tests/c/case.yaml"), FAIL)
    fired = [Fired("r", T0, {"pid": 1}, 4)]
    r.fired = fired
    compare([Expected("r", group={"pid": 1}, event=3, where="case.yaml:3:5")], fired, r)
    text = format_text([r, CaseResult("ok", Path("ok"), PASS)])
    assert "FAIL c (rules/tests/c/case.yaml)" in text
    assert '- r group {"pid": 1} at event 3: expected 1, fired 0  [case.yaml:3:5]' in text
    assert '+ r group {"pid": 1} at event 4 (2026-01-10T12:00:00.000000000Z)' in text
    assert "PASS ok" in text
    assert text.rstrip().endswith("1 passed, 1 failed")


# -- whole cases through the loader and the engine ----------------------------------------------------------------



def test_a_passing_case(tmp_path: Path) -> None:
    path = _case(tmp_path, "  - {rule: five-errors, group: {pid: 42}, event: 4, time: '2026-01-10T12:00:04Z'}\n"
                           "  - {rule: five-errors, group: {pid: 43}, count: 0}\n")
    [result] = run_paths([path])
    assert result.status == PASS, format_text([result])
    assert result.events == 6


def test_a_wrong_expectation_fails_with_a_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _case(tmp_path, "  - {rule: five-errors, group: {pid: 42}, event: 3}\n")
    assert main(["test", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL case1 ({path})" in out
    assert '- five-errors group {"pid": 42} at event 3: expected 1, fired 0' in out
    assert '+ five-errors group {"pid": 42} at event 4 (2026-01-10T12:00:04.000000000Z)' in out
    assert out.rstrip().endswith("0 passed, 1 failed")


def test_nothing_may_fire(tmp_path: Path) -> None:
    four = [_event(i, 42, 503) for i in range(4)] + [_event(4, 42, 200)]
    path = _case(tmp_path, "  []\n", events=four)
    path.write_text("rules: [rules.yaml]\nexpect: []\n")
    [result] = run_paths([path])
    assert result.status == PASS, format_text([result])

    five = [_event(i, 42, 503) for i in range(5)]
    (path.parent / "events.jsonl").write_text("\n".join(five) + "\n")
    [result] = run_paths([path])
    assert result.status == FAIL
    assert [(f.rule, f.event) for f in result.unexpected] == [("five-errors", 4)]


def test_events_out_of_order_run_in_time_order_and_keep_file_indexes(tmp_path: Path) -> None:
    """As `dyntel replay` does: the engine sees time order; `event:` still counts lines of the file."""
    events = [_event(4, 42, 503), _event(0, 42, 503), _event(3, 42, 503), _event(1, 42, 503), _event(2, 42, 503)]
    path = _case(tmp_path, "  - {rule: five-errors, group: {pid: 42}, event: 0, time: '2026-01-10T12:00:04Z'}\n",
                 events=events)
    [result] = run_paths([path])
    assert result.status == PASS, format_text([result])


def test_rule_errors_are_case_errors_with_positions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _case(tmp_path, "  []\n")
    (path.parent / "rules.yaml").write_text(RULES.replace("fields.status >= 500", "fields.status >>= 500"))
    assert main(["test", str(path)]) == 1
    out = capsys.readouterr().out
    assert "ERROR case1" in out
    assert f"{path.parent / 'rules.yaml'}:6:30: syntax error in condition" in out


def test_bad_event_lines_are_errors(tmp_path: Path) -> None:
    path = _case(tmp_path, "  []\n", events=[_event(0, 42, 200), "{not json"])
    [result] = run_paths([path])
    assert result.status == ERROR
    assert "line 2" in result.errors[0]


def test_json_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _case(tmp_path, "  - {rule: five-errors, group: {pid: 42}}\n")
    assert main(["test", str(tmp_path), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] == 1 and doc["failed"] == 0
    [case] = doc["cases"]
    assert case["status"] == "pass"
    assert case["fired"] == [{"rule": "five-errors", "time": T0 + 4 * 10**9, "group": {"pid": 42}, "event": 4}]


def test_no_cases_is_a_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(tmp_path)]) == 1
    assert "no test cases found" in capsys.readouterr().out


def test_a_pack_case_with_a_wrong_expectation_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The pack's own cases, copied and broken: the diff names the expectation and what really fired."""
    shutil.copytree(PACK, tmp_path / "rules", ignore=shutil.ignore_patterns("tests"))
    case = tmp_path / "rules" / "tests" / "http-5xx-burst"
    shutil.copytree(PACK / "tests" / "http-5xx-burst", case)
    text = (case / "case.yaml").read_text()
    (case / "case.yaml").write_text(text.replace("event: 16", "event: 15"))
    assert main(["test", str(tmp_path / "rules")]) == 1
    out = capsys.readouterr().out
    assert "FAIL http-5xx-burst" in out
    assert ('- http-5xx-burst group {"pid": 4242} at event 15 (2026-01-10T12:00:08.000000000Z): expected 1, fired 0'
            in out)
    assert '+ http-5xx-burst group {"pid": 4242} at event 16' in out
