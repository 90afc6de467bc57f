"""user_events end to end between two containers, in the VM: a producer container (tests/vm/producer.py, root in
its container, the host's tracefs) and dyntel's image beside it as the sidecar (uid 10001, the three capabilities
in the CRI shape, its pid and network namespaces), run by podman and runc inside the user_events kernel.

The image is the one tests/test_container.py built on the host (scripts/container/build-image.sh keeps it as a
tarball in its cache, which the guest sees through its read-only root); the guest loads it into a podman storage
of its own under /tmp (overlay on tmpfs). The VM kernel has no bridge or veth, so the pod has no network but
loopback (`--network none`), which user_events do not need; it has namespaces, cgroups, seccomp and overlayfs, but
no bpf(2), so the cgroups are v1 (see _mount_cgroup_v1). Not in the VM's default job (scripts/vm/run-tests.py):
loading the image takes minutes under TCG. Run it with

    scripts/vm/run-tests.py --memory 2048 --timeout 1500 -- -s tests/vm/test_container_vm.py
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from producer import EVENT_NAME
from vmhelpers import IN_VM, Producer, wait_for

pytestmark = pytest.mark.container

REPO = Path(__file__).resolve().parent.parent.parent
RUNC_CRI = REPO / "scripts" / "container" / "runc-cri"
SECCOMP = REPO / "deploy" / "seccomp" / "dyntel.json"
STORE = Path("/tmp/containers")
TIMEOUT = 600.0  # everything is slow under TCG

RULES = """\
version: 1
rules:
  - name: tick
    match: {provider: PROVIDER, event: EVENT}
    actions:
      - log: {message: "tick {fields.seq} from pid {pid}"}
  - name: ping
    match: {provider: PROVIDER, event: Ping}
    actions:
      - log: {message: ping}
      - stacks: {}
"""


def say(message: str) -> None:
    # Progress, flushed: under TCG a step takes minutes, and the output file is all the host sees of a stuck run.
    print(f"test_container_vm: {message}", flush=True)


def _unavailable(why: str) -> None:
    if IN_VM:
        pytest.fail(why)
    pytest.skip(why)


def _image_tar() -> Path:
    """The image build-image.sh saved on the host: its cache under root's home, or $DYNTEL_CACHE."""
    places = [os.environ.get("DYNTEL_CACHE", ""), "/root/.cache/dyntel", *glob.glob("/home/*/.cache/dyntel")]
    for place in filter(None, places):
        found = sorted(glob.glob(f"{place}/container/image-*.tar"))
        if found:
            return Path(found[-1])
    _unavailable("no image tarball in ~/.cache/dyntel/container: run tests/test_container.py on the host first")
    raise AssertionError  # unreachable


def podman(*args: str, check: bool = True, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    argv = ["podman", "--root", str(STORE / "storage"), "--runroot", str(STORE / "run"), "--tmpdir",
            str(STORE / "tmp"), "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs",
            "--events-backend", "none", "--runtime", str(RUNC_CRI), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "CONTAINERS_CONF": str(STORE / "containers.conf")})
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


def _mount_cgroup_v1() -> None:
    """cgroup v1 hierarchies, as on the hosts these tests run on: with cgroup v2, runc enforces the device rules
    with a BPF program (BPF_CGROUP_DEVICE), and the VM kernel has no bpf(2) (CONFIG_BPF_SYSCALL, CONFIG_CGROUP_BPF
    unset): runc fails with "bpf_prog_query(BPF_CGROUP_DEVICE) failed: function not implemented". v1's devices
    controller needs neither."""
    root = Path("/sys/fs/cgroup")
    if os.path.ismount(root / "devices"):
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "cgroup", str(root)], check=True)
    available = {line.split()[0] for line in Path("/proc/cgroups").read_text().splitlines()[1:]}
    for controller in sorted(available - {"debug"}):
        (root / controller).mkdir()
        if subprocess.run(["mount", "-t", "cgroup", "-o", controller, "cgroup", str(root / controller)],
                          capture_output=True, check=False).returncode != 0:
            (root / controller).rmdir()
    (root / "systemd").mkdir()
    subprocess.run(["mount", "-t", "cgroup", "-o", "none,name=systemd", "cgroup", str(root / "systemd")], check=True)


COMMON = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
          "--image-volume", "ignore", "-v", "/sys/kernel/tracing:/sys/kernel/tracing"]


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    if shutil.which("podman") is None or shutil.which("runc") is None:
        _unavailable("podman and runc are not installed (.ci/run installs them)")
    tar = _image_tar()
    for sub in ("storage", "run", "tmp"):
        (STORE / sub).mkdir(parents=True, exist_ok=True)
    # The root is read-only: image copies go to /tmp, not /var/tmp.
    (STORE / "containers.conf").write_text(f'[engine]\nimage_copy_tmp_dir = "{STORE / "tmp"}"\n')
    _mount_cgroup_v1()
    start = time.monotonic()
    say(f"podman load -i {tar} ({tar.stat().st_size >> 20} MiB)")
    loaded = podman("load", "-q", "-i", str(tar)).stdout
    name = loaded.strip().split()[-1]
    say(f"figure: podman load in the VM, s = {time.monotonic() - start:.1f}")
    yield name
    podman("rm", "-a", "-f", "-t", "0", check=False)


class ContainerProducer(Producer):
    """tests/vm/producer.py in a container of its own, talked to over podman's stdin and stdout."""

    def __init__(self, name: str, container: str, image: str) -> None:
        self.name = name
        here = Path(__file__).resolve().parent
        argv = ["podman", "--root", str(STORE / "storage"), "--runroot", str(STORE / "run"), "--tmpdir",
                str(STORE / "tmp"), "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs",
                "--events-backend", "none", "--runtime", str(RUNC_CRI),
                "run", "-i", "--rm", "--name", container, "--network", "none", *COMMON, "-v", f"{here}:/app:ro",
                "-e", "PYTHONPATH=/app:/opt/dyntel/lib/python3.11/site-packages", "-e", "PYTHONDONTWRITEBYTECODE=1",
                "--user", "0:0", "--entrypoint", "/usr/bin/python3", image, "/app/producer.py", name]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env={**os.environ, "CONTAINERS_CONF": str(STORE / "containers.conf")})
        ready = self._line().split()
        assert ready[0] == "ready", ready
        self.write_index = int(ready[1])
        self.enabled_at_start = ready[2] == "1"


def test_user_events_from_a_producer_container_reach_the_dyntel_sidecar(image: str, tmp_path: Path) -> None:
    provider = f"DyntelPod{os.getpid()}"
    app = f"producer-{uuid.uuid4().hex[:8]}"
    say("starting the producer container")
    producer = ContainerProducer(f"{provider}_L5K1", app, image)
    say("producer ready")
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "pod.yaml").write_text(RULES.replace("PROVIDER", provider).replace("EVENT", EVENT_NAME))
    (rules / "pod.yaml").chmod(0o444)
    rules.chmod(0o755)
    tmp_path.chmod(0o755)
    dyntel = f"dyntel-{uuid.uuid4().hex[:8]}"
    try:
        assert not producer.enabled
        podman("run", "-d", "--name", dyntel, *COMMON, "--pid", f"container:{app}", "--network", f"container:{app}",
               "--user", "10001:10001", "--cap-drop", "ALL", "--cap-add", "PERFMON", "--cap-add", "SYS_PTRACE",
               "--cap-add", "DAC_READ_SEARCH", "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:mode=1777",
               "--security-opt", f"seccomp={SECCOMP}", "-v", f"{state}:/var/lib/dyntel",
               "-v", f"{rules}:/etc/dyntel/rules:ro", "-e", "DYNTEL_METRICS_LISTEN=127.0.0.1:9464",
               image, "run", "--rules", "/etc/dyntel/rules")
        say("dyntel container started")
        log = state / "artifacts" / "actions.jsonl"

        def outcomes(rule: str) -> list[dict[str, object]]:
            if not log.exists():
                return []
            return [r for r in map(json.loads, log.read_text().splitlines()) if r.get("rule") == rule]

        wait_for("enabled by dyntel in its container", lambda: producer.enabled, timeout=TIMEOUT)
        say("producer enabled")
        wait_for("a ping fired", lambda: producer.ping() == 1 and len(outcomes("ping")) >= 2, timeout=TIMEOUT)
        say("ping fired")
        assert producer.write(10) == 10
        wait_for("10 ticks", lambda: len(outcomes("tick")) >= 10, timeout=TIMEOUT)
        say("ticks fired")
        # The pings' stacks run one at a time (others are skipped meanwhile), and under TCG each takes a while.
        wait_for("stacks of the producer", lambda: any(r["type"] == "stacks" and r["status"] == "ok"
                                                       for r in outcomes("ping")), timeout=TIMEOUT)
    finally:
        print(podman("logs", dyntel, check=False).stderr[-3000:])
        podman("rm", "-f", "-t", "0", dyntel, check=False)
        producer.kill()
    ticks = outcomes("tick")
    assert [r["pid"] for r in ticks] == [1] * 10  # the producer, pid 1 of the pod's namespace
    stacks = next(r for r in outcomes("ping") if r["type"] == "stacks" and r["status"] == "ok")
    report = (state / Path(str(stacks["text_path"])).relative_to("/var/lib/dyntel")).read_text()
    assert "Python:" in report and "producer.py" in report, report
