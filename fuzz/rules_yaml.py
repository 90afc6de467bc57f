"""Rule files (YAML), as `dyntel check` and `dyntel run --rules` load them. Documented outcome: a RuleSet, or a
list of RuleErrors each naming a line and column inside the file; never an exception, never a hang.

    python -m fuzz.rules_yaml [libFuzzer flags] [corpus dirs]     fuzz
    python -m fuzz.rules_yaml --run FILE...                          run inputs once
"""

from __future__ import annotations

import os
import tempfile

from fuzz.common import Finding, entry

MODULES = ["dyntel.rules.loader", "dyntel.rules.schema", "dyntel.rules.schema_errors", "dyntel.rules.action_checks",
           "dyntel.rules.condition", "dyntel.rules.language", "dyntel.rules.codegen", "dyntel.rules.requirements",
           "dyntel.rules.yaml_read"]
_DIR: list[str] = []


def scratch(data: bytes, suffix: str) -> str:
    """The input as a file (the loaders read paths), in one scratch directory per process."""
    if not _DIR:
        _DIR.append(tempfile.mkdtemp(prefix="dyntel-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    path = os.path.join(_DIR[0], "input" + suffix)
    with open(path, "wb") as f:
        f.write(data)
    return path


def lines_of(data: bytes) -> int:
    """An upper bound on the lines YAML sees (it also breaks lines at NEL, LS and PS)."""
    return sum(data.count(b) for b in (b"\n", b"\r", b"\x85", b"\xe2\x80\xa8", b"\xe2\x80\xa9")) + 2


def check_positions(errors: list[object], path: str, data: bytes) -> None:
    last = lines_of(data)
    for err in errors:
        where = getattr(err, "position", None) or getattr(err, "where", None)
        line = getattr(where, "line", None)
        if where is None or getattr(where, "file", path) != path or not isinstance(line, int) or not 1 <= line <= last:
            raise Finding(f"an error placed outside the file ({where}): {err}")


def run(data: bytes) -> None:
    from dyntel.rules.loader import load

    path = scratch(data, ".yaml")
    result = load([path])
    check_positions(result.errors, path, data)
    if not result.errors:
        for rule in result.ruleset.rules:
            str(rule.name)


def TestOneInput(data: bytes) -> None:
    run(data)


if __name__ == "__main__":
    entry(run, MODULES)
