"""Every input the fuzzers (fuzz/) found a defect with, kept under tests/data/fuzz/TARGET/NAME, is handled as
documented now: each target's `run` (the same check the fuzzer applied) returns. The harnesses also run over
their seeds, so that they keep working where atheris is not installed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support import CORPUS, ROOT, corpus_file

sys.path.insert(0, str(ROOT))

from fuzz.common import strict_defects
from fuzz.seeds import SEEDS

DATA = ROOT / "tests" / "data" / "fuzz"
FOUND = sorted(p for p in DATA.glob("*/*") if p.is_file())


@pytest.fixture(autouse=True)
def _strict() -> object:
    from dyntel import errors

    strict_defects()
    yield
    errors.RAISE_DEFECTS = False


def _target(name: str) -> object:
    import importlib

    return importlib.import_module(f"fuzz.{name}")


@pytest.mark.parametrize("path", FOUND, ids=[f"{p.parent.name}/{p.name}" for p in FOUND])
def test_found_input_is_handled(path: Path) -> None:
    _target(path.parent.name).run(path.read_bytes())  # type: ignore[attr-defined]


@pytest.mark.parametrize("target", sorted(SEEDS))
def test_harness_accepts_its_seeds(target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The seeds read the corpus where the tests found it (support.py also follows a local clone to its origin's).
    monkeypatch.setenv("DYNTEL_CORPUS", str(CORPUS))
    run = _target(target).run  # type: ignore[attr-defined]
    n = 0
    for data in SEEDS[target]():
        run(data)
        n += 1
    if not n and target != "otlp_metrics":
        corpus_file("README.md")  # the corpus missing: a failure under CI, a skip elsewhere
        raise AssertionError(f"no seeds for {target}")
