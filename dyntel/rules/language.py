"""The condition language's definition: what a condition may read and call, the operator tables, the lists and
macros it can name, and parsing (with positions) into a checked-later `ast` tree. The code generator
(dyntel.rules.codegen) and the requirement derivation (dyntel.rules.requirements) both read these tables, so the
two cannot disagree on what an operator is.
"""

from __future__ import annotations

import ast
import difflib
import keyword
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from dyntel.rules import runtime
from dyntel.rules.errors import RuleError
from dyntel.rules.model import Position
from dyntel.rules.yaml_read import TextMap

# What a condition reads from the event without `fields.`, and the code that reads it from `e`.
EVENT_NAMES: dict[str, str] = {
    "provider": "e.provider", "event": "e.name", "level": "e.level", "keyword": "e.keyword",
    "opcode": "e.opcode", "id": "e.id", "version": "e.version", "tag": "e.tag",
    "activity": "_uuid(e.activity)", "related_activity": "_uuid(e.related_activity)",
    "pid": "e.pid", "tid": "e.tid", "cpu": "e.cpu", "time": "e.time", "source": "e.source",
}
PROCESS_NAMES = ("name", "exe", "cmdline", "container")


class FunctionSpec(NamedTuple):
    params: tuple[str, ...]
    boolean: bool  # true/false (a condition) rather than a value


FUNCTIONS: dict[str, FunctionSpec] = {
    "startswith": FunctionSpec(("value", "prefix"), True),
    "endswith": FunctionSpec(("value", "suffix"), True),
    "contains": FunctionSpec(("value", "part"), True),
    "icontains": FunctionSpec(("value", "part"), True),
    "glob": FunctionSpec(("value", "pattern"), True),
    "matches": FunctionSpec(("value", "regex"), True),
    "exists": FunctionSpec(("value",), True),
    "lower": FunctionSpec(("value",), False),
    "upper": FunctionSpec(("value",), False),
    "len": FunctionSpec(("value",), False),
    "tag": FunctionSpec(("field",), False),
    "elapsed_ms": FunctionSpec(("start", "end"), False),
}

# Names a list or macro cannot take: they would shadow what conditions already read.
RESERVED = frozenset(EVENT_NAMES) | {"fields", "process"} | frozenset(FUNCTIONS) | frozenset(keyword.kwlist)

LANGUAGE = ("comparisons (== != < <= > >= in, not in) joined by and, or, not, and the functions "
             + ", ".join(FUNCTIONS))

CMP_OPS: dict[type[ast.cmpop], str] = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">",
                                        ast.GtE: ">=", ast.In: "in", ast.NotIn: "not in"}
MIRROR = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
HELPER_FOR = {"==": "_eq", "!=": "_ne", "<": "_lt", "<=": "_le", ">": "_gt", ">=": "_ge", "in": "_in",
               "not in": "_not_in"}
FOLD: dict[str, Callable[[Any, Any], bool]] = {
    "==": runtime.eq, "!=": runtime.ne, "<": runtime.lt, "<=": runtime.le, ">": runtime.gt, ">=": runtime.ge,
    "in": runtime.in_, "not in": runtime.not_in}

NOT_IN_LANGUAGE: dict[type[ast.AST], str] = {
    ast.Lambda: "a lambda", ast.ListComp: "a comprehension", ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension", ast.GeneratorExp: "a comprehension", ast.BinOp: "arithmetic",
    ast.IfExp: "an if-else expression", ast.Dict: "a mapping literal", ast.Set: "a set literal",
    ast.JoinedStr: "an f-string", ast.FormattedValue: "an f-string", ast.NamedExpr: "':='",
    ast.Starred: "'*'", ast.Slice: "a slice", ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield",
}


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass(frozen=True, slots=True)
class NamedList:
    name: str
    values: tuple[Any, ...]
    position: Position


@dataclass(slots=True)
class Macro:
    name: str
    text: str
    where: TextMap
    position: Position
    parsed: Parsed | None = None  # None until parsed, or when the text is not a valid expression


@dataclass(slots=True)
class Names:
    """The lists and macros every condition can use (shared by all loaded files)."""

    lists: dict[str, NamedList] = field(default_factory=dict)
    macros: dict[str, Macro] = field(default_factory=dict)


class Parsed(NamedTuple):
    tree: ast.expr
    text: str
    where: TextMap

    def position(self, node: ast.AST) -> Position:
        return self.where.at(self.offset(node))

    def offset(self, node: ast.AST, end: bool = False) -> int:
        """The character offset of a node in the text. The text is parsed as one line (line breaks read as
        spaces), so a node's offset in the text is its column; ast counts it in UTF-8 bytes."""
        col = getattr(node, "end_col_offset" if end else "col_offset", 0) or 0
        return len(self.text.encode("utf-8")[:col].decode("utf-8", errors="ignore"))

    def segment(self, node: ast.AST) -> str:
        """The node's text, on one line (a line break can only be whitespace between tokens here, so the text
        still parses as an expression on its own)."""
        text = self.text[self.offset(node): self.offset(node, end=True)]
        return text.replace("\r", " ").replace("\n", " ").strip()


def parse(text: str, where: TextMap) -> tuple[Parsed | None, list[RuleError]]:
    """The expression in `text`, or the syntax error with its position."""
    if not text.strip():
        return None, [RuleError(where.at(0), "empty condition: expected an expression like fields.status >= 500")]
    # Line breaks (from YAML block scalars) read as spaces: Python would otherwise end the expression at the first
    # one, and keeping every character at its offset keeps positions exact.
    one_line = text.replace("\r", " ").replace("\n", " ")
    try:
        tree = ast.parse(one_line, mode="eval")
    except SyntaxError as e:
        end = len(one_line.rstrip())
        offset = min((e.offset - 1) if e.offset else end, end)
        return None, [RuleError(where.at(offset), _syntax_message(e, one_line, offset))]
    except ValueError as e:  # a NUL character
        return None, [RuleError(where.at(0), f"syntax error in condition: {e}")]
    return Parsed(tree.body, text, where), []


def _syntax_message(e: SyntaxError, text: str, offset: int) -> str:
    message = f"syntax error in condition: {e.msg}"
    rest = text[offset:]
    if not rest.strip() and e.msg == "invalid syntax":
        message = "syntax error in condition: it ends too early"
    if rest.startswith("&&") or " && " in text:
        message += "; write 'and' instead of '&&'"
    elif rest.startswith("||") or " || " in text:
        message += "; write 'or' instead of '||'"
    elif re.search(r"(?<![=!<>])=(?!=)", text) and "Maybe you meant" not in message:
        message += "; compare with '==' ('=' assigns)"
    elif rest.startswith("!") and not rest.startswith("!="):
        message += "; write 'not' instead of '!'"
    return message



def describe(v: Any) -> str:
    if isinstance(v, bool):
        return f"{v}"
    if isinstance(v, int | float):
        return f"the number {v}"
    if isinstance(v, bytes):
        return "bytes"
    return repr(v)


def boolish(node: ast.expr) -> bool:
    """Whether an expression is written as a condition rather than a value (for checking a macro on its own)."""
    if isinstance(node, ast.BoolOp | ast.Compare):
        return True
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, ast.Not)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        spec = FUNCTIONS.get(node.func.id)
        return spec is None or spec.boolean
    return isinstance(node, ast.Constant) and isinstance(node.value, bool)
