"""Rule files as plain Python values that remember where each value was written.

pyyaml's composer gives nodes with marks; this turns them into dicts, lists and scalars, and keeps, per path
(("rules", 2, "condition")), the file position of the value and of the key naming it. Every later stage reports
errors through these paths, so it never needs to see YAML again. Mapping keys are taken as their raw text
(`on:` is the key "on", not YAML 1.1's true), and a key written twice is an error instead of silently winning.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from dyntel.rules.errors import RuleError
from dyntel.rules.model import Position

YamlPath = tuple[str | int, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"
# libyaml composes about 30 times faster and gives the same nodes and marks (character offsets, as the pure-Python
# composer); its error messages differ, so a file it refuses is composed again by the pure-Python one, whose
# messages the docs and tests quote.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Aliases can make a small file expand to a huge tree; no rule file comes close to this many values.
_MAX_VALUES = 1_000_000


@dataclass(slots=True)
class YamlDoc:
    file: str
    text: str
    value: Any
    positions: dict[YamlPath, Position] = field(default_factory=dict)
    key_positions: dict[YamlPath, Position] = field(default_factory=dict)
    nodes: dict[YamlPath, Node] = field(default_factory=dict)

    def at(self, path: YamlPath) -> Position:
        """Where the value at `path` starts; for a path that was not written (a missing key), its nearest parent."""
        while path not in self.positions and path:
            path = path[:-1]
        return self.positions.get(path, Position(self.file, 1, 1))

    def key_at(self, path: YamlPath) -> Position:
        """Where the key naming the value at `path` is (the value's own position for list items and the root)."""
        return self.key_positions.get(path) or self.at(path)

    def text_map(self, path: YamlPath) -> TextMap:
        """Positions of the characters of the string value at `path`, for errors inside a condition."""
        node = self.nodes.get(path)
        if isinstance(node, ScalarNode) and isinstance(node.value, str):
            chars = scalar_char_positions(self.text, node)
            start = _pos(self.file, node.start_mark)
            if chars is not None:
                return TextMap(node.value, self.file, chars, start)
            return TextMap(node.value, self.file, None, start)
        return TextMap("", self.file, None, self.at(path))


class TextMap:
    """Maps offsets in a piece of text (a condition) to file positions.

    When the text could not be traced back character by character (an escape in a quoted string the tracing does
    not follow), every offset maps to the start of the scalar: still the right line.
    """

    __slots__ = ("_chars", "_fallback", "file", "text")

    def __init__(self, text: str, file: str, chars: list[tuple[int, int]] | None, fallback: Position) -> None:
        self.text = text
        self.file = file
        self._chars = chars
        self._fallback = fallback

    @classmethod
    def standalone(cls, text: str, file: str = "<condition>") -> TextMap:
        """A text that is its own file: line and column inside the text."""
        chars = []
        line, col = 1, 1
        for ch in text:
            chars.append((line, col))
            if ch == "\n":
                line, col = line + 1, 1
            else:
                col += 1
        return cls(text, file, chars, Position(file, 1, 1))

    def at(self, offset: int) -> Position:
        chars = self._chars
        if not chars:
            return self._fallback
        if offset < len(chars):
            line, col = chars[max(offset, 0)]
            return Position(self.file, line, col)
        line, col = chars[-1]
        return Position(self.file, line, col + 1 + offset - len(chars))

    def at_line_col(self, lineno: int, col: int) -> Position:
        """The position of 1-based line `lineno`, 0-based character column `col` of the text."""
        lines = self.text.split("\n")
        lineno = min(max(lineno, 1), len(lines))
        offset = sum(len(s) + 1 for s in lines[: lineno - 1]) + col
        return self.at(offset)


def _pos(file: str, mark: yaml.Mark) -> Position:
    return Position(file, mark.line + 1, mark.column + 1)


def yaml_error_message(e: yaml.MarkedYAMLError) -> str:
    problem = e.problem or "not valid YAML"
    message = f"YAML syntax error: {problem}"
    if e.context:
        cm = e.context_mark
        where = f" that starts at line {cm.line + 1}, column {cm.column + 1}" if cm is not None else ""
        message += f", {e.context}{where}"
    if "mapping values are not allowed" in problem:
        message += " (a value holding ': ' needs quotes, or a block: `condition: >-` and the text on the next lines)"
    return message


def read_yaml(file: str, text: str) -> tuple[YamlDoc | None, list[RuleError]]:
    """The document in `text` (named `file` in positions), or None when it is not YAML; and what was wrong."""
    try:
        try:
            root = yaml.compose(text, Loader=_FAST_LOADER)
        except yaml.YAMLError:
            if _FAST_LOADER is yaml.SafeLoader:
                raise
            root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = _pos(file, mark) if mark is not None else Position(file, 1, 1)
        return None, [RuleError(where, yaml_error_message(e))]
    except yaml.YAMLError as e:
        return None, [RuleError(Position(file, 1, 1), f"YAML syntax error: {e}")]
    reader = _Reader(file)
    doc = YamlDoc(file, text, None)
    if root is not None:
        doc.value = reader.convert(root, (), doc)
    return doc, reader.errors


class _Reader:
    def __init__(self, file: str) -> None:
        self.file = file
        self.errors: list[RuleError] = []
        self.constructor = SafeConstructor()
        self.active: set[int] = set()
        self.count = 0

    def error(self, mark: yaml.Mark, message: str) -> None:
        self.errors.append(RuleError(_pos(self.file, mark), message))

    def convert(self, node: Node, path: YamlPath, doc: YamlDoc) -> Any:
        self.count += 1
        if self.count > _MAX_VALUES:
            if self.count == _MAX_VALUES + 1:
                self.error(node.start_mark, f"more than {_MAX_VALUES} values (aliases expanding too far?)")
            return None
        doc.positions[path] = _pos(self.file, node.start_mark)
        doc.nodes[path] = node
        if isinstance(node, ScalarNode):
            try:
                return self.constructor.construct_object(node)
            except (ConstructorError, ValueError) as e:
                self.error(node.start_mark, f"cannot read this value ({node.tag}): {e}")
                return None
        if id(node) in self.active:
            self.error(node.start_mark, "a YAML alias refers to the collection it is in")
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self.convert(item, (*path, i), doc) for i, item in enumerate(node.value)]
            assert isinstance(node, MappingNode)
            return self._mapping(node, path, doc)
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: MappingNode, path: YamlPath, doc: YamlDoc) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first: dict[str, yaml.Mark] = {}
        merges: list[Node] = []
        for key, value in node.value:
            if key.tag == _MERGE_TAG:
                merges.append(value)
                continue
            if not isinstance(key, ScalarNode):
                self.error(key.start_mark, "a key must be a name, not a list or a mapping")
                continue
            name = str(key.value)
            if name in first:
                m = first[name]
                self.error(key.start_mark,
                           f"duplicate key '{name}' (first at line {m.line + 1}, column {m.column + 1})")
                continue
            first[name] = key.start_mark
            doc.key_positions[(*path, name)] = _pos(self.file, key.start_mark)
            out[name] = self.convert(value, (*path, name), doc)
        # `<<: *defaults` fills in what the mapping does not say itself; its values keep the anchor's positions.
        for merge in merges:
            for source in (merge.value if isinstance(merge, SequenceNode) else [merge]):
                if not isinstance(source, MappingNode):
                    self.error(source.start_mark, "`<<` merges a mapping (or a list of mappings) into this one")
                    continue
                for key, value in source.value:
                    if isinstance(key, ScalarNode) and str(key.value) not in out and key.tag != _MERGE_TAG:
                        name = str(key.value)
                        doc.key_positions[(*path, name)] = _pos(self.file, key.start_mark)
                        out[name] = self.convert(value, (*path, name), doc)
        return out


# --- tracing a scalar's characters back to the file ---------------------------------------------------------------

_SIMPLE_ESCAPES = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f",
                   "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85", "_": "\xa0",
                   "L": "\u2028", "P": "\u2029"}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}

Char = tuple[str, tuple[int, int]]


def _raw_lines(src: str, node: ScalarNode) -> Iterator[list[Char]]:
    """The scalar's source characters, line by line, each with its 1-based (line, column)."""
    line, col = node.start_mark.line + 1, node.start_mark.column + 1
    current: list[Char] = []
    for ch in src[node.start_mark.index: node.end_mark.index]:
        if ch == "\n":
            yield current
            current = []
            line, col = line + 1, 1
            continue
        current.append((ch, (line, col)))
        col += 1
    yield current


def _fold(lines: list[list[Char]], joined: set[int]) -> list[Char]:
    """YAML's flow folding: one line break is a space, each further empty line a newline; `joined` lists the lines
    that end in an escaped line break (no space)."""
    out: list[Char] = []
    empties = 0
    for i, line in enumerate(lines):
        if i > 0:
            while line and line[0][0] in " \t":
                line = line[1:]
        if i < len(lines) - 1 and i not in joined:
            while line and line[-1][0] in " \t":
                line = line[:-1]
        if i > 0 and not line and i < len(lines) - 1:
            empties += 1
            continue
        if i > 0:
            where = out[-1][1] if out else line[0][1] if line else (0, 0)
            if empties:
                out.extend(("\n", where) for _ in range(empties))
            elif (i - 1) not in joined:
                out.append((" ", where))
            empties = 0
        out.extend(line)
    return out


def _unescape_double(lines: list[list[Char]]) -> tuple[list[list[Char]], set[int]]:
    result: list[list[Char]] = []
    joined: set[int] = set()
    for n, line in enumerate(lines):
        out: list[Char] = []
        i = 0
        while i < len(line):
            ch, where = line[i]
            if ch != "\\":
                out.append((ch, where))
                i += 1
                continue
            if i + 1 >= len(line):
                joined.add(n)
                break
            nxt = line[i + 1][0]
            if nxt in _SIMPLE_ESCAPES:
                out.append((_SIMPLE_ESCAPES[nxt], where))
                i += 2
            elif nxt in _HEX_ESCAPES:
                width = _HEX_ESCAPES[nxt]
                digits = "".join(c for c, _ in line[i + 2: i + 2 + width])
                try:
                    out.append((chr(int(digits, 16)), where))
                except ValueError:
                    out.append(("\ufffd", where))
                i += 2 + width
            else:
                out.append((nxt, where))
                i += 2
        result.append(out)
    return result, joined


def _block(src: str, node: ScalarNode) -> list[Char] | None:
    lines = list(_raw_lines(src, node))[1:]  # the first line holds the `|` or `>` header
    indent = None
    for line in lines:
        text = "".join(c for c, _ in line)
        if text.strip():
            indent = len(text) - len(text.lstrip(" "))
            break
    if indent is None:
        return None
    body = [line[indent:] for line in lines]
    while body and not body[-1]:
        body.pop()
    out: list[Char] = []
    for i, line in enumerate(body):
        if i > 0:
            prev = body[i - 1]
            where = prev[-1][1] if prev else line[0][1] if line else (0, 0)
            folds = (node.style == ">" and prev and line and prev[0][0] not in " \t" and line[0][0] not in " \t")
            if folds:
                out.append((" ", where))
            elif node.style == ">" and not prev and i >= 2 and body[i - 2] and line:
                pass  # folded: an empty line between two text lines is itself the newline
            else:
                out.append(("\n", where))
        out.extend(line)
    return out


def scalar_char_positions(src: str, node: ScalarNode) -> list[tuple[int, int]] | None:
    """(line, column) of each character of the scalar's value, or None when tracing it back failed."""
    style = node.style or None  # libyaml says "" for plain
    chars: list[Char] | None
    if style in ("|", ">"):
        chars = _block(src, node)
        if chars is None:
            return None
        built = "".join(c for c, _ in chars)
        if built.rstrip("\n") != str(node.value).rstrip("\n"):
            return None
        positions = [p for _, p in chars]
        while len(positions) < len(node.value):
            positions.append(positions[-1] if positions else (node.start_mark.line + 1, node.start_mark.column + 1))
        return positions
    lines = list(_raw_lines(src, node))
    joined: set[int] = set()
    if style in ("'", '"'):
        if not lines or not lines[0] or not lines[-1]:
            return None
        lines[0] = lines[0][1:]
        lines[-1] = lines[-1][:-1]
        if style == '"':
            lines, joined = _unescape_double(lines)
        else:
            lines = [_unquote_single(line) for line in lines]
    chars = _fold(lines, joined)
    if "".join(c for c, _ in chars) != node.value:
        return None
    return [p for _, p in chars]


def _unquote_single(line: list[Char]) -> list[Char]:
    out: list[Char] = []
    i = 0
    while i < len(line):
        out.append(line[i])
        i += 2 if line[i][0] == "'" and i + 1 < len(line) and line[i + 1][0] == "'" else 1
    return out
