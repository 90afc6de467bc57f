"""Adding an action is adding a module: a module dropped into dyntel.actions is found, its options schema checks
rule files (errors at the option's file:line:column), its short form works, and the runtime runs it."""

from __future__ import annotations

import io
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from dyntel import actions
from dyntel.actions import registry
from dyntel.actions.registry import UnknownAction, action_types, find_action, type_names
from dyntel.actions.spec import ActionSpec
from dyntel.event import Event
from dyntel.firing import Firing
from dyntel.rules.loader import check_rules, load_rules
from dyntel.runtime.scheduler import Scheduler, run_actions

BUILT_IN = ("dump", "stacks", "enable", "otlp", "record", "exec", "signal", "log")

PAGE = '''
"""`page`: a test action that only says whom it would page."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from dyntel.actions import ActionContext
from dyntel.actions.spec import ActionSpec
from dyntel.firing import OK, ActionOutcome, Firing
from dyntel.options import Duration, OptionsModel

TYPE = "page"
SHORT_FORM = ("who", str)


class PageOptions(OptionsModel):
    what: ClassVar[str] = "page"
    who: str
    urgency: int = Field(default=1, ge=1)
    within: Duration | None = None


OPTIONS = PageOptions


def run(spec: ActionSpec, firing: Firing, context: ActionContext) -> ActionOutcome:
    context.log(f"paging {spec.options['who']} for {firing.rule}")
    return ActionOutcome(TYPE, OK, {"who": spec.options["who"]})
'''


@pytest.fixture
def page_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A new action module in a directory added to the package's path, as if dropped into dyntel/actions/."""
    extra = tmp_path / "more_actions"
    extra.mkdir()
    (extra / "page.py").write_text(PAGE, encoding="utf-8")
    (extra / "broken.py").write_text("import dyntel_no_such_dependency\nTYPE = 'broken'\n", encoding="utf-8")
    monkeypatch.setattr(actions, "__path__", [*actions.__path__, str(extra)])
    monkeypatch.setattr(registry, "_found", {})
    yield
    for name in ("dyntel.actions.page", "dyntel.actions.broken"):
        sys.modules.pop(name, None)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return str(path)


def errors_of(tmp_path: Path, text: str) -> list[str]:
    return [str(e).replace(str(tmp_path) + "/", "") for e in check_rules([write(tmp_path, text)])]


def test_the_built_in_types_in_their_listing_order() -> None:
    assert type_names()[:len(BUILT_IN)] == BUILT_IN
    assert all(t.options.model_fields for t in action_types())  # each declares its options


def test_a_lookup_says_why_there_is_no_such_type() -> None:
    with pytest.raises(UnknownAction) as e:
        find_action("nosuch")
    assert e.value.reason == "the nosuch action is not available in this build" and e.value.missing
    with pytest.raises(UnknownAction) as e:
        find_action("placeholders")  # a helper module beside the actions, not an action
    assert "is not an action module" in e.value.reason


def test_a_new_module_is_an_action_type_with_its_own_schema(page_module: None, tmp_path: Path) -> None:
    assert type_names() == (*BUILT_IN, "page")  # without a RANK it comes after the built-ins
    path = write(tmp_path, """
        version: 1
        rules:
          - name: r
            match: {provider: P}
            actions:
              - page: oncall
              - page: {who: db-team, urgency: 2, within: 5m}
        """)
    [rule] = load_rules([path]).rules
    assert [(a.type, a.options) for a in rule.actions] == [
        ("page", {"who": "oncall"}), ("page", {"who": "db-team", "urgency": 2, "within": "5m"})]

    assert errors_of(tmp_path, """
        version: 1
        rules:
          - name: r
            actions:
              - page: {urgency: 0, within: soon}
              - page: {who: x, pager: y}
              - pag: {}
        """) == [
        "r.yaml:5:15: missing required key 'who' in the options of page",
        "r.yaml:5:25: urgency: must be at least 1, got 0",
        "r.yaml:5:36: within: bad duration 'soon': expected a number and a unit (ms, s, m, h), like 500ms, 30s, "
        "5m or 1h",
        "r.yaml:6:24: unknown key 'pager' in the options of page; expected one of: who, urgency, within",
        "r.yaml:7:9: unknown action 'pag'; expected one of dump, stacks, enable, otlp, record, exec, signal, log, "
        "page (did you mean 'page'?)",
    ]


def test_the_runtime_runs_the_new_module(page_module: None) -> None:
    out = io.StringIO()
    firing = Firing("r", 0, {}, Event(provider="P", name="E", time=0))
    run_actions(firing, [ActionSpec("page", {"who": "oncall"})], Scheduler(log=out).runtime)
    assert [a.to_json() for a in firing.actions] == [{"type": "page", "status": "ok", "who": "oncall"}]
    assert out.getvalue() == "paging oncall for r\n"


def test_a_module_that_does_not_load_is_named_with_the_reason(page_module: None, tmp_path: Path) -> None:
    assert "broken" not in type_names()
    assert errors_of(tmp_path, """
        version: 1
        rules:
          - name: r
            actions:
              - broken: {}
        """) == ["r.yaml:5:9: action 'broken': the broken action is not available in this build: "
                 "No module named 'dyntel_no_such_dependency'"]
