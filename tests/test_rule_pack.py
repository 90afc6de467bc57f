"""The rule pack in rules/: it loads, every rule is documented and tested, and its test cases pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from dyntel.cli import main
from dyntel.rules.loader import load_rules
from dyntel.ruletest import discover, load_case

PACK = Path(__file__).resolve().parent.parent / "rules"
REQUIRED = {"http-5xx-burst", "error-log-burst", "heartbeat-lost", "http-latency-p99", "exception-then-crash",
            "span-error-burst"}


def test_the_pack_loads_as_a_directory() -> None:
    ruleset = load_rules([str(PACK)])
    names = {r.name for r in ruleset.rules}
    assert names >= REQUIRED
    for rule in ruleset.rules:
        assert rule.description, f"{rule.name} has no description"
        assert rule.tags, f"{rule.name} has no tags"
        assert any(a.type == "log" for a in rule.actions), f"{rule.name} does not log"


def test_every_rule_has_a_case_that_fires_and_one_that_must_not() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in discover([PACK / "tests"]):
        case = load_case(path)
        for e in case.expect:
            (fires if e.count > 0 else quiet).add(e.rule)
        if not case.expect or all(e.count == 0 for e in case.expect):
            quiet.update(case.only or ())
    names = {r.name for r in load_rules([str(PACK)]).rules}
    assert names - fires == set(), "rules with no case where they fire"
    assert names - quiet == set(), "rules with no near-miss case"


def test_dyntel_test_passes_on_the_pack(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["test", str(PACK)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "FAIL" not in out and "ERROR" not in out
    assert out.rstrip().splitlines()[-1].endswith(" passed, 0 failed")
