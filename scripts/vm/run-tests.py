#!/usr/bin/env python3
"""Run dyntel's user_events tests inside a qemu VM whose kernel has CONFIG_USER_EVENTS.

The guest boots the kernel from build-kernel.sh with this machine's whole file system as its read-only root (9p
over virtio), so the host's Python, the checkout and its .venv run inside unchanged. A second, writable 9p export
(a fresh host directory) carries the job in and the test output and exit status out. guest-init.sh is PID 1.

    scripts/vm/run-tests.py [--kernel BZIMAGE] [--build] [--timeout S] [--keep] [-- PYTEST-ARGS...]
    scripts/vm/run-tests.py --run [...] -- PYTHON-ARGS...   e.g. --run -- -m benchmarks.latency_user_events

Without PYTEST-ARGS it runs `pytest -m 'user_events and not container' tests/vm -p no:cacheprovider`. With --run
the arguments are the checkout's Python's instead of pytest's (a benchmark in the guest), and its output is shown
the same way. Exit status: the tests' own, or
3 when there is no kernel (build one with scripts/vm/build-kernel.sh or pass --build), 4 when qemu is missing or
the guest ended without reporting, 124 on timeout. Standard library only: it must not need dyntel to run.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TextIO

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
QEMU = "qemu-system-x86_64"
EXIT_NO_KERNEL = 3
EXIT_NO_VM = 4
EXIT_TIMEOUT = 124
# A string both sides agree on: how the host tells when the guest reached its init script.
INIT_MARK = "dyntel-vm: init started"


def log(message: str) -> None:
    print(f"run-tests: {message}", file=sys.stderr, flush=True)


def find_kernel(explicit: str | None, build: bool) -> Path | None:
    """--kernel, then DYNTEL_VM_KERNEL, then the project's cached build, then (with `build`) a new build."""
    chosen = explicit or os.environ.get("DYNTEL_VM_KERNEL")
    if chosen:
        return Path(chosen)
    script = HERE / "build-kernel.sh"
    cached = subprocess.run([str(script), "--cached"], capture_output=True, text=True, check=False)
    if cached.returncode == 0 and cached.stdout.strip():
        return Path(cached.stdout.strip().splitlines()[-1])
    if not build:
        return None
    log("no cached kernel: building one (about 13 minutes on 2 CPUs)")
    started = time.monotonic()
    built = subprocess.run(["nice", "-n", "19", str(script)], stdout=subprocess.PIPE, text=True, check=False)
    if built.returncode != 0 or not built.stdout.strip():
        log(f"build-kernel.sh failed with status {built.returncode}")
        return None
    log(f"kernel built in {time.monotonic() - started:.0f} s")
    return Path(built.stdout.strip().splitlines()[-1])


def qemu_command(kernel: Path, results: Path, repo: Path, export_repo: bool, cpus: int, memory: int) -> list[str]:
    # The root export needs multidevs=remap: / spans several host file systems, and without it their inode
    # numbers could collide inside the guest.
    cmd = [
        QEMU, "-accel", "tcg", "-cpu", "max", "-m", str(memory), "-smp", str(cpus),
        "-nographic", "-no-reboot", "-nic", "none", "-kernel", str(kernel),
        "-fsdev", "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=root,mount_tag=/dev/root",
        "-fsdev", f"local,id=results,path={results},security_model=none,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=results,mount_tag=results",
    ]
    if export_repo:
        cmd += [
            "-fsdev", f"local,id=repo,path={repo},security_model=none,readonly=on,multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=repo,mount_tag=repo",
        ]
    # panic=-1: a guest that cannot run init reboots at once, and -no-reboot turns that into qemu exiting.
    append = (
        "root=/dev/root rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=262144,cache=loose ro "
        f"console=ttyS0 panic=-1 quiet init={HERE / 'guest-init.sh'}"
    )
    return [*cmd, "-append", append]


def pump(stream: TextIO, sink: TextIO, marks: dict[str, float], started: float, echo: bool) -> None:
    """Copy the guest console to `sink`, noting when the init script announced itself."""
    for line in stream:
        sink.write(line)
        sink.flush()
        if INIT_MARK in line and "boot" not in marks:
            marks["boot"] = time.monotonic() - started
        if echo:
            sys.stderr.write(line)


def prioritize(pid: int, nice: int) -> None:
    """Give qemu (a session of its own) the niceness `nice` for the whole session: with sched_autogroup on, each
    session is scheduled as one group and a process's own nice counts only inside it (benchmarks/live.prioritize)."""
    try:
        with open(f"/proc/{pid}/autogroup", "w") as f:
            f.write(str(nice))
        os.setpriority(os.PRIO_PROCESS, pid, nice)
    except OSError as e:
        log(f"cannot set qemu's niceness to {nice}: {e}")


def boot(cmd: list[str], results: Path, timeout: float, echo: bool,
         nice: int = 0) -> tuple[dict[str, float], bool, int]:
    """Run qemu once, its console into results/console.log. Returns the marks seen (boot: seconds to init),
    whether it timed out, and qemu's status."""
    marks: dict[str, float] = {}
    started = time.monotonic()
    timed_out = False
    with open(results / "console.log", "w", encoding="utf-8", errors="replace") as console:
        vm = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, errors="replace", start_new_session=True)
        assert vm.stdout is not None
        if nice:
            prioritize(vm.pid, nice)
        reader = threading.Thread(target=pump, args=(vm.stdout, console, marks, started, echo), daemon=True)
        reader.start()
        try:
            vm.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            vm.kill()
            vm.wait()
        reader.join(timeout=5)
    return marks, timed_out, vm.returncode


def peer_dirs(repo: Path, build: bool) -> str:
    """`NAME=DIR;...` for the Rust peers under tests/peers that are built (scripts/peers/build-rust.sh), so that
    tests/peers.py in the guest finds them: the guest has no network and another HOME, so it can neither build nor
    compute the host's cache keys. With `build`, a peer not yet built is built here first."""
    found = []
    script = repo / "scripts" / "peers" / "build-rust.sh"
    for manifest in sorted((repo / "tests" / "peers").glob("*/Cargo.toml")):
        name = manifest.parent.name
        for cached in ((True, False) if build else (True,)):
            cmd = [str(script), *(["--cached"] if cached else []), name]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode == 0 and done.stdout.strip():
                found.append(f"{name}={done.stdout.strip().splitlines()[-1]}")
                break
        else:
            log(f"peer {name} is not built (scripts/peers/build-rust.sh {name}): tests using it will fail")
    # The OpenTelemetry Collector (tests/otelcol.py), built by its own script from tests/peers/otelcol.
    if (repo / "tests" / "peers" / "otelcol" / "builder-config.yaml").is_file():
        script = repo / "scripts" / "peers" / "build-otelcol.sh"
        for cached in ((True, False) if build else (True,)):
            done = subprocess.run([str(script), *(["--cached"] if cached else [])], capture_output=True, text=True,
                                  check=False)
            if done.returncode == 0 and done.stdout.strip():
                found.append(f"otelcol={done.stdout.strip().splitlines()[-1]}")
                break
        else:
            log("the collector is not built (scripts/peers/build-otelcol.sh): tests using it will fail")
    return ";".join(found)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kernel", help="bzImage to boot (default: $DYNTEL_VM_KERNEL, else the cached build)")
    p.add_argument("--build", action="store_true", default=os.environ.get("CI", "").lower() == "true",
                   help="build the kernel when none is cached (the default under CI=true)")
    p.add_argument("--repo", default=str(REPO), help="checkout whose .venv and tests run inside (default: this one)")
    p.add_argument("--timeout", type=float, default=float(os.environ.get("DYNTEL_VM_TIMEOUT", "600")),
                   help="seconds before the VM is killed (default 600, or $DYNTEL_VM_TIMEOUT)")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--memory", type=int, default=1024, help="MiB")
    p.add_argument("--results", help="directory for the job, console log, output and status (default: a new one)")
    p.add_argument("--keep", action="store_true", help="keep the results directory")
    p.add_argument("--verbose", "-v", action="store_true", help="echo the guest console while it runs")
    p.add_argument("--nice", type=int, default=0,
                   help="qemu's niceness for its whole session (sched_autogroup), e.g. -10 for a benchmark on a shared "
                        "machine; the guest's vCPUs are qemu's threads")
    p.add_argument("--run", action="store_true",
                   help="run the checkout's python with the arguments after -- instead of pytest (a benchmark)")
    p.add_argument("pytest_args", nargs="*", help="arguments for pytest inside (after --), or python's with --run")
    args = p.parse_args(argv)

    repo = Path(args.repo).resolve()
    python = repo / ".venv" / "bin" / "python"
    if not python.exists():
        log(f"{python} missing: run scripts/test once to make the venv")
        return EXIT_NO_VM
    if shutil.which(QEMU) is None:
        log(f"{QEMU} not found: apt-get install qemu-system-x86")
        return EXIT_NO_VM
    kernel = find_kernel(args.kernel, args.build)
    if kernel is None or not kernel.is_file():
        log(f"no kernel{f' at {kernel}' if kernel else ''}: run scripts/vm/build-kernel.sh (or pass --build, "
            "or --kernel PATH)")
        return EXIT_NO_KERNEL

    # Not the `container` tests (tests/vm/test_container_vm.py): loading the image alone takes minutes under TCG;
    # they run when asked for (docs/deploy.md, "Tried for real").
    pytest_args = args.pytest_args or ["-m", "user_events and not container", str(repo / "tests" / "vm")]
    if args.run and not args.pytest_args:
        log("--run needs the python arguments after --, e.g. --run -- -m benchmarks.latency_user_events")
        return 2
    job = args.pytest_args if args.run else ["-m", "pytest", "-p", "no:cacheprovider", *pytest_args]
    results = Path(args.results) if args.results else Path(tempfile.mkdtemp(prefix="dyntel-vm-"))
    results.mkdir(parents=True, exist_ok=True)
    for stale in ("status", "output.txt", "uptime", "console.log"):
        (results / stale).unlink(missing_ok=True)
    # The guest mounts a tmpfs over /tmp, which would hide a checkout kept there.
    export_repo = repo == Path("/tmp") or Path("/tmp") in repo.parents
    (results / "job.env").write_text(
        f"REPO={shlex.quote(str(repo))}\nPYTHON={shlex.quote(str(python))}\n"
        f"REPO_EXPORTED={int(export_repo)}\nJOB_ARGS={shlex.quote(shlex.join(job))}\n"
        f"DYNTEL_PEERS={shlex.quote(peer_dirs(repo, args.build))}\n"
    )

    # The guest cannot write .pyc files (read-only root), and compiling every module from source under emulation
    # took a fresh checkout's run from 60 to 120 s: compile them here, as any host-side run would.
    subprocess.run([str(python), "-m", "compileall", "-q", str(repo / "dyntel"), str(repo / "tests"),
                    str(repo / "benchmarks")],
                   stdout=subprocess.DEVNULL, check=False)
    cmd = qemu_command(kernel, results, repo, export_repo, args.cpus, args.memory)
    # One more boot when the guest dies before its init script runs: that is no test's doing (a kernel panic in
    # early boot was seen once in dozens of boots under TCG), and the console of the failed boot is kept and shown.
    started = time.monotonic()
    for attempt in (1, 2):
        log(f"booting {kernel} ({args.cpus} CPUs, TCG); results in {results}")
        marks, timed_out, returncode = boot(cmd, results, args.timeout, args.verbose, args.nice)
        if "boot" in marks or timed_out or attempt == 2:
            break
        failed = results / "console-failed-boot.log"
        (results / "console.log").replace(failed)
        log(f"the guest died before reaching init (qemu status {returncode}); booting again. Its console:\n"
            f"{failed.read_text(errors='replace')[-4000:]}")
    total = time.monotonic() - started

    output = (results / "output.txt").read_text(errors="replace") if (results / "output.txt").exists() else ""
    status_file = results / "status"
    to_init = f"{marks['boot']:.1f} s" if "boot" in marks else "never reached init"
    uptime = (results / "uptime").read_text().strip() if (results / "uptime").exists() else "?"
    sys.stdout.write(output)
    log(f"boot to init: {to_init}; guest uptime at the end: {uptime} s; total: {total:.1f} s; host load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if timed_out:
        log(f"timed out after {args.timeout:.0f} s; guest console:\n{(results / 'console.log').read_text()}")
        status = EXIT_TIMEOUT
    elif not status_file.exists():
        log(f"the guest ended (qemu status {returncode}) without a test status; guest console:\n"
            f"{(results / 'console.log').read_text()}")
        status = EXIT_NO_VM
    else:
        status = int(status_file.read_text().strip() or EXIT_NO_VM)
        if status == 125:
            log(f"the guest's init failed; guest console:\n{(results / 'console.log').read_text()}")
            status = EXIT_NO_VM
        else:
            log(f"tests exited with status {status}")
    if args.keep or args.results:
        log(f"kept {results}")
    else:
        shutil.rmtree(results, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
