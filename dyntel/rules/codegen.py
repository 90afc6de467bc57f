"""Code generation for conditions and value getters: a checked `ast` tree to the source of one Python function,
compiled once. See dyntel.rules.condition for the semantics the generated code keeps.
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from dyntel.event import Event
from dyntel.rules import runtime
from dyntel.rules.errors import RuleError
from dyntel.rules.language import (
    CMP_OPS,
    EVENT_NAMES,
    FOLD,
    FUNCTIONS,
    HELPER_FOR,
    LANGUAGE,
    MIRROR,
    NOT_IN_LANGUAGE,
    PROCESS_NAMES,
    Names,
    Parsed,
    boolish,
    describe,
    did_you_mean,
)


class LazyPart:
    """One conjunct of a condition for --explain, compiled the first time it is asked. Only explain reads these,
    so loading a rule set does not pay a compile() per conjunct (about half of all compiles)."""

    __slots__ = ("_code", "_function", "_gen")

    def __init__(self, gen: Generator, code: str) -> None:
        self._gen: Generator | None = gen
        self._code = code
        self._function: Callable[[Event], Any] | None = None

    def __call__(self, event: Event) -> bool:
        function = self._function
        if function is None:
            assert self._gen is not None
            function = self._function = self._gen.build(self._code).function
            self._gen = None
        return bool(function(event))



@dataclass(frozen=True, slots=True)
class Compiled:
    """A compiled condition or value getter, with what identifies it."""

    function: Callable[[Event], Any]
    source: str  # the generated Python, for debugging and --explain
    digest: str  # sha256 of the generated code and its constants: equal digests behave the same


class Value(NamedTuple):
    code: str
    const: Any = None
    is_const: bool = False
    is_list: bool = False  # a list literal or named list: `const` holds its items as a tuple
    # What the value reads, for the requirement derivation: ("event", NAME) for an event property (provider,
    # event, level, ...), ("fields", NAME) for one payload field read by name (fields.NAME, fields["NAME"]).
    reads: tuple[str, str] | None = None


# What a value that failed to check stands for; its error has been reported, so nothing more is said about it.
BAD = Value("None")


class Generator:
    """Checks one expression (with the macros it uses) and writes the Python for it."""

    def __init__(self, names: Names) -> None:
        self.names = names
        self.errors: list[RuleError] = []
        self.slots: dict[str, Any] = {}
        self.slot_reprs: list[str] = []
        self.uses_fields = False
        self._temps = 0
        self._macro_stack: list[str] = []

    # --- bookkeeping -------------------------------------------------------------------------------------------

    def fail(self, src: Parsed, node: ast.AST, message: str) -> None:
        self.errors.append(RuleError(src.position(node), message))

    def temp(self) -> str:
        self._temps += 1
        return f"_t{self._temps}"

    def slot(self, value: Any, fingerprint: str) -> str:
        name = f"_k{len(self.slots)}"
        self.slots[name] = value
        self.slot_reprs.append(fingerprint)
        return name

    def literal(self, value: Any) -> str:
        if value.__class__ is float and not math.isfinite(value):
            return self.slot(value, repr(value))
        return repr(value)

    def build(self, expr: str, wrap: str = "") -> Compiled:
        body = f"{wrap}({expr})" if wrap else expr
        header = "    f = e._fields\n    if f is None:\n        f = e.fields\n" if self.uses_fields else ""
        # `e._fields` first: the property costs as much again as the dict lookup it saves on every access
        source = f"def _condition(e):\n{header}    return {body}\n"
        namespace: dict[str, Any] = {**runtime.HELPERS, **self.slots, "__builtins__": {}}
        exec(compile(source, "<dyntel condition>", "exec"), namespace)
        digest = hashlib.sha256("\n".join([source, *self.slot_reprs]).encode()).hexdigest()
        return Compiled(namespace["_condition"], source, digest)

    # --- conditions (true or false) ----------------------------------------------------------------------------

    def boolean(self, node: ast.expr, src: Parsed) -> str:
        if isinstance(node, ast.BoolOp):
            op = " and " if isinstance(node.op, ast.And) else " or "
            return "(" + op.join(self.boolean(v, src) for v in node.values) + ")"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return f"(not {self.boolean(node.operand, src)})"
        if isinstance(node, ast.Compare):
            return self.compare(node, src)
        if isinstance(node, ast.Call):
            return self.call(node, src, want_boolean=True).code
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            return repr(node.value)
        if isinstance(node, ast.Name) and node.id in self.names.macros:
            return self.macro(node, src, want_boolean=True).code
        if isinstance(node, ast.Name) and node.id in self.names.lists:
            self.fail(src, node, f"'{node.id}' is a list, not a condition; test a value against it: "
                                 f"fields.x in {node.id}")
            return "False"
        if isinstance(node, ast.Name | ast.Attribute | ast.Subscript | ast.Constant | ast.UnaryOp
                      | ast.List | ast.Tuple):
            if self.value(node, src) is not BAD:
                self.fail(src, node, f"expected a condition (true or false), got the value {src.segment(node)!r}; "
                                     "compare it (== != < <= > >= in) or test it with exists(...)")
            return "False"
        self.reject(node, src)
        return "False"

    def reject(self, node: ast.AST, src: Parsed) -> None:
        what = NOT_IN_LANGUAGE.get(type(node), f"'{src.segment(node)}'")
        self.fail(src, node, f"{what} is not part of the condition language; expected {LANGUAGE}")

    def compare(self, node: ast.Compare, src: Parsed) -> str:
        operands = [node.left, *node.comparators]
        ops: list[str] = []
        for i, op in enumerate(node.ops):
            text = CMP_OPS.get(type(op))
            if text is None:
                word = "is not" if isinstance(op, ast.IsNot) else "is"
                # ast keeps no position for an operator: find the word between its two operands
                start = src.offset(operands[i], end=True)
                between = src.text[start: src.offset(operands[i + 1])]
                at = src.where.at(start + max(between.find("is"), 0))
                self.errors.append(RuleError(at, f"'{word}' is not part of the condition language; compare with "
                                                 "== or !=, or test a field with exists(...)"))
                return "False"
            ops.append(text)
        values = [self.value(o, src) for o in operands]
        # In a chain (0 < fields.x < 10) a middle operand is read once, into a temporary: its first pair assigns it
        # and the next reads it. A later pair only runs when the earlier ones were true, which read it.
        as_left, as_right = list(values), list(values)
        for i in range(1, len(values) - 1):
            v = values[i]
            if not v.is_const and not v.is_list:
                name = self.temp()
                as_right[i] = Value(f"({name} := {v.code})")
                as_left[i] = Value(name)
        pairs = [self.pair(op, as_left[i], as_right[i + 1], operands[i], operands[i + 1], src)
                 for i, op in enumerate(ops)]
        return pairs[0] if len(pairs) == 1 else "(" + " and ".join(pairs) + ")"

    def pair(self, op: str, left: Value, right: Value, lnode: ast.expr, rnode: ast.expr, src: Parsed) -> str:
        if left.is_list:
            self.fail(src, lnode, "a list can only be on the right of 'in' or 'not in'")
            return "False"
        if op in ("in", "not in"):
            return self.membership(op, left, right, rnode, src)
        if right.is_list:
            self.fail(src, rnode, f"a list can only be on the right of 'in' or 'not in', not of '{op}'")
            return "False"
        if left.is_const and not right.is_const:
            left, right, op = right, left, MIRROR[op]
        if left.is_const:
            return repr(FOLD[op](left.const, right.const))
        if not right.is_const:
            return f"{HELPER_FOR[op]}({left.code}, {right.code})"
        c = right.const
        if op == "==":
            return f"({left.code} == {self.literal(c)})"
        t = self.temp()
        if op == "!=":
            return f"(({t} := {left.code}) is not None and {t} != {self.literal(c)})"
        kind = "_str" if c.__class__ is str else "_bytes" if c.__class__ is bytes else None
        guard = f"({t} := {left.code}).__class__ is {kind}" if kind else f"({t} := {left.code}).__class__ in _NUM"
        return f"({guard} and {t} {op} {self.literal(c)})"

    def membership(self, op: str, left: Value, right: Value, rnode: ast.expr, src: Parsed) -> str:
        if right.is_list:
            items = frozenset(x for x in right.const if x.__hash__ is not None)
            if left.is_const:
                return repr(FOLD[op](left.const, items))
            s = self.slot(items, "set:" + ",".join(sorted(repr(x) for x in items)))
            t = self.temp()
            if items and all(x.__class__ is str for x in items):
                # The usual list, of text: only text can be in it, and anything else that is there at all
                # (hashable, not missing) is certainly not in it; the class test is the cheapest guard.
                if op == "in":
                    return f"(({t} := {left.code}).__class__ is _str and {t} in {s})"
                return (f"({t} not in {s} if ({t} := {left.code}).__class__ is _str else "
                        f"({t} is not None and {t}.__hash__ is not None))")
            if op == "in":
                return f"(({t} := {left.code}).__hash__ is not None and {t} in {s})"
            return f"(({t} := {left.code}) is not None and {t}.__hash__ is not None and {t} not in {s})"
        if right.is_const:
            c = right.const
            if c.__class__ not in (str, bytes):
                self.fail(src, rnode, f"the right of '{op}' must be a list, a named list or text (for a "
                                      f"substring), got {describe(c)}")
                return "False"
            if left.is_const:
                return repr(FOLD[op](left.const, c))
            t = self.temp()
            kind = "_str" if c.__class__ is str else "_bytes"
            return f"(({t} := {left.code}).__class__ is {kind} and {t} {op} {self.literal(c)})"
        return f"{HELPER_FOR[op]}({left.code}, {right.code})"

    # --- values ------------------------------------------------------------------------------------------------

    def value(self, node: ast.expr, src: Parsed) -> Value:
        if isinstance(node, ast.Constant):
            v = node.value
            if v is None:
                self.fail(src, node, "None is not a value in conditions; to test for a missing field write "
                                     "not exists(fields.x)")
                return BAD
            if isinstance(v, str | int | float | bytes):
                return Value(self.literal(v), v, is_const=True)
            self.fail(src, node, f"{src.segment(node)} is not a value conditions know; expected text, a number, "
                                 "True or False")
            return BAD
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            inner = node.operand
            if (isinstance(inner, ast.Constant) and isinstance(inner.value, int | float)
                    and not isinstance(inner.value, bool)):
                v = -inner.value if isinstance(node.op, ast.USub) else inner.value
                return Value(self.literal(v), v, is_const=True)
            self.fail(src, node, "a sign (- or +) can only stand before a number")
            return BAD
        if isinstance(node, ast.Name):
            return self.name(node, src)
        if isinstance(node, ast.Attribute | ast.Subscript):
            return self.access(node, src)
        if isinstance(node, ast.Call):
            return self.call(node, src, want_boolean=False)
        if isinstance(node, ast.List | ast.Tuple):
            items = []
            for elt in node.elts:
                item = self.value(elt, src)
                if item.is_const:
                    items.append(item.const)
                elif item is not BAD:
                    self.fail(src, elt, "a list literal holds constants only (text, numbers); to compare "
                                        "with several fields, join comparisons with 'or'")
            return Value("None", tuple(items), is_list=True)
        if isinstance(node, ast.BoolOp | ast.Compare) or (isinstance(node, ast.UnaryOp)
                                                         and isinstance(node.op, ast.Not)):
            self.fail(src, node, f"expected a value, got the condition {src.segment(node)!r}")
            return BAD
        self.reject(node, src)
        return BAD

    def name(self, node: ast.Name, src: Parsed) -> Value:
        n = node.id
        if n in EVENT_NAMES:
            return Value(EVENT_NAMES[n], reads=("event", n))
        if n in self.names.macros:
            return self.macro(node, src, want_boolean=False)
        if n in self.names.lists:
            return Value("None", self.names.lists[n].values, is_list=True)
        if n in ("fields", "process"):
            example = 'fields.status or fields["http.status"]' if n == "fields" else "process.name"
            self.fail(src, node, f"'{n}' needs a name after it, like {example}")
            return BAD
        self.fail(src, node, self.unknown_name(n))
        return BAD

    def unknown_name(self, n: str) -> str:
        hint = {"true": "True", "false": "False", "null": "exists()", "none": "exists()", "None": "exists()"}.get(n)
        if hint is not None:
            suggestion = f" (did you mean {hint}?)"
        else:
            known = [*EVENT_NAMES, "fields", "process", *self.names.macros, *self.names.lists, *FUNCTIONS]
            suggestion = did_you_mean(n, known)
        return (f"unknown name '{n}'; expected an event property ({', '.join(EVENT_NAMES)}), fields.NAME, "
                f"process.NAME, a list or a macro{suggestion}")

    def macro(self, node: ast.Name, src: Parsed, want_boolean: bool) -> Value:
        name = node.id
        if name in self._macro_stack:
            chain = " -> ".join([*self._macro_stack[self._macro_stack.index(name):], name])
            self.fail(src, node, f"macro '{name}' uses itself: {chain}")
            return Value("False") if want_boolean else BAD
        macro = self.names.macros[name]
        if macro.parsed is None:
            return Value("False") if want_boolean else BAD  # its own error is reported where it is defined
        tree = macro.parsed.tree
        if not (isinstance(tree, ast.Name) and tree.id in self.names.macros) and boolish(tree) != want_boolean:
            # Said where the macro is used: the macro itself is fine, this use of it is not.
            if want_boolean:
                self.fail(src, node, f"macro '{name}' is a value ({macro.text.strip()}), not a condition; compare "
                                     f"it: {name} == ...")
                return Value("False")
            self.fail(src, node, f"macro '{name}' is a condition ({macro.text.strip()}), not a value")
            return BAD
        self._macro_stack.append(name)
        try:
            if want_boolean:
                return Value(self.boolean(macro.parsed.tree, macro.parsed))
            return self.value(macro.parsed.tree, macro.parsed)
        finally:
            self._macro_stack.pop()

    def access(self, node: ast.Attribute | ast.Subscript, src: Parsed) -> Value:
        path: list[str | int] = []
        subscripted = False
        n: ast.expr = node
        while True:
            if isinstance(n, ast.Attribute):
                path.append(n.attr)
                n = n.value
            elif isinstance(n, ast.Subscript):
                key = self.subscript_key(n, src)
                if key is None:
                    return BAD
                path.append(key)
                subscripted = True
                n = n.value
            else:
                break
        path.reverse()
        if not isinstance(n, ast.Name):
            self.fail(src, node, "only fields and process have parts (fields.NAME, process.name); "
                                 f"{src.segment(n)!r} has none")
            return BAD
        root = n.id
        if root == "fields":
            if isinstance(path[0], int):
                self.fail(src, node, 'fields[...] takes a field name in quotes, like fields["http.status"]')
                return BAD
            self.uses_fields = True
            if len(path) == 1:
                return Value(f"f.get({path[0]!r})", reads=("fields", path[0]))
            return Value(f"_dig(f, {self.literal(tuple(path))})")
        if root == "process":
            if len(path) != 1 or subscripted or path[0] not in PROCESS_NAMES:
                shown = ".".join(str(p) for p in path)
                self.fail(src, node, f"process has {', '.join('process.' + p for p in PROCESS_NAMES)}; "
                                     f"not process.{shown}{did_you_mean(str(path[0]), PROCESS_NAMES)}")
                return BAD
            return Value(f"_proc_{path[0]}(e)")
        if root in EVENT_NAMES:
            self.fail(src, node, f"'{root}' is a property of the event and has no parts; payload fields are "
                                 f"read as fields.{path[0]}")
        elif root in self.names.macros or root in self.names.lists:
            kind = "macro" if root in self.names.macros else "list"
            self.fail(src, node, f"'{root}' is a {kind} and has no parts")
        elif isinstance(node, ast.Attribute | ast.Subscript):
            self.fail(src, node, f"attribute access is only for fields.NAME and process.NAME; '{root}' is not a "
                                 f"name conditions know{did_you_mean(root, ['fields', 'process'])}")
        return BAD

    def subscript_key(self, node: ast.Subscript, src: Parsed) -> str | int | None:
        s = node.slice
        if isinstance(s, ast.UnaryOp) and isinstance(s.op, ast.USub) and isinstance(s.operand, ast.Constant):
            n = s.operand.value
            if isinstance(n, int) and not isinstance(n, bool):
                return -n
        if isinstance(s, ast.Constant):
            key = s.value
            if isinstance(key, str) or (isinstance(key, int) and not isinstance(key, bool)):
                return key
        self.fail(src, s, 'expected a field name in quotes (fields["http.status"]) or a list index (fields.a[0])')
        return None

    # --- functions -------------------------------------------------------------------------------------------------

    def call(self, node: ast.Call, src: Parsed, want_boolean: bool) -> Value:
        none = Value("False") if want_boolean else BAD
        func = node.func
        if isinstance(func, ast.Attribute):
            hint = f"; write {func.attr}({src.segment(func.value)}, ...)" if func.attr in FUNCTIONS else ""
            self.fail(src, node, f"method calls are not part of the condition language{hint}; the functions are "
                                 + ", ".join(FUNCTIONS))
            return none
        if not isinstance(func, ast.Name):
            self.reject(node, src)
            return none
        name = func.id
        spec = FUNCTIONS.get(name)
        if spec is None:
            self.fail(src, func, f"unknown function '{name}'; expected one of {', '.join(FUNCTIONS)}"
                                 f"{did_you_mean(name, FUNCTIONS)}")
            return none
        if node.keywords:
            self.fail(src, node.keywords[0].value, f"{name}() takes its arguments by position: "
                                                   f"{name}({', '.join(spec.params)})")
            return none
        if any(isinstance(a, ast.Starred) for a in node.args) or len(node.args) != len(spec.params):
            self.fail(src, node, f"{name}() takes {len(spec.params)} argument{'s' if len(spec.params) > 1 else ''} "
                                 f"({', '.join(spec.params)}), got {len(node.args)}")
            return none
        if spec.boolean and not want_boolean:
            self.fail(src, node, f"expected a value, got {name}(...), which is true or false")
            return none
        if not spec.boolean and want_boolean:
            self.fail(src, node, f"expected a condition (true or false), got the value {name}(...); compare it, "
                                 f"like {name}(...) == ...")
            return none
        if name == "tag":
            return self.field_tag(node.args[0], src)
        subject = self.value(node.args[0], src)
        if subject.is_list:
            self.fail(src, node.args[0], f"the first argument of {name}() is a value, not a list")
            return none
        if name == "exists":
            if subject.is_const:
                self.fail(src, node.args[0], "exists() takes something read from the event, like exists(fields.user)")
                return none
            return Value(f"({subject.code} is not None)")
        if name == "elapsed_ms":
            end = self.value(node.args[1], src)
            if end is BAD or end.is_list:
                self.fail(src, node.args[1], "the second argument of elapsed_ms() is a time, not a list")
                return none
            return Value(f"_elapsed_ms({subject.code}, {end.code})")
        if name in ("lower", "upper", "len"):
            t = self.temp()
            if name == "len":
                return Value(f"(_len({t}) if ({t} := {subject.code}).__class__ in _SIZED else None)")
            return Value(f"({t}.{name}() if ({t} := {subject.code}).__class__ is _str else None)")
        return Value(self.string_test(name, subject, node.args[1], src))

    def field_tag(self, arg: ast.expr, src: Parsed) -> Value:
        """tag(fields.x): the field's EventHeader tag, read from the event's schema (see runtime.field_tag)."""
        path: list[str | int] = []
        n: ast.expr = arg
        while isinstance(n, ast.Attribute | ast.Subscript):
            if isinstance(n, ast.Attribute):
                path.append(n.attr)
            else:
                key = self.subscript_key(n, src)
                if key is None:
                    return BAD
                path.append(key)
            n = n.value
        path.reverse()
        if not (isinstance(n, ast.Name) and n.id == "fields" and path and isinstance(path[0], str)):
            self.fail(src, arg, "tag() takes a payload field, like tag(fields.status) or tag(fields.s.inner); "
                                f"got {src.segment(arg)!r} (the event's own tag is read as tag)")
            return BAD
        return Value(f"_field_tag(e.schema, {self.literal(tuple(path))})")

    def string_test(self, name: str, subject: Value, arg: ast.expr, src: Parsed) -> str:
        pattern = self.value(arg, src)
        if pattern is BAD:
            return "False"
        texts: tuple[str, ...] | None = None
        if name == "contains" and pattern.is_const and not isinstance(pattern.const, str):
            return f"_contains({subject.code}, {self.literal(pattern.const)})"  # a number in a list of numbers
        if pattern.is_list or pattern.is_const:
            items = pattern.const if pattern.is_list else (pattern.const,)
            if not all(isinstance(x, str) for x in items) or not items:
                what = "a list of text" if pattern.is_list else describe(pattern.const)
                self.fail(src, arg, f"{name}() needs text as its {FUNCTIONS[name].params[1]}, got {what}")
                return "False"
            texts = tuple(items)
            if pattern.is_list and name in ("contains", "icontains"):
                self.fail(src, arg, f"{name}() takes one piece of text; for several, join {name}() tests with "
                                    "'or'")
                return "False"
        t = self.temp()
        subject_code = f"({t} := {subject.code})"
        if name in ("glob", "matches"):
            if texts is None:
                self.fail(src, arg, f"the {FUNCTIONS[name].params[1]} of {name}() must be written in the rule "
                                    "(text or a list), not read from the event")
                return "False"
            if name == "glob":
                regex = "|".join(f"(?:{fnmatch.translate(p)})" for p in texts)
            else:
                regex = "|".join(f"(?:{p})" for p in texts) if len(texts) > 1 else texts[0]
            try:
                compiled = re.compile(regex)
            except re.error as e:
                self.fail(src, arg, f"bad regular expression for matches(): {e}")
                return "False"
            r = self.slot(compiled, f"re:{compiled.pattern}")
            call = "match" if name == "glob" else "search"
            return f"({subject_code}.__class__ is _str and {r}.{call}({t}) is not None)"
        if texts is None or subject.is_const:
            other = pattern.code if texts is None else self.literal(pattern.const)
            return f"_{name}({subject.code}, {other})"
        if name in ("startswith", "endswith"):
            p = self.literal(texts[0]) if pattern.is_const else self.slot(texts, "tuple:" + repr(texts))
            return f"({subject_code}.__class__ is _str and {t}.{name}({p}))"
        if name == "contains":
            return f"({subject_code}.__class__ is _str and {self.literal(texts[0])} in {t})"
        return f"({subject_code}.__class__ is _str and {self.literal(texts[0].lower())} in {t}.lower())"
