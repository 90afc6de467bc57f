"""Event -> action latency of `dyntel run` on user_events: benchmarks/latency.py with an EventHeader producer.

The probe is `eh-latency probe` (tests/peers/eventheader-writer/src/latency.rs: LinuxTracepoints' eventheader_dynamic
crate, a real EventHeader writer). It registers `user_events:DyntelLatency_L4K1` and every --interval (50 ms) reads
CLOCK_MONOTONIC, writes one `Probe` event (seq, t0) and waits for SIGUSR1 in sigtimedwait(). `dyntel run` runs one
rule, `match: {provider: DyntelLatency, event: Probe}` with `condition: pid == PROBE` and a `signal: USR1` action.
The background load is `eh-latency load RATE`: the same event on the same tracepoint from another process at each
--loads rate (20/s, 1k/s, 50k/s by default), which dyntel reads, decodes and evaluates and never fires on. The
measurement, its options and its printing are benchmarks/latency.py's (`--action signal` only: the stacks variant
watches the probe's syscalls, which are the same on either source).

user_events needs a kernel with CONFIG_USER_EVENTS: run it in the project's VM (docs/vm.md), where the host's
checkout, .venv and peer cache are the guest's read-only root:

    scripts/peers/build-rust.sh eventheader-writer        # on the host, once (the guest cannot build)
    scripts/vm/run-tests.py --nice -10 --memory 2048 --timeout 1500 --run -- \
        -m benchmarks.latency_user_events --samples 300 --nice -10
    scripts/vm/run-tests.py --nice -10 --memory 2048 --timeout 1500 --run -- \
        -m benchmarks.latency --samples 200 --nice -10                        # syscalls, same kernel

(the first --nice is qemu's on the host, for its share of a shared machine; the second dyntel's and the probe's in
the guest, as in benchmarks/latency.py).

The guest is emulated (qemu TCG), so its figures are compared with the host's as a ratio: run the syscalls one in
the same VM for that (the VM kernel has syscall tracepoints), and on the host. tests/vm/test_latency_vm.py runs a
short version of this one in the VM suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from benchmarks.latency import Workload
from benchmarks.latency import main as latency_main

ROOT = Path(__file__).resolve().parent.parent
PROVIDER = "DyntelLatency"
EVENT = "Probe"
TRACEPOINT = f"{PROVIDER}_L4K1"  # level 4 (informational), keyword 1: what eh-latency registers
USER_EVENTS_DATA = Path("/sys/kernel/tracing/user_events_data")


def eh_latency() -> Path:
    """The eh-latency binary: from DYNTEL_PEERS in the VM (the host built it, scripts/vm/run-tests.py names its
    directory), else built or found by scripts/peers/build-rust.sh."""
    given = dict(item.split("=", 1) for item in os.environ.get("DYNTEL_PEERS", "").split(";") if "=" in item)
    if "eventheader-writer" in given:
        directory = Path(given["eventheader-writer"])
    else:
        done = subprocess.run([str(ROOT / "scripts/peers/build-rust.sh"), "eventheader-writer"], stdout=subprocess.PIPE,
                              text=True, check=False)
        if done.returncode != 0:
            raise SystemExit("scripts/peers/build-rust.sh eventheader-writer failed: the probe is not built")
        directory = Path(done.stdout.strip().splitlines()[-1])
    binary = directory / "eh-latency"
    if not binary.is_file():
        raise SystemExit(f"{binary} missing: rebuild with scripts/peers/build-rust.sh eventheader-writer on the host")
    return binary


def rule(pid: int, action: str) -> str:
    assert action == "signal", action
    return (f"version: 1\nrules:\n  - name: latency-probe\n    match: {{provider: {PROVIDER}, event: {EVENT}}}"
            f"\n    condition: pid == {pid}\n    actions:\n      - signal: USR1\n      - log: \"probe {{pid}}\"\n")


def workload(binary: Path) -> Workload:
    return Workload(
        f"EventHeader Probe events (eh-latency) on user_events:{TRACEPOINT}",
        lambda interval, samples, timeout, wait: [str(binary), "probe", str(interval), str(samples), str(timeout),
                                                  "wait"],
        lambda rate: [str(binary), "load", str(rate)],
        rule,
        actions=("signal",),
        doc=__doc__ or "",
    )


def main(argv: list[str] | None = None) -> int:
    asks_help = any(a in ("-h", "--help") for a in (sys.argv[1:] if argv is None else argv))
    if not USER_EVENTS_DATA.exists() and not asks_help:
        print(f"{USER_EVENTS_DATA} missing: this kernel lacks CONFIG_USER_EVENTS; run this in the VM (see --help)",
              file=sys.stderr)
        return 2
    return latency_main(argv, workload(eh_latency()))


if __name__ == "__main__":
    sys.exit(main())
