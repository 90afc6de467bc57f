"""The import graph of the dyntel package holds the house rules (docs/architecture.md):

- no import cycle between modules, nor between subpackages;
- every import goes to the same layer or a lower one (the table below; a module not placed in it fails, so a new
  subpackage or top-level module has to say where it stands);
- decoders do not import sources; sources do not import the rules, the engine or the actions.

Every import counts, wherever it is written: at module level, inside a function (a lazy import hides a cycle, it
does not remove it), under `if TYPE_CHECKING:`, relative or absolute, `from dyntel.x import name` where `name` is a
submodule (an edge to that submodule), and a module named by a string literal in a module that calls
`importlib.import_module` (the registries of readers, verbs and actions load their modules that way).
"""

from __future__ import annotations

import ast
import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import dyntel

PACKAGE = "dyntel"
PACKAGE_DIR = Path(dyntel.__file__).resolve().parent
ROOT = PACKAGE_DIR.parent

# Low to high: a module imports only from its own layer or a lower one. Keys are the subpackages and the top-level
# modules of dyntel ("" is dyntel/__init__.py). Names not yet in the tree may stand here (they are placed in
# advance); a name in the tree but not here fails test_every_module_is_placed.
LAYER_NAMES = ("base", "decoders", "sources", "capture/otel", "actions", "rules", "engine", "runtime", "service",
               "applications")
LAYERS: dict[str, int] = {
    # 0 base: neutral modules every layer may use
    "": 0, "errors": 0, "event": 0, "event_json": 0, "value_format": 0, "eventheader_text": 0, "source_types": 0,
    "queues": 0, "batch_queue": 0, "logs": 0, "progress": 0, "firing": 0, "privileges": 0, "security": 0,
    "formatting": 0, "options": 0, "units": 0,
    # 1 turning bytes into events, and events into bytes
    "decoders": 1, "encoders": 1,
    # 2 where event bytes come from
    "sources": 2,
    # 3 what actions and rules use: process capture, OpenTelemetry wire formats and transports
    "capture": 3, "otel": 3,
    # 4 .. 8
    "actions": 4, "rules": 5, "engine": 6, "runtime": 7, "service": 8,
    # 9 the applications: the command line and what it runs
    "commands": 9, "cli": 9, "live": 9, "replay": 9, "ruletest": 9, "decode": 9, "demo": 9, "producer": 9,
    "config": 9, "forwarding": 9,
}

# Pairs the layering already forbids, named on their own so that the rule survives a reshuffle of the table.
FORBIDDEN: dict[str, frozenset[str]] = {
    "decoders": frozenset({"sources"}),
    "sources": frozenset({"engine", "rules", "actions"}),
}


@dataclass(frozen=True, slots=True)
class Import:
    source: str  # importing module
    target: str  # imported module
    path: str  # the importing file, relative to the repository
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.source} -> {self.target}"


def module_files(package_dir: Path = PACKAGE_DIR, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its own name, for its __init__.py)."""
    out: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [package, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: Iterable[str]) -> str | None:
    """The module an import of `name` loads: `name` itself, or its longest prefix that is a module (an import of
    `dyntel.x.attr` reaches `dyntel.x`)."""
    known = set(modules)
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _is_import_module_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    return (isinstance(f, ast.Attribute) and f.attr == "import_module") or (
        isinstance(f, ast.Name) and f.id in ("import_module", "__import__")
    )


def imports_of(module: str, is_package: bool, text: str, modules: Mapping[str, object], path: str) -> list[Import]:
    """The imports of one module's source that reach modules of the package."""
    tree = ast.parse(text, filename=path)
    here = module if is_package else module.rpartition(".")[0]
    out: list[Import] = []

    def add(target: str | None, node: ast.AST) -> None:
        if target is not None and target != module:
            imp = Import(module, target, path, getattr(node, "lineno", 0))
            if imp not in out:  # `from m import a, b` is one import of m
                out.append(imp)

    dynamic = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    add(_resolve(alias.name, modules), node)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            if origin != PACKAGE and not origin.startswith(PACKAGE + "."):
                continue
            for alias in node.names:
                sub = f"{origin}.{alias.name}"
                add(sub if sub in modules else _resolve(origin, modules), node)
        elif _is_import_module_call(node):
            dynamic = True
    if dynamic:
        # The registries: module names as string literals, loaded by importlib.
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in modules:
                add(node.value, node)
    return out


def import_graph() -> list[Import]:
    modules = module_files()
    out: list[Import] = []
    for name, path in modules.items():
        rel = str(path.relative_to(ROOT))
        out.extend(imports_of(name, path.name == "__init__.py", path.read_text(encoding="utf-8"), modules, rel))
    return out


def unit(module: str) -> str:
    """The part of the package a module belongs to: its subpackage, or the top-level module itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def strongly_connected(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The components of more than one node (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    nodes = sorted(set(edges) | {w for ws in edges.values() for w in ws})
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp: list[str] = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def a_cycle(component: list[str], edges: Mapping[str, Iterable[str]]) -> list[str]:
    """One cycle through a component's first node (breadth-first, so the shortest), closing on that node."""
    inside = set(component)
    start = component[0]
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges.get(v, ())):
                if w not in inside:
                    continue
                if w == start:
                    path = [start, v]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return path[::-1]
                if w not in came_from:
                    came_from[w] = v
                    nxt.append(w)
        frontier = nxt
    return [start]


def _cycle_report(imports: list[Import], key: str) -> list[str]:
    """For each cycle, its members and one way round it, each step with the import that makes it."""
    by_edge: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for imp in imports:
        a, b = (imp.source, imp.target) if key == "module" else (unit(imp.source), unit(imp.target))
        if a != b:
            by_edge[(a, b)].append(imp)
    edges: dict[str, set[str]] = defaultdict(set)
    for a, b in by_edge:
        edges[a].add(b)
    lines = []
    for comp in strongly_connected(edges):
        cycle = a_cycle(comp, edges)
        lines.append(f"cycle of {len(comp)}: {', '.join(x or 'dyntel/__init__' for x in comp)}")
        lines.append("  one way round: " + " -> ".join(x or "dyntel/__init__" for x in cycle))
        for a, b in itertools.pairwise(cycle):
            for imp in by_edge[(a, b)]:
                lines.append(f"    {imp}")
    return lines


def test_every_module_is_placed() -> None:
    unplaced = sorted({unit(m) for m in module_files()} - set(LAYERS))
    assert not unplaced, (
        "modules of dyntel not placed in a layer (add each to LAYERS in tests/test_architecture.py and to the "
        "table in docs/architecture.md):\n  " + "\n  ".join(f"dyntel/{u}" for u in unplaced)
    )


def test_no_cycle_between_modules() -> None:
    report = _cycle_report(import_graph(), "module")
    assert not report, "import cycles between modules (imports inside functions count):\n" + "\n".join(report)


def test_no_cycle_between_subpackages() -> None:
    report = _cycle_report(import_graph(), "part")
    assert not report, "import cycles between subpackages (and top-level modules):\n" + "\n".join(report)


def _layer(u: str) -> str:
    n = LAYERS[u]
    return f"{n} {LAYER_NAMES[n]}"


def test_imports_go_to_the_same_or_a_lower_layer() -> None:
    upward = [
        f"{imp}  (layer {_layer(a)} imports layer {_layer(b)})"
        for imp in import_graph()
        for a, b in [(unit(imp.source), unit(imp.target))]
        if a in LAYERS and b in LAYERS and LAYERS[b] > LAYERS[a]
    ]
    assert not upward, f"{len(upward)} imports go to a higher layer (docs/architecture.md):\n" + "\n".join(upward)


def test_decoders_do_not_import_sources_nor_sources_the_engine() -> None:
    bad = [str(imp) for imp in import_graph() if unit(imp.target) in FORBIDDEN.get(unit(imp.source), ())]
    assert not bad, (
        "decoders must not import sources; sources must not import rules, engine or actions:\n" + "\n".join(bad)
    )


# The checker itself: each form of import is seen.

FAKE = {
    "dyntel": "",
    "dyntel.a": "",
    "dyntel.a.one": (
        "from __future__ import annotations\n"
        "import importlib\n"
        "from typing import TYPE_CHECKING\n"
        "import dyntel.b.two\n"  # 4: absolute
        "from . import three\n"  # 5: relative, a submodule by name
        "from .three import x\n"  # 6: relative, a name in a module
        "from ..b import two\n"  # 7: relative two levels, a submodule by name
        "from dyntel.b import y\n"  # 8: a name in a package
        "if TYPE_CHECKING:\n"
        "    from dyntel.c import Z\n"  # 10
        "def f():\n"
        "    from dyntel.d.four import w\n"  # 12: inside a function
        "    return importlib.import_module(NAMES[0])\n"
        "NAMES = ('dyntel.e', 'not.dyntel')\n"  # 14: a registry
        "import os, dyntel\n"  # 15: the package itself
    ),
    "dyntel.a.three": "",
    "dyntel.b": "",
    "dyntel.b.two": "",
    "dyntel.c": "",
    "dyntel.d": "",
    "dyntel.d.four": "",
    "dyntel.e": "",
}


def test_the_checker_sees_every_form_of_import() -> None:
    found = {(i.target, i.line) for i in imports_of("dyntel.a.one", False, FAKE["dyntel.a.one"], FAKE, "one.py")}
    assert found == {
        ("dyntel.b.two", 4), ("dyntel.a.three", 5), ("dyntel.a.three", 6), ("dyntel.b.two", 7), ("dyntel.b", 8),
        ("dyntel.c", 10), ("dyntel.d.four", 12), ("dyntel.e", 14), ("dyntel", 15),
    }


def test_cycles_are_found_and_shown() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert strongly_connected(edges) == [["a", "b", "c"]]
    assert a_cycle(["a", "b", "c"], edges) == ["a", "b", "c", "a"]
