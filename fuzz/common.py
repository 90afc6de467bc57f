"""What the harnesses share: the sanitized native modules, what counts as a finding, the atheris entry."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NATIVE_MODULES = ("_speedups", "_prefilter")


class Finding(AssertionError):
    """Input that dyntel handled other than as documented (the harness's own check failed)."""


def load_native_build() -> str | None:
    """With DYNTEL_FUZZ_NATIVE=DIR, `dyntel._speedups` and `dyntel._prefilter` are the builds in DIR (made by
    fuzz/build-native.sh with AddressSanitizer, UndefinedBehaviorSanitizer and libFuzzer's coverage) instead of the
    installed ones. The installed build is left untouched. Returns DIR, or None for the installed modules."""
    where = os.environ.get("DYNTEL_FUZZ_NATIVE")
    if not where:
        return None
    import dyntel

    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    for name in NATIVE_MODULES:
        full = f"dyntel.{name}"
        if full in sys.modules:
            raise RuntimeError(f"{full} was imported before the sanitized build could replace it")
        path = Path(where) / f"{name}{suffix}"
        if not path.exists():
            raise SystemExit(f"{path}: no sanitized build (run fuzz/build-native.sh first)")
        loader = importlib.machinery.ExtensionFileLoader(full, str(path))
        spec = importlib.util.spec_from_file_location(full, path, loader=loader)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        sys.modules[full] = module
        setattr(dyntel, name, module)
    return where


def strict_defects() -> None:
    """Make the decoders' catch-alls (a defect counted as one bad event so that a live source keeps running)
    re-raise, so that the fuzzer reports them."""
    from dyntel import errors

    errors.RAISE_DEFECTS = True


# A problem message that names a Python exception type: a defect a catch-all counted as a bad record.
_DEFECT = re.compile(r"\b(?:[A-Z][A-Za-z]*Error|struct\.error|Exception|KeyError|StopIteration)\b: ")


def check_problems(problems: Iterable[object], size: int | None = None) -> None:
    """Each counted problem names a byte offset inside the input and says what is wrong in words, not as a
    Python exception's repr."""
    for p in problems:
        offset = getattr(p, "offset", None)
        message = getattr(p, "message", "")
        if not isinstance(offset, int) or offset < 0 or (size is not None and offset > size):
            raise Finding(f"problem at offset {offset!r} outside the input ({size} bytes): {message}")
        if not message:
            raise Finding(f"problem at offset {offset} without a message")
        if _DEFECT.search(message):
            raise Finding(f"a defect counted as a bad record at byte {offset}: {message}")


def fuzz_main(run: Callable[[bytes], None], modules: Iterable[str]) -> None:
    """The atheris entry: `modules` (and what they import) instrumented for Python coverage, then libFuzzer with
    the command line's flags and corpus directories."""
    import atheris

    native = load_native_build()
    with atheris.instrument_imports(include=["dyntel", "fuzz"]):
        for m in modules:
            importlib.import_module(m)
    strict_defects()
    if native:
        print(f"fuzz: native modules from {native}", file=sys.stderr)
    atheris.Setup(sys.argv, run)
    atheris.Fuzz()


def run_file(run: Callable[[bytes], None], argv: list[str] | None = None) -> None:
    """`python -m fuzz.TARGET --run FILE...`: run inputs once each without atheris (reproduce a finding)."""
    load_native_build()
    strict_defects()
    for path in (argv if argv is not None else sys.argv[2:]):
        run(Path(path).read_bytes())
        print(f"{path}: handled as documented")


def entry(run: Callable[[bytes], None], modules: Iterable[str]) -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--run":
        run_file(run)
    else:
        fuzz_main(run, modules)


def drain(source: Any, size: int) -> list[str]:
    """Every event of an opened perf source as JSON, to its end. A DecodeError must name its byte offset (it ends
    the reading there); the problems counted must lie inside the input's `size` bytes."""
    from dyntel.errors import DecodeError
    from dyntel.event_json import format_event

    lines: list[str] = []
    try:
        for event in source.events():
            lines.append(format_event(event))
    except DecodeError as e:
        if e.offset is None:
            raise Finding(f"DecodeError without a byte offset: {e}") from e
    check_problems(source.stats.problems, size)
    return lines


def read_recording(module: str, data: bytes, name: str = "fuzz.input") -> list[str]:
    """A recording given to one reader module (whatever its sniff says), read to the end: each event as JSON.
    Documented outcomes: events, problems counted with an offset inside the input, a DecodeError (with an offset)
    or UnsupportedFormat. Anything else raises."""
    import io

    from dyntel.errors import DecodeError, UnsupportedFormat
    from dyntel.event_json import format_event

    reader = importlib.import_module(module)
    lines: list[str] = []
    try:
        source = reader.open_source(name, io.BytesIO(data))
        for event in source.events():
            lines.append(format_event(event, getattr(source, "field_tags", False)))
    except UnsupportedFormat:
        return lines
    except DecodeError as e:
        if e.offset is None and not module.endswith("jsonl"):
            raise Finding(f"DecodeError without a byte offset: {e}") from e
        return lines
    check_problems(source.stats.problems, len(data))
    return lines
