"""The user_events tests (tests/vm), run where they can pass: in a qemu VM with a CONFIG_USER_EVENTS kernel.

scripts/vm/run-tests.py boots the project's cached kernel (scripts/vm/build-kernel.sh) with this machine's root
read-only over 9p and runs `pytest -m user_events tests/vm/MODULE` inside, one boot per module. Without a cached
kernel or qemu this is skipped on a workstation; under CI=true a missing kernel is built (about 13 minutes on 2
CPUs) and a missing qemu fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "scripts" / "vm" / "run-tests.py"
CI = os.environ.get("CI", "").lower() == "true"
EXIT_NO_KERNEL = 3

pytestmark = [pytest.mark.vm, pytest.mark.slow]


def _unavailable(message: str) -> None:
    if CI:
        pytest.fail(message)
    pytest.skip(message)


# Not test_container_vm.py (podman in the VM): loading the image alone takes about 5 minutes under TCG, and it needs
# --memory 2048. Run it when asked: docs/deploy.md, "Tried for real".
ASKED_FOR_ONLY = {"test_container_vm.py"}
VM_TESTS = sorted(p.name for p in (ROOT / "tests" / "vm").glob("test_*.py") if p.name not in ASKED_FOR_ONLY)


@pytest.mark.parametrize("module", VM_TESTS)
def test_user_events_suite_passes_in_the_vm(module: str) -> None:
    """One boot per test module: a failure or a hang names its module, and each has the runner's whole timeout
    (everything in the guest runs under software emulation, where one interpreter start takes seconds)."""
    if shutil.which("qemu-system-x86_64") is None:
        _unavailable("qemu-system-x86_64 missing: apt-get install qemu-system-x86 (.ci/run installs it)")
    vm_timeout = float(os.environ.get("DYNTEL_VM_TIMEOUT", "1200"))
    cmd = [sys.executable, str(RUNNER), "--timeout", str(vm_timeout)]
    if CI:
        cmd.append("--build")
    cmd += ["--", "-m", "user_events", str(ROOT / "tests" / "vm" / module)]
    # Kernel build (CI only, once per cache) plus boot and tests; the runner bounds the VM itself.
    timeout = 3600 + vm_timeout if CI else vm_timeout + 60
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    report = f"--- guest pytest output ---\n{done.stdout}\n--- runner ---\n{done.stderr}"
    if done.returncode == EXIT_NO_KERNEL and not CI:
        pytest.skip("no VM kernel cached: run scripts/vm/build-kernel.sh (about 13 minutes) or set DYNTEL_VM_KERNEL")
    # Timings go to the test log, where `pytest -rA` or a failure shows them.
    print(done.stderr)
    assert done.returncode == 0, report
    assert " passed" in done.stdout and " skipped" not in done.stdout, report
