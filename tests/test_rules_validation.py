"""Rule files that do not load: each error class with its exact message and file:line:column."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dyntel.rules.errors import RuleErrors
from dyntel.rules.loader import check_rules, load, load_rules
from dyntel.rules.model import AbsenceWindow, CountWindow, SequenceWindow, ThresholdWindow


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return str(path)


def errors_of(tmp_path: Path, text: str, name: str = "r.yaml") -> list[str]:
    """The errors of one file, with the tmp directory taken out of the positions."""
    path = write(tmp_path, name, text)
    return [str(e).replace(str(tmp_path) + "/", "") for e in check_rules([path])]


GOOD = """
    version: 1
    lists:
      noisy_paths: ["/health", "/ready"]
    macros:
      http_error: fields.status >= 500
    rules:
      - name: http-5xx-burst
        description: Five or more 5xx responses from one process within 30 seconds
        match: {provider: MyService, event: RequestDone}
        condition: http_error and fields.path not in noisy_paths
        window: {count: 5, within: 30s, group_by: [pid]}
        cooldown: 5m
        limit: {actions: 3, per: 1h}
        actions:
          - dump: {format: minidump}
          - stacks: {}
          - enable: {provider: MyService, level: 5, keyword: 0xFFFF, for: 2m}
          - otlp: {endpoint: "http://127.0.0.1:4318", severity: ERROR, body: "5xx burst in pid {pid}"}
        tags: [http]
        enabled: true
"""


def test_the_contract_example_loads(tmp_path: Path) -> None:
    ruleset = load_rules([write(tmp_path, "r.yaml", GOOD)])
    (rule,) = ruleset.rules
    assert rule.name == "http-5xx-burst"
    assert (rule.match.provider, rule.match.event, rule.match.level) == ("MyService", "RequestDone", None)
    assert rule.window == CountWindow(5, 30_000_000_000, rule.window.group_by)  # type: ignore[union-attr]
    assert isinstance(rule.window, CountWindow) and rule.window.group_by.names == ("pid",)
    assert rule.cooldown_ns == 300_000_000_000
    assert rule.limit is not None and (rule.limit.actions, rule.limit.per_ns) == (3, 3_600_000_000_000)
    assert [a.type for a in rule.actions] == ["dump", "stacks", "enable", "otlp"]
    assert rule.actions[2].options == {"provider": "MyService", "level": 5, "keyword": 0xFFFF, "for": "2m"}
    assert rule.actions[0].position is not None and (rule.actions[0].position.line,
                                                      rule.actions[0].position.column) == (15, 9)
    assert rule.position is not None and (rule.position.line, rule.position.column) == (7, 5)
    assert rule.tags == ("http",)
    assert rule.condition_text == "http_error and fields.path not in noisy_paths"
    assert [text for text, _ in rule.explain_parts] == ["http_error", "fields.path not in noisy_paths"]
    assert len(rule.fingerprint) == 64
    assert ruleset.files == (str(tmp_path / "r.yaml"),)


def test_unknown_key_lists_the_allowed_ones_and_suggests(tmp_path: Path) -> None:
    assert errors_of(tmp_path, """
        rules:
          - name: a
            conditon: pid == 1
    """) == ["r.yaml:3:5: unknown key 'conditon' in rule 'a'; expected one of: name, description, match, condition, "
             "window, threshold, absence, sequence, cooldown, limit, actions, tags, enabled (did you mean "
             "'condition'?)"]


def test_unknown_key_at_top_level_and_inside_window(tmp_path: Path) -> None:
    assert errors_of(tmp_path, """
        rule: []
        rules:
          - name: a
            window: {count: 2, within: 1s, group: [pid]}
    """) == [
        "r.yaml:1:1: unknown key 'rule' in the top level of a rule file; expected one of: version, lists, macros, "
        "rules (did you mean 'rules'?)",
        "r.yaml:4:36: unknown key 'group' in window; expected one of: count, within, group_by (did you mean "
        "'group_by'?)",
    ]


def test_missing_required_key(tmp_path: Path) -> None:
    assert errors_of(tmp_path, """
        rules:
          - description: nameless
            window: {within: 1s}
    """) == [
        "r.yaml:2:5: missing required key 'name' in a rule",
        "r.yaml:3:13: missing required key 'count' in window",
    ]


def test_wrong_types(tmp_path: Path) -> None:
    assert errors_of(tmp_path, """
        rules:
          - name: a
            window: {count: "5", within: 1s}
            tags: http
            enabled: maybe
            condition: true
          - name: b
            match: [MyService]
    """) == [
        "r.yaml:3:21: window.count: expected a whole number, got text '5'",
        "r.yaml:4:11: tags: expected a list, got text 'http'",
        "r.yaml:5:14: enabled: expected true or false, got text 'maybe'",
        "r.yaml:6:16: condition: expected text, got true (YAML reads unquoted true as true; write \"true\" for the "
        "text)",
        "r.yaml:8:12: match: expected a mapping with keys provider, event, level, got a list",
    ]


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert errors_of(tmp_path, "- name: a\n") == [
        "r.yaml:1:1: expected a mapping with keys version, lists, macros, rules, got a list"]


def test_bad_version(tmp_path: Path) -> None:
    assert errors_of(tmp_path, "version: 2\n") == ["r.yaml:1:10: version: this dyntel reads rule files of version 1, "
                                                   "got 2"]


def test_bad_durations(tmp_path: Path) -> None:
    assert errors_of(tmp_path, """
        rules:
          - name: a
            window: {count: 5, within: 30}
            cooldown: 5 minutes
            limit: {actions: 0, per: 1h}
    """) == [
        "r.yaml:3:32: window.within: expected a duration, a number and a unit (ms, s, m, h), like 500ms, 30s, 5m or "
        "1h; got the number 30",
        "r.yaml:4:15: cooldown: bad duration '5 minutes': expected a number and a unit (ms, s, m, h), like 500ms, "
        "30s, 5m or 1h",
        "r.yaml:5:22: limit.actions: must be at least 1, got 0",
    ]


def test_more_than_one_window_kind_points_at_the_second(tmp_path: Path) -> None:
    assert errors_of(tmp_path, """
        rules:
          - name: a
            window: {count: 5, within: 30s}
            absence: {within: 1m}
    """) == ["r.yaml:4:5: 'absence' and 'window' (line 3) in one rule: a rule has at most one of window, threshold, "
             "absence, sequence"]


def test_bad_op_agg_and_level(tmp_path: Path) -> None:
    assert errors_of(tmp_path, """
        rules:
          - name: a
            match: {level: loud}
            threshold: {value: fields.ms, agg: mean, op: "=>", limit: 5, within: 1m}
    """) == [
        "r.yaml:3:20: match.level: bad level 'loud': expected a number 0-255 (1 critical, 2 error, 3 warning, "
        "4 informational, 5 verbose) or one of the names critical, error, warning, informational, info, verbose",
        "r.yaml:4:40: threshold.agg: bad value 'mean': expected one of avg, min, max, sum, p50, p90 or p99",
        "r.yaml:4:50: threshold.op: bad value '=>': expected one of >, >=, <, <=, == or !=",
    ]


def test_level_names_read_as_numbers(tmp_path: Path) -> None:
    ruleset = load_rules([write(tmp_path, "r.yaml", """
        rules:
          - {name: a, match: {level: warning}}
          - {name: b, match: {level: 4}}
    """)])
    assert [r.match.level for r in ruleset.rules] == [3, 4]


def test_actions(tmp_path: Path) -> None:
    assert errors_of(tmp_path, """
        rules:
          - name: a
            actions:
              - dump:
                format: core
              - dumpp: {}
              - stacks
              - dump: {format: elf, max_size: lots}
              - exec: {timeout: 5s}
              - signal: SIGNOPE
              - otlp: "http://collector"
    """) == [
        "r.yaml:4:9: an action is a mapping with one key, its type (like `- dump: {format: core}` or `- stacks: {}`); "
        "this one has 2 keys (dump, format): indent the options under the type, or start each action with '-'",
        "r.yaml:6:9: unknown action 'dumpp'; expected one of dump, stacks, enable, otlp, record, exec, signal, log "
        "(did you mean 'dump'?)",
        "r.yaml:7:9: an action is a mapping with one key, its type (like `- dump: {format: core}` or "
        "`- stacks: {}`); write `- stacks: {}`",
        "r.yaml:8:24: format: bad value 'elf': expected one of minidump or core",
        "r.yaml:8:39: max_size: bad size 'lots': expected a number of bytes or a number and a unit (KB, MB, GB), "
        "like 512MB or 2GB",
        "r.yaml:9:15: missing required key 'argv' in the options of exec",
        "r.yaml:10:17: signal: bad signal 'SIGNOPE': expected a signal name (SIGHUP, SIGINT, SIGQUIT, SIGILL, "
        "SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGKILL, SIGUSR1, SIGSEGV, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM, "
        "SIGSTKFLT, ...) or number",
        "r.yaml:11:15: otlp: expected its options as a mapping, like `otlp: {...}` (or `otlp: {}` for none), got "
        "text 'http://collector'",
    ]


def test_action_option_unknown_key(tmp_path: Path) -> None:
    assert errors_of(tmp_path, """
        rules:
          - name: a
            actions:
              - enable: {provider: P, levl: 5}
              - stacks: {depth: 3}
    """) == [
        "r.yaml:4:31: unknown key 'levl' in the options of enable; expected one of: provider, level, keyword, for, "
        "event (did you mean 'level'?)",
        "r.yaml:5:18: unknown key 'depth' in the options of stacks; expected one of: pid, dir, max_total, native, "
        "python, timeout",
    ]


def test_action_shorthands_and_dynamic_options(tmp_path: Path) -> None:
    ruleset = load_rules([write(tmp_path, "r.yaml", """
        rules:
          - name: a
            actions:
              - log: "5xx in {pid}"
              - exec: [/usr/local/bin/notify, "{rule}"]
              - signal: TERM
              - enable: {provider: "{fields.provider}", level: "{fields.level}"}
              - dump:
    """)])
    assert [(a.type, a.options) for a in ruleset.rules[0].actions] == [
        ("log", {"message": "5xx in {pid}"}),
        ("exec", {"argv": ["/usr/local/bin/notify", "{rule}"]}),
        ("signal", {"signal": "TERM"}),
        ("enable", {"provider": "{fields.provider}", "level": "{fields.level}"}),
        ("dump", {}),
    ]


def test_placeholders(tmp_path: Path) -> None:
    assert errors_of(tmp_path, """
        rules:
          - name: a
            actions:
              - log: {message: "burst in {pidd}; {fields}; {pid.x}; {\\"json\\": 1} {{literal}}"}
              - otlp: {attributes: {dump: "{actions.dump.path}"}}
              - dump: {}
              - log: "{actions.dump.path} {group.pid} {fields.req.path} {rule} {time}"
    """) == [
        "r.yaml:4:24: unknown placeholder {pidd}; expected {fields.NAME}, {group.KEY}, {actions.TYPE.KEY} or one of "
        "activity, cpu, event, id, keyword, level, opcode, pid, provider, related_activity, rule, source, tag, "
        "tid, time, version (did you mean 'pid'?)",
        "r.yaml:4:24: placeholder {fields} needs a name after it, like {fields.path}",
        "r.yaml:4:24: placeholder {pid.x}: pid has no parts",
        "r.yaml:5:35: placeholder {actions.dump.path} reads the result of a 'dump' action, but no 'dump' action "
        "comes before this one in the rule",
    ]


def test_yaml_syntax_error_has_pyyamls_mark(tmp_path: Path) -> None:
    assert errors_of(tmp_path, """
        rules:
          - name: a
            condition: fields.msg == a: b
    """) == ["r.yaml:3:31: YAML syntax error: mapping values are not allowed here (a value holding ': ' needs quotes, "
             "or a block: `condition: >-` and the text on the next lines)"]
    assert errors_of(tmp_path, 'rules:\n  - name: "a\n') == [
        "r.yaml:3:1: YAML syntax error: found unexpected end of stream, while scanning a quoted scalar that starts "
        "at line 2, column 11"]


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    assert errors_of(tmp_path, """
        rules:
          - name: a
            name: b
    """) == ["r.yaml:3:5: duplicate key 'name' (first at line 2, column 5)"]


def test_duplicate_rule_name_across_files_points_at_both(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "rules:\n  - name: burst\n")
    b = write(tmp_path, "b.yaml", "rules:\n  - {name: other}\n  - {name: burst}\n")
    assert [str(e) for e in check_rules([a, b])] == [
        f"{b}:3:12: duplicate rule name 'burst'; first defined at {a}:2:11"]


def test_lists_and_macros(tmp_path: Path) -> None:
    assert errors_of(tmp_path, """
        lists:
          bad-name: [1]
          pid: [1]
          nested: [[1], null]
          notalist: 5
        macros:
          m: 5
          ok: fields.x == 1
          both: [1]
    """) == [
        "r.yaml:2:3: bad list name 'bad-name': expected letters, digits and _, not starting with a digit (it is "
        "used as a name in conditions)",
        "r.yaml:3:3: bad list name 'pid': that name already means something in conditions",
        "r.yaml:4:12: lists.nested[0]: expected text or a number, got a list",
        "r.yaml:4:17: lists.nested[1]: expected text or a number, got nothing (null)",
        "r.yaml:5:13: lists.notalist: expected a list of values, like [\"/health\", \"/ready\"], got the number 5",
        "r.yaml:7:6: macros.m: expected a condition (text), got the number 5",
        "r.yaml:9:9: macros.both: expected a condition (text), got a list",
    ]


def test_undefined_macro_or_list(tmp_path: Path) -> None:
    assert errors_of(tmp_path, """
        lists:
          noisy_paths: [/health]
        rules:
          - name: a
            condition: http_eror and fields.path in noisy_path
    """) == [
        "r.yaml:5:16: unknown name 'http_eror'; expected an event property (provider, event, level, keyword, opcode, "
        "id, version, tag, activity, related_activity, pid, tid, cpu, time, source), fields.NAME, process.NAME, a "
        "list or a macro",
        "r.yaml:5:45: unknown name 'noisy_path'; expected an event property (provider, event, level, keyword, "
        "opcode, id, version, tag, activity, related_activity, pid, tid, cpu, time, source), fields.NAME, "
        "process.NAME, a list or a macro (did you mean 'noisy_paths'?)",
    ]


def test_macro_cycle_and_macro_errors_reported_once_at_the_macro(tmp_path: Path) -> None:
    assert errors_of(tmp_path, """
        macros:
          a: b and pid > 1
          b: a
          bad: fields.x === 1
        rules:
          - {name: r1, condition: a}
          - {name: r2, condition: a or bad}
          - {name: r3, condition: bad}
    """) == [
        "r.yaml:2:6: macro 'b' uses itself: b -> a -> b",
        "r.yaml:3:6: macro 'a' uses itself: a -> b -> a",
        "r.yaml:4:19: syntax error in condition: invalid syntax",
    ]


def test_name_defined_as_list_and_macro_in_two_files(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "lists:\n  paths: [/a]\n")
    b = write(tmp_path, "b.yaml", "macros:\n  paths: pid == 1\n")
    assert [str(e) for e in check_rules([a, b])] == [
        f"{b}:2:3: 'paths' is already defined as a list at {a}:2:3; lists and macros are shared by all loaded files"]


def test_condition_errors_point_into_the_condition(tmp_path: Path) -> None:
    assert errors_of(tmp_path, """
        rules:
          - name: plain
            condition: fields.a == 1 and __import__("os")
          - name: quoted
            condition: 'fields.a == ''x'' and (lambda: 1)'
          - name: literal
            condition: |
              fields.a == 1
                and fields.b.startswith("x")
          - name: folded
            condition: >-
              fields.a == 1
              and [x for x in y]
    """) == [
        "r.yaml:3:34: unknown function '__import__'; expected one of startswith, endswith, contains, icontains, "
        "glob, matches, exists, lower, upper, len, tag",
        "r.yaml:5:40: a lambda is not part of the condition language; expected comparisons (== != < <= > >= in, "
        "not in) joined by and, or, not, and the functions startswith, endswith, contains, icontains, glob, "
        "matches, exists, lower, upper, len, tag",
        "r.yaml:9:13: method calls are not part of the condition language; write startswith(fields.b, ...); the "
        "functions are startswith, endswith, contains, icontains, glob, matches, exists, lower, upper, len, tag",
        "r.yaml:13:11: a comprehension is not part of the condition language; expected comparisons (== != < <= > >= "
        "in, not in) joined by and, or, not, and the functions startswith, endswith, contains, icontains, glob, "
        "matches, exists, lower, upper, len, tag",
    ]


def test_group_keys_threshold_value_and_sequence_steps_are_checked(tmp_path: Path) -> None:
    assert errors_of(tmp_path, """
        rules:
          - name: a
            window: {count: 2, within: 1s, group_by: [pid, fields.path, proces.name]}
          - name: b
            threshold: {value: fields.ms > 5, agg: p99, op: ">", limit: 5, within: 1m}
          - name: c
            sequence: {steps: [fields.a == 1, "fields.b =="], within: 10s, by: fields}
    """) == [
        "r.yaml:3:65: attribute access is only for fields.NAME and process.NAME; 'proces' is not a name conditions "
        "know (did you mean 'process'?)",
        "r.yaml:5:24: expected a value read from the event (like pid, fields.path, process.name), got the condition "
        "'fields.ms > 5'",
        "r.yaml:7:51: syntax error in condition: it ends too early",
        "r.yaml:7:72: 'fields' needs a name after it, like fields.status or fields[\"http.status\"]",
    ]


def test_all_errors_of_several_files_in_file_order(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "rules:\n  - {name: a, cooldown: 5x}\n  - {name: b, condition: foo}\n")
    b = write(tmp_path, "b.yaml", "rules: [\n")
    missing = str(tmp_path / "missing.yaml")
    errors = check_rules([b, a, missing])
    assert [(e.position.file, e.position.line) for e in errors] == [(b, 2), (a, 2), (a, 3), (missing, 1)]
    assert errors[3].message == "cannot read: No such file or directory"
    with pytest.raises(RuleErrors) as info:
        load_rules([b, a, missing])
    assert len(info.value.errors) == 4
    assert str(info.value).splitlines()[0] == str(errors[0])


def test_disabled_rules_are_checked_but_not_loaded(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", """
        rules:
          - {name: live, condition: pid == 1}
          - {name: "off", condition: pid == 1, enabled: false}
    """)
    result = load([path])
    assert [r.name for r in result.ruleset.rules] == ["live"]
    assert result.disabled == ["off"]
    assert errors_of(tmp_path, "rules:\n  - {name: x, condition: foo == 1, enabled: false}\n")[0].startswith(
        "r.yaml:2:26: unknown name 'foo'")


def test_yaml_booleans_where_text_is_expected_say_to_quote(tmp_path: Path) -> None:
    assert errors_of(tmp_path, "rules:\n  - {name: off}\n") == [
        "r.yaml:2:12: name: expected text, got false (YAML reads unquoted off as false; write \"off\" for the text)"]


def test_lists_and_macros_are_shared_across_files(tmp_path: Path) -> None:
    common = write(tmp_path, "common.yaml", """
        lists:
          noisy_paths: [/health]
        macros:
          http_error: fields.status >= 500
          noisy: fields.path in noisy_paths
    """)
    rules = write(tmp_path, "rules.yaml", "rules:\n  - {name: r, condition: http_error and not noisy}\n")
    ruleset = load_rules([rules, common])
    assert [r.name for r in ruleset.rules] == ["r"]


def test_a_directory_stands_for_its_rule_files(tmp_path: Path) -> None:
    write(tmp_path, "b.yml", "rules:\n  - {name: b}\n")
    write(tmp_path, "a.yaml", "rules:\n  - {name: a}\n")
    write(tmp_path, "notes.txt", "not rules")
    ruleset = load_rules([str(tmp_path), str(tmp_path / "a.yaml")])  # a file named twice is read once
    assert [r.name for r in ruleset.rules] == ["a", "b"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert [e.message for e in check_rules([str(empty)])] == ["no rule files (*.yaml, *.yml) in this directory"]


def test_an_empty_file_is_no_rules(tmp_path: Path) -> None:
    assert load_rules([write(tmp_path, "r.yaml", "# nothing yet\n")]).rules == []


def test_windows_compile_to_the_model(tmp_path: Path) -> None:
    ruleset = load_rules([write(tmp_path, "r.yaml", """
        rules:
          - name: t
            threshold: {value: fields.ms, agg: p99, op: ">", limit: 500, within: 1m, group_by: fields.path}
          - name: s
            sequence: {steps: [event == "Exception", event == "Crash"], within: 10s, by: activity}
          - name: ab
            absence: {within: 500ms, group_by: [pid, process.name]}
    """)])
    t, s, ab = ruleset.rules
    assert isinstance(t.window, ThresholdWindow)
    assert (t.window.value_text, t.window.agg, t.window.op, t.window.limit, t.window.within_ns) == (
        "fields.ms", "p99", ">", 500.0, 60_000_000_000)
    assert t.window.group_by.names == ("fields.path",)
    assert isinstance(s.window, SequenceWindow)
    assert s.window.step_texts == ('event == "Exception"', 'event == "Crash"')
    assert s.window.by.names == ("activity",) and s.window.within_ns == 10_000_000_000
    assert isinstance(ab.window, AbsenceWindow) and ab.window.within_ns == 500_000_000
    assert ab.window.group_by.names == ("pid", "process.name")


def test_fingerprint_follows_behaviour_not_wording(tmp_path: Path) -> None:
    def fingerprint(text: str) -> str:
        return load_rules([write(tmp_path, "f.yaml", text)]).rules[0].fingerprint

    base = fingerprint("macros: {m: fields.a == 1}\nrules:\n  - {name: r, condition: m, cooldown: 1m}\n")
    moved = fingerprint("\n\nmacros: {m: fields.a == 1}\nrules:\n  - {name: r, condition: m, cooldown: 1m,"
                        " description: reworded}\n")
    other_macro = fingerprint("macros: {m: fields.a == 2}\nrules:\n  - {name: r, condition: m, cooldown: 1m}\n")
    other_cooldown = fingerprint("macros: {m: fields.a == 1}\nrules:\n  - {name: r, condition: m, cooldown: 2m}\n")
    assert base == moved
    assert len({base, other_macro, other_cooldown}) == 3
