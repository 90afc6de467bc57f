"""Shared test fixtures: where the reference corpus lives, and how its absence is treated."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("DYNTEL_CORPUS", ROOT.parent / "shared" / "corpus"))


def corpus_file(rel: str) -> Path:
    """A file of ../shared/corpus. Missing: a failure in CI (CI=true), a skip elsewhere."""
    path = CORPUS / rel
    if not path.exists():
        message = f"reference corpus file missing: {path} (set DYNTEL_CORPUS to the corpus folder)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def load_reference_json(path: Path) -> list[tuple[str, object]]:
    """The reference decoder's output as (label, events) pairs, duplicates and key order kept.

    The reference files start with a UTF-8 BOM, may lack the outer braces, and hold bytes that are not UTF-8
    (code points above U+10FFFF written in the old 5- and 6-byte forms); those bytes become surrogate escapes.
    """
    import json

    text = path.read_bytes().removeprefix(b"\xef\xbb\xbf").decode("utf-8", "surrogateescape").strip()
    if not text.startswith("{"):
        text = "{" + text + "}"
    pairs: list[tuple[str, object]] = json.loads(text, object_pairs_hook=list)
    return pairs
