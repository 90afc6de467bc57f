"""The real components the tests put on the other side of an interface, built from tests/peers/ and cached
(scripts/peers/). Under CI a peer that cannot be built is a failure, never a skip."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_built: dict[str, Path] = {}


def rust_peer(name: str, binary: str) -> Path:
    """The path of `binary` built from tests/peers/NAME by scripts/peers/build-rust.sh (built once per run)."""
    if name not in _built and os.environ.get("DYNTEL_PEERS") is not None:
        # Inside the VM (scripts/vm/run-tests.py): the host built the peers and named their directories.
        given = dict(item.split("=", 1) for item in os.environ["DYNTEL_PEERS"].split(";") if "=" in item)
        if name not in given:
            pytest.fail(f"peer {name} was not built on the host: run scripts/peers/build-rust.sh {name} there")
        _built[name] = Path(given[name])
    if name not in _built:
        proc = subprocess.run([str(ROOT / "scripts/peers/build-rust.sh"), name], capture_output=True, text=True,
                              check=False, timeout=3600)
        if proc.returncode != 0:
            message = f"peer {name} did not build (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        _built[name] = Path(proc.stdout.strip().splitlines()[-1])
    path = _built[name] / binary
    if not path.is_file():
        pytest.fail(f"peer {name} built but has no binary {binary} in {_built[name]}")
    return path
