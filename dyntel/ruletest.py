"""Rule test cases: rule files, a file of events, and the firings they must (and must not) cause.

A case is a YAML file named `case.yaml` (one directory a case, with its events beside it) or `NAME.case.yaml`:

    description: five 5xx from one pid within 30s fire once
    rules: [../../common.yaml, ../../service-health.yaml]   # relative to the case file; globs allowed
    events: events.jsonl                                     # JSON lines of EVENTs; default events.jsonl
    only: [http-5xx-burst]                                   # firings of other rules are ignored (optional)
    end: +1m                                                 # finish time: ISO time, ns, or +DURATION after
                                                             # the last event (default: the last event's time)
    expect:
      - {rule: http-5xx-burst, group: {pid: 4242}, event: 4}
      - {rule: http-5xx-burst, group: {pid: 7}, count: 0}    # must not fire

Each expectation names a rule and, optionally, the group (the keys it lists must equal the firing's), the time
(ISO or ns) or the 0-based index of the event that fired it, and how many such firings (`count`, default 1; 0 says
"must not fire"). The firings of the rules in scope must be exactly those expected: a firing no expectation
claims is a failure, so `expect: []` says nothing fires.

Cases run the real path: the loader, the recording reader (JSON lines through `open_recording`), the event-time
order of `dyntel replay` and the engine with a dry-run scheduler, so that a case that passes here fires the same in
`dyntel replay`. `event` indexes count positions in the events file, whatever order the engine saw them in.
"""

from __future__ import annotations

import calendar
import glob
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from dyntel.errors import DyntelError
from dyntel.event import Event
from dyntel.firing import Firing
from dyntel.formatting import format_time_iso, json_value_deep
from dyntel.units import parse_duration

CASE_FILE = "case.yaml"
CASE_SUFFIX = ".case.yaml"
DEFAULT_EVENTS = "events.jsonl"

PASS = "pass"
FAIL = "fail"
ERROR = "error"


class CaseError(DyntelError):
    """A case file that cannot be run as written; the message starts with file:line:column."""


# ---------------------------------------------------------------------------------------------------------------
# Reading case files, with positions for every mapping so that a bad expectation is reported where it is written.


class _Mapping(dict[str, Any]):
    line: int = 0
    column: int = 0


class _PositionLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _PositionLoader, node: yaml.MappingNode) -> _Mapping:
    m = _Mapping({str(k): v for k, v in loader.construct_mapping(node, deep=True).items()})
    m.line = node.start_mark.line + 1
    m.column = node.start_mark.column + 1
    return m


_PositionLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _where(path: Path, m: Any) -> str:
    if isinstance(m, _Mapping):
        return f"{path}:{m.line}:{m.column}"
    return f"{path}:1:1"


_ISO = re.compile(r"^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?\s*(Z|[+-]\d\d:?\d\d)?$")


def parse_time(value: Any) -> int:
    """Nanoseconds since the epoch from an int, an ISO-8601 string with up to nine decimals, or a YAML timestamp
    (PyYAML turns an unquoted ISO time into a datetime, which keeps microseconds only)."""
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        dt: datetime = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        whole = calendar.timegm(dt.utctimetuple())
        return whole * 1_000_000_000 + dt.microsecond * 1_000
    if isinstance(value, date):
        return calendar.timegm(value.timetuple()) * 1_000_000_000
    if isinstance(value, str):
        m = _ISO.match(value.strip())
        if m is not None:
            d, t, frac, zone = m.groups()
            whole = calendar.timegm(datetime.fromisoformat(f"{d}T{t}").timetuple())
            if zone and zone != "Z":
                sign = 1 if zone[0] == "+" else -1
                hh, mm = int(zone[1:3]), int(zone[-2:])
                whole -= sign * (hh * 3600 + mm * 60)
            return whole * 1_000_000_000 + int((frac or "0").ljust(9, "0"))
    raise ValueError(f"not a time: {value!r} (expected an ISO-8601 time or nanoseconds since the epoch)")


@dataclass(slots=True)
class Expected:
    rule: str
    group: dict[str, Any] | None = None
    time: int | None = None
    event: int | None = None
    count: int = 1
    where: str = ""  # file:line:column of the expectation

    def matches(self, f: Fired) -> bool:
        if f.rule != self.rule:
            return False
        if self.time is not None and f.time != self.time:
            return False
        if self.event is not None and f.event != self.event:
            return False
        if self.group is not None:
            for key, want in self.group.items():
                if key not in f.group or not _same_value(f.group[key], want):
                    return False
        return True

    def describe(self) -> str:
        parts = [self.rule]
        if self.group is not None:
            parts.append("group " + _show_group(self.group))
        if self.event is not None and self.time is not None:
            parts.append(f"at event {self.event} ({format_time_iso(self.time)})")
        elif self.event is not None:
            parts.append(f"at event {self.event}")
        elif self.time is not None:
            parts.append("at " + format_time_iso(self.time))
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "count": self.count, "where": self.where}
        if self.group is not None:
            out["group"] = self.group
        if self.event is not None:
            out["event"] = self.event
        if self.time is not None:
            out["time"] = self.time
        return out


@dataclass(slots=True)
class Fired:
    """A firing as a case sees it: JSON-shaped group values and the index of its event in the events file."""

    rule: str
    time: int
    group: dict[str, Any]
    event: int | None

    def describe(self) -> str:
        where = f" at event {self.event}" if self.event is not None else ""
        return f"{self.rule} group {_show_group(self.group)}{where} ({format_time_iso(self.time)})"

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "time": self.time, "group": self.group, "event": self.event}


def _same_value(actual: Any, want: Any) -> bool:
    if actual == want:
        return True
    # YAML writes 0x1F as 31 and a GUID as a string; the engine may hold either form, so compare as text too.
    return isinstance(want, str | int | float) and str(actual).lower() == str(want).lower()


def _show_group(g: dict[str, Any]) -> str:
    return json.dumps(g, sort_keys=True, default=str)


@dataclass(slots=True)
class Case:
    name: str
    path: Path
    rules: list[str]
    events: Path
    expect: list[Expected]
    only: frozenset[str] | None = None
    end: int | str | None = None  # ns, or "+DURATION" after the last event
    description: str = ""


_CASE_KEYS = {"description", "rules", "events", "expect", "only", "end", "name"}
_EXPECT_KEYS = {"rule", "group", "time", "event", "count"}


def discover(paths: Iterable[str | Path]) -> list[Path]:
    """Case files under each path (a case file itself, or a directory searched recursively), sorted."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            found.append(p)
        elif p.is_dir():
            found.extend(q for q in p.rglob("*.yaml") if q.name == CASE_FILE or q.name.endswith(CASE_SUFFIX))
    return sorted(set(found))


def case_name(path: Path) -> str:
    if path.name == CASE_FILE:
        return path.parent.name
    return path.name.removesuffix(CASE_SUFFIX)


def load_case(path: Path) -> Case:
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_PositionLoader)  # a SafeLoader subclass
    except OSError as e:
        raise CaseError(f"{path}:1:1: cannot read: {e.strerror}") from e
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        raise CaseError(f"{path}:{line}:{col}: not valid YAML: {e.problem}") from e
    if not isinstance(doc, dict):
        raise CaseError(f"{path}:1:1: a case is a mapping with rules, events and expect")
    unknown = sorted(set(doc) - _CASE_KEYS)
    if unknown:
        raise CaseError(f"{_where(path, doc)}: unknown key {unknown[0]!r}; a case has {', '.join(sorted(_CASE_KEYS))}")
    base = path.parent

    rules_spec = doc.get("rules")
    if isinstance(rules_spec, str):
        rules_spec = [rules_spec]
    if not isinstance(rules_spec, list) or not rules_spec or not all(isinstance(r, str) for r in rules_spec):
        raise CaseError(f"{_where(path, doc)}: 'rules' must list the rule files, relative to the case file")
    rules: list[str] = []
    for spec in rules_spec:
        pattern = str(base / spec)
        matched = sorted(glob.glob(pattern)) if glob.has_magic(spec) else [pattern]
        if not matched:
            raise CaseError(f"{_where(path, doc)}: no rule file matches {spec!r}")
        for m in matched:
            if not Path(m).exists():
                raise CaseError(f"{_where(path, doc)}: rule file {spec!r} does not exist")
            rules.append(str(Path(m)))

    events_spec = doc.get("events", DEFAULT_EVENTS)
    if not isinstance(events_spec, str):
        raise CaseError(f"{_where(path, doc)}: 'events' is the name of a JSON-lines file of EVENTs")
    events = base / events_spec
    if not events.exists():
        raise CaseError(f"{_where(path, doc)}: events file {events_spec!r} does not exist")

    only_spec = doc.get("only")
    only: frozenset[str] | None = None
    if only_spec is not None:
        if isinstance(only_spec, str):
            only_spec = [only_spec]
        if not isinstance(only_spec, list) or not all(isinstance(r, str) for r in only_spec):
            raise CaseError(f"{_where(path, doc)}: 'only' lists rule names")
        only = frozenset(only_spec)

    end: int | str | None = None
    end_spec = doc.get("end")
    if end_spec is not None:
        try:
            if isinstance(end_spec, str) and end_spec.strip().startswith("+"):
                parse_duration(end_spec.strip()[1:])
                end = end_spec.strip()
            else:
                end = parse_time(end_spec)
        except ValueError as e:
            raise CaseError(f"{_where(path, doc)}: 'end': {e}") from e

    expect_spec = doc.get("expect")
    if not isinstance(expect_spec, list):
        raise CaseError(f"{_where(path, doc)}: 'expect' lists the firings expected ([] when none may fire)")
    expect = [_load_expected(path, spec) for spec in expect_spec]
    if only is not None:
        for x in expect:
            if x.rule not in only:
                raise CaseError(f"{x.where}: rule {x.rule!r} is not in 'only', so its firings are not looked at")

    name = doc.get("name")
    description = doc.get("description", "")
    return Case(name=str(name) if name else case_name(path), path=path, rules=rules, events=events, expect=expect,
                only=only, end=end, description=str(description or ""))


def _load_expected(path: Path, spec: Any) -> Expected:
    where = _where(path, spec)
    if not isinstance(spec, dict) or not isinstance(spec.get("rule"), str):
        raise CaseError(f"{where}: an expectation is a mapping with at least 'rule'")
    unknown = sorted(set(spec) - _EXPECT_KEYS)
    if unknown:
        raise CaseError(f"{where}: unknown key {unknown[0]!r}; an expectation has {', '.join(sorted(_EXPECT_KEYS))}")
    group = spec.get("group")
    if group is not None and not isinstance(group, dict):
        raise CaseError(f"{where}: 'group' is a mapping of group_by keys to values, e.g. {{pid: 4242}}")
    time: int | None = None
    if spec.get("time") is not None:
        try:
            time = parse_time(spec["time"])
        except ValueError as e:
            raise CaseError(f"{where}: 'time': {e}") from e
    event = spec.get("event")
    if event is not None and (not isinstance(event, int) or isinstance(event, bool) or event < 0):
        raise CaseError(f"{where}: 'event' is the 0-based index of the firing event in the events file")
    count = spec.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise CaseError(f"{where}: 'count' is a number of firings, 0 or more")
    return Expected(rule=spec["rule"], group=dict(group) if group is not None else None, time=time, event=event,
                    count=count, where=where)


# ---------------------------------------------------------------------------------------------------------------
# Running a case and comparing.


@dataclass(slots=True)
class Missing:
    expected: Expected
    fired: int  # how many matching firings there were


@dataclass(slots=True)
class CaseResult:
    name: str
    path: Path
    status: str  # pass | fail | error
    errors: list[str] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)
    unexpected: list[Fired] = field(default_factory=list)
    forbidden: list[tuple[Expected, Fired]] = field(default_factory=list)  # fired where count: 0 said it must not
    fired: list[Fired] = field(default_factory=list)
    events: int = 0
    warnings: list[str] = field(default_factory=list)  # the loader's, as file:line:column: warning: message

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "path": str(self.path), "status": self.status, "errors": self.errors,
            "events": self.events, "warnings": self.warnings,
            "missing": [{**m.expected.to_json(), "fired": m.fired} for m in self.missing],
            "unexpected": [f.to_json() for f in self.unexpected],
            "forbidden": [{"expected": e.to_json(), "fired": f.to_json()} for e, f in self.forbidden],
            "fired": [f.to_json() for f in self.fired],
        }


def compare(expect: Sequence[Expected], fired: Sequence[Fired], result: CaseResult) -> None:
    """Pair firings with expectations. Each firing satisfies at most one expectation, taken in the order written,
    so a specific expectation placed first is not starved by a general one after it."""
    claimed = [False] * len(fired)
    for e in expect:
        if e.count == 0:
            for i, f in enumerate(fired):
                if not claimed[i] and e.matches(f):
                    claimed[i] = True
                    result.forbidden.append((e, f))
            continue
        got = 0
        for i, f in enumerate(fired):
            if got == e.count:
                break
            if not claimed[i] and e.matches(f):
                claimed[i] = True
                got += 1
        if got < e.count:
            result.missing.append(Missing(e, got))
    result.unexpected.extend(f for i, f in enumerate(fired) if not claimed[i])


def _rule_error_lines(e: BaseException) -> list[str]:
    """The loader's errors one a line (file:line:column: message), whatever collection it keeps them in."""
    entries = getattr(e, "errors", None)
    if isinstance(entries, list | tuple) and entries:
        return [str(x) for x in entries]
    return [line for line in str(e).splitlines() if line.strip()] or [type(e).__name__]


def run_case(case: Case) -> CaseResult:
    from dyntel.decoders.otlp_metrics import expand as expand_metrics
    from dyntel.engine.engine import Engine
    from dyntel.replay import DEFAULT_HOLD, open_for_replay, time_ordered
    from dyntel.rules.errors import RuleErrors
    from dyntel.rules.loader import load_rules
    from dyntel.runtime.scheduler import Scheduler

    result = CaseResult(case.name, case.path, PASS)
    try:
        ruleset = load_rules(case.rules)
    except RuleErrors as err:
        result.status = ERROR
        result.errors = _rule_error_lines(err)
        return result
    result.warnings = [str(w) for w in ruleset.warnings]
    names = {r.name for r in ruleset.rules}
    for x in case.expect:
        if x.rule not in names:
            result.errors.append(f"{x.where}: no rule named {x.rule!r} in {', '.join(case.rules)}")
    for name in sorted(case.only or ()):
        if name not in names:
            result.errors.append(f"{case.path}: 'only' names {name!r}, which no rule file defines")
    if result.errors:
        result.status = ERROR
        return result

    engine = Engine(ruleset, Scheduler(dry_run=True))
    index_of: dict[int, int] = {}
    kept: list[Event] = []  # keeps every event alive, so that id() stays unique while firings are mapped back
    raw: list[Firing] = []
    last_time: int | None = None

    def numbered(events: Iterable[Event]) -> Iterator[Event]:
        # Indexes are positions in the file, as the case's author counts them, taken before replay's reordering.
        for i, event in enumerate(events):
            kept.append(event)
            index_of[id(event)] = i
            yield event

    try:
        source = open_for_replay(str(case.events))
        late = [0]
        # The same time order as `dyntel replay`, so that a case passes here exactly when it would fire there.
        # otlp_metrics events become their data points, as in `dyntel replay`; the points are not lines of the
        # file, so their firings have no `event` index (expect them by group, time or count).
        ordered = time_ordered(numbered(source.events()), DEFAULT_HOLD, late)
        for event in expand_metrics(ordered, source.stats):
            if event.time is not None and (last_time is None or event.time > last_time):
                last_time = event.time
            raw.extend(engine.process(event))
        if source.stats.bad:
            for p in source.stats.problems:
                result.errors.append(f"{case.events}: {p}")
        if case.end is None:
            end = last_time or 0
        elif isinstance(case.end, str):
            end = (last_time or 0) + parse_duration(case.end[1:])
        else:
            end = case.end
        raw.extend(engine.finish(end))
    except DyntelError as e:
        result.errors.append(str(e))
    result.events = len(kept)
    if result.errors:
        result.status = ERROR
        return result

    fired = [
        Fired(f.rule, f.time, json_value_deep(dict(f.group)),
              index_of.get(id(f.event)) if f.event is not None else None)
        for f in raw
        if case.only is None or f.rule in case.only
    ]
    result.fired = fired
    compare(case.expect, fired, result)
    if result.missing or result.unexpected or result.forbidden:
        result.status = FAIL
    return result


def run_paths(paths: Iterable[str | Path]) -> list[CaseResult]:
    results: list[CaseResult] = []
    for path in discover(paths):
        try:
            case = load_case(path)
        except CaseError as e:
            results.append(CaseResult(case_name(path), path, ERROR, errors=[str(e)]))
            continue
        results.append(run_case(case))
    return results


# ---------------------------------------------------------------------------------------------------------------
# Reports.


def format_text(results: Sequence[CaseResult], verbose: bool = False) -> str:
    lines: list[str] = []
    for r in results:
        label = {PASS: "PASS", FAIL: "FAIL", ERROR: "ERROR"}[r.status]
        n = len(r.fired)
        head = f"{label} {r.name} ({r.path})"
        if r.status == PASS:
            head += f": {r.events} events, {n} firing{'s' if n != 1 else ''} as expected"
        lines.append(head)
        for err in r.errors:
            lines.append(f"    {err}")
        if r.missing:
            lines.append("  expected, did not fire:")
            for m in r.missing:
                lines.append(f"    - {m.expected.describe()}: expected {m.expected.count}, fired {m.fired}"
                             f"  [{m.expected.where}]")
        if r.forbidden:
            lines.append("  fired, where the case says it must not:")
            for e, f in r.forbidden:
                lines.append(f"    ! {f.describe()}  [{e.where}]")
        if r.unexpected:
            lines.append("  fired, not expected:")
            for f in r.unexpected:
                lines.append(f"    + {f.describe()}")
        if r.status == FAIL or (verbose and r.fired):
            lines.append("  all firings:" if r.fired else "  nothing fired")
            for f in r.fired:
                lines.append(f"      {f.describe()}")
    passed = sum(r.status == PASS for r in results)
    failed = sum(r.status == FAIL for r in results)
    errors = sum(r.status == ERROR for r in results)
    summary = f"{passed} passed, {failed} failed"
    if errors:
        summary += f", {errors} errors"
    if not results:
        summary = "no test cases found (case.yaml or *.case.yaml)"
    lines.append(summary)
    return "\n".join(lines) + "\n"


def to_json(results: Sequence[CaseResult]) -> dict[str, Any]:
    return {
        "cases": [r.to_json() for r in results],
        "passed": sum(r.status == PASS for r in results),
        "failed": sum(r.status == FAIL for r in results),
        "errors": sum(r.status == ERROR for r in results),
    }


def exit_status(results: Sequence[CaseResult]) -> int:
    return 0 if results and all(r.status == PASS for r in results) else 1
