"""The dump and stacks actions start no thread and no process (issue 18): they run on a worker that is already
running. strace, outside dyntel, watches the thread that runs them for clone, fork, vfork and execve between two
markers, after a first round that warms imports and caches. Needs ptrace on children and strace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

SCRIPT = r"""
import os, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from support import CaptureTarget
from dyntel.actions import ActionContext, dump, stacks
from dyntel.actions.artifacts import ArtifactStores, StoreSettings
from dyntel.firing import Firing
from dyntel.rules.model import ActionSpec

ctx = ActionContext(artifacts=ArtifactStores(StoreSettings(Path(tempfile.mkdtemp()))))
with CaptureTarget() as target:
    specs = [ActionSpec("dump", {"pid": target.pid}), ActionSpec("dump", {"pid": target.pid, "format": "core"}),
             ActionSpec("stacks", {"pid": target.pid}), ActionSpec("stacks", {"pid": target.pid, "python": False})]
    actions = {"dump": dump, "stacks": stacks}
    for round_ in ("warm", "watched"):
        if round_ == "watched":
            os.write(2, b"MARK-BEGIN\n")
        for spec in specs:
            ctx.deadline = time.monotonic() + 30
            outcome = actions[spec.type].run(spec, Firing("r", 0, {}, None), ctx)
            print(spec.type, outcome.status, outcome.detail.get("errors"), flush=True)
        if round_ == "watched":
            os.write(2, b"MARK-END\n")
"""


def test_dump_and_stacks_start_no_thread_or_process(tmp_path: Path) -> None:
    strace = shutil.which("strace")
    if strace is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("strace is not installed (.ci/run installs it)")
        pytest.skip("strace is not installed")
    script = tmp_path / "actions.py"
    script.write_text(SCRIPT)
    log = tmp_path / "strace.log"
    # Without -f strace follows only the thread that runs the actions (the main thread here), which is where a
    # clone or exec on the path would be made; the target process it starts itself stays untraced.
    done = subprocess.run([strace, "-o", str(log), "-e", "trace=clone,clone3,fork,vfork,execve,write",
                           sys.executable, str(script), str(ROOT / "tests")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    lines = log.read_text().splitlines()
    begin = next(i for i, line in enumerate(lines) if "MARK-BEGIN" in line)
    end = next(i for i, line in enumerate(lines) if "MARK-END" in line)
    spawned = [line for line in lines[begin:end] if line.split("(")[0] in ("clone", "clone3", "fork", "vfork",
                                                                            "execve")]
    assert spawned == []
    outcomes = done.stdout.splitlines()
    assert len(outcomes) == 8 and all(line.endswith(" ok None") for line in outcomes), outcomes
    # The warm-up round did start the target (so strace would have seen a start had there been one).
    assert any(line.startswith(("clone", "execve")) for line in lines[:begin])
