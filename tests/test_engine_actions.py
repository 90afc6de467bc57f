"""Actions of a firing: placeholders, dry run, the log action, unavailable and failing actions, the firing JSON."""

from __future__ import annotations

import io
import json
import sys
import types

import pytest
from test_engine_support import T0, S, engine, ev, keys, rule

from dyntel.actions.placeholders import expand
from dyntel.actions.registry import UnknownAction, find_action
from dyntel.firing import Firing
from dyntel.rules.model import ActionSpec, CountWindow
from dyntel.runtime.scheduler import Scheduler, run_actions


def firing(**fields):
    e = ev(5 * S, pid=42, **fields)
    e.activity = bytes(range(16))
    return Firing("http-5xx-burst", T0 + 5 * S, {"pid": 42, "fields.path": "/x"}, e)


def test_placeholders():
    f = firing(path="/api", status=503, **{"http.method": "GET"})
    outputs = {"dump": {"status": "ok", "path": "/var/dumps/42.dmp"}}
    got = expand({
        "body": "5xx burst in pid {pid} on {fields.path} ({fields.status}) rule {rule}",
        "method": "{fields.http.method}",
        "grp": "{group.fields.path} {group.pid}",
        "file": "{actions.dump.path}",
        "typed": "{pid}",
        "act": "{activity}",
        "list": ["{event}", "{provider}", 3],
        "json": '{"a": 1}',
        "braces": "{{pid}} }}",
    }, f, outputs)
    assert got == {
        "body": "5xx burst in pid 42 on /api (503) rule http-5xx-burst",
        "method": "GET",
        "grp": "/x 42",
        "file": "/var/dumps/42.dmp",
        "typed": 42,
        "act": "00010203-0405-0607-0809-0a0b0c0d0e0f",
        "list": ["Req", "Svc", 3],
        "json": '{"a": 1}',
        "braces": "{pid} }",
    }


def test_placeholders_missing_are_left_as_written_and_attributes_are_not_reachable():
    f = firing(path="/api")
    got = expand(["{fields.nope}", "{actions.dump.path}", "{event.__class__}", "{pid.real}", "{rule.__len__}",
                  "x {fields.path.upper} y", "{group}"], f, {})
    assert got == ["{fields.nope}", "{actions.dump.path}", "{event.__class__}", "{pid.real}", "{rule.__len__}",
                   "x {fields.path.upper} y", {"pid": 42, "fields.path": "/x"}]


def test_placeholders_nested_fields_and_lists():
    f = firing(path="/api")
    f.event._fields = {"req": {"path": "/deep", "args": ["a", "b"]}, "flag": True, "blob": b"\x01\x02"}
    assert expand("{fields.req.path} {fields.req.args.1} {fields.req.args.9} {fields.flag} {fields.blob}", f, {}) \
        == "/deep b {fields.req.args.9} true 0102"


def specs(*items):
    return tuple(ActionSpec(t, o) for t, o in items)


def test_dry_run_records_every_action_with_expanded_options():
    f = firing(path="/api")
    run_actions(f, specs(("dump", {"format": "minidump", "dir": "/tmp/{pid}"}), ("log", {"message": "pid {pid}"}),
                         ("nosuch", {})), Scheduler(dry_run=True).runtime)
    assert [a.to_json() for a in f.actions] == [
        {"type": "dump", "status": "dry-run", "options": {"format": "minidump", "dir": "/tmp/42"}},
        {"type": "log", "status": "dry-run", "options": {"message": "pid 42"}},
        {"type": "nosuch", "status": "dry-run", "options": {}},
    ]


def test_log_action_writes_one_line_and_unavailable_actions_are_skipped():
    out = io.StringIO()
    f = firing(path="/api")
    run_actions(f, specs(("log", {"message": "burst in {pid}\non {fields.path}", "level": "error"}),
                         ("nosuch_action", {}), ("log", {})), Scheduler(log=out).runtime)
    assert [a.to_json() for a in f.actions] == [
        {"type": "log", "status": "ok", "message": "burst in 42\non /api"},
        {"type": "nosuch_action", "status": "skipped",
         "reason": "the nosuch_action action is not available in this build"},
        {"type": "log", "status": "ok", "message": "fired on Svc:Req pid 42"},
    ]
    lines = out.getvalue().splitlines()
    assert lines == [
        '2023-11-14T22:13:25.000000000Z error http-5xx-burst {pid: 42, fields.path: "/x"}: burst in 42 on /api',
        '2023-11-14T22:13:25.000000000Z warning http-5xx-burst {pid: 42, fields.path: "/x"}: fired on Svc:Req pid 42',
    ]


@pytest.fixture
def fake_actions(monkeypatch):
    """Two action modules put where the scheduler looks: one that fails, one that reports a path."""
    boom = types.ModuleType("dyntel.actions.boom")
    boom.TYPE = "boom"

    def boom_run(spec, firing, context):
        raise OSError("disk full")

    boom.run = boom_run
    made = types.ModuleType("dyntel.actions.made")
    made.TYPE = "made"

    def made_run(spec, firing, context):
        from dyntel.firing import OK, ActionOutcome
        return ActionOutcome("made", OK, {"path": f"/dumps/{spec.options['name']}"})

    made.run = made_run
    monkeypatch.setitem(sys.modules, "dyntel.actions.boom", boom)
    monkeypatch.setitem(sys.modules, "dyntel.actions.made", made)
    from dyntel.actions import registry
    monkeypatch.setattr(registry, "_found", {})
    yield


def test_a_failing_action_does_not_stop_the_next_and_outputs_flow_on(fake_actions):
    out = io.StringIO()
    f = firing()
    run_actions(f, specs(("made", {"name": "{pid}.dmp"}), ("boom", {}),
                         ("log", {"message": "dumped to {actions.made.path}, boom {actions.boom.status}"})),
                Scheduler(log=out).runtime)
    assert [a.to_json() for a in f.actions] == [
        {"type": "made", "status": "ok", "path": "/dumps/42.dmp"},
        {"type": "boom", "status": "failed", "reason": "OSError: disk full"},
        {"type": "log", "status": "ok", "message": "dumped to /dumps/42.dmp, boom failed"},
    ]


def test_find_action_refuses_odd_names():
    for name in ("../x", "__init__", "artifacts"):  # not a name; the package itself; a helper, not an action
        with pytest.raises(UnknownAction):
            find_action(name)
    assert find_action("log").module.TYPE == "log"


def test_firing_json_has_the_contract_shape():
    actions = specs(("dump", {"format": "minidump"}), ("log", {"message": "hi {pid}"}))
    e = engine(rule("http-5xx-burst", window=CountWindow(2, 30 * S, keys("pid")), actions=actions),
               scheduler=Scheduler(dry_run=True))
    e.process(ev(0, pid=42, status=503))
    [f] = e.process(ev(S, pid=42, status=503))
    j = json.loads(json.dumps(f.to_json()))
    assert list(j) == ["rule", "time", "group", "event", "actions"]
    assert j["rule"] == "http-5xx-burst" and j["time"] == T0 + S and j["group"] == {"pid": 42}
    assert j["event"]["n"] == "Svc:Req" and j["event"]["status"] == 503 and j["event"]["meta"]["pid"] == 42
    assert j["actions"] == [
        {"type": "dump", "status": "dry-run", "options": {"format": "minidump"}},
        {"type": "log", "status": "dry-run", "options": {"message": "hi 42"}},
    ]


def test_engine_runs_actions_through_the_scheduler_when_not_dry():
    out = io.StringIO()
    e = engine(rule(actions=specs(("log", {"message": "{fields.status}"}), ("nosuch_action", {}))),
               scheduler=Scheduler(log=out))
    [f] = e.process(ev(0, status=500))
    assert [(a.type, a.status) for a in f.actions] == [("log", "ok"), ("nosuch_action", "skipped")]
    assert out.getvalue().endswith(" warning r: 500\n")
