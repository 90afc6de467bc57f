"""The layers issue 16 set for the actions and what sits around them: actions, rules, otel, engine and the action
runtime import only their own layer or lower (docs/architecture.md has the whole house), imports inside functions
included, and the neutral modules they share (formatting, options, units, firing, errors) import none of them."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dyntel"
# Low to high, as HELPERS.md / docs/architecture.md give them; a module not listed is a base module (0).
LAYERS = {"decoders": 1, "encoders": 1, "sources": 2, "capture": 3, "otel": 3, "actions": 4, "rules": 5,
          "engine": 6, "runtime": 7, "service": 8}
APPLICATIONS = {"commands", "cli", "live", "replay", "ruletest", "decode", "demo", "producer", "config", "forwarding"}
CHECKED = {"actions", "rules", "otel", "engine", "runtime", "formatting", "options", "units", "firing", "errors"}


def layer(module: str) -> int:
    part = module.split(".")[1] if "." in module else ""
    return 9 if part in APPLICATIONS else LAYERS.get(part, 0)


def imports(path: Path) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return [(line, name) for line, name in out if name.startswith("dyntel.")]


def test_no_upward_import_among_actions_rules_otel_engine_runtime() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        if module.partition(".")[2].partition(".")[0] not in CHECKED:
            continue
        upward += [f"{module} (layer {layer(module)}) imports {name} (layer {layer(name)}) at line {line}"
                   for line, name in imports(path) if layer(name) > layer(module)]
    assert upward == []
