"""The image, built from the Dockerfile with podman and run as Kubernetes runs it (marked `container`).

scripts/container/build-image.sh builds the image (cached). The sidecar pod: an app container (tests/sidecar_app.py
as uid 1000, no capabilities) and dyntel sharing its pid and network namespaces, as uid 10001 with --cap-drop ALL
plus the three documented capabilities in the containerd CRI shape (scripts/container/runc-cri: bounding =
effective = permitted, no ambient), a read-only root, a tmpfs /tmp, the host's tracefs, an emptyDir-like state
directory (0777, root's) and the rules as a ConfigMap volume (kubelet's `..data` symlink layout, read-only), with
deploy/seccomp/dyntel.json. The DaemonSet shape (hostPID, host network) is run against a process of this host.

Figures (image size, start to ready) are printed and written to ~/.cache/dyntel/container/figures.json.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import stat
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_deploy import _message, doc_table, documented_caps

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "scripts" / "container" / "build-image.sh"
RUNC_CRI = ROOT / "scripts" / "container" / "runc-cri"
SECCOMP = ROOT / "deploy" / "seccomp" / "dyntel.json"
DOCS = ROOT / "docs" / "deploy.md"
APP = Path(__file__).resolve().parent / "sidecar_app.py"
CACHE = Path(os.environ.get("DYNTEL_CACHE", Path.home() / ".cache" / "dyntel")) / "container"
CAPS = ("PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH")
APP_UID = 1000
APP_PORT = 8080
METRICS_PORT = 9464
INTERPRETER = "/opt/dyntel/bin/python3.11"

RULES = """\
version: 1
rules:
  - name: app-forked
    description: The app (pid 1 of the pod) forked; its stacks and a minidump.
    match: {provider: sched, event: sched_process_fork}
    condition: pid == 1 and fields.parent_comm == "dyntel-app"
    actions:
      - log: {message: "app forked: pid {pid}, host pid {fields.parent_pid}"}
      - stacks: {}
      - dump: {format: minidump}
  - name: outside-forked
    description: A process outside the pod forked; what a sidecar sees of it.
    match: {provider: sched, event: sched_process_fork}
    condition: fields.parent_comm == "dyntel-host"
    actions:
      - log: {message: "outside the pod: pid {pid}, host pid {fields.parent_pid}"}
"""

# The DaemonSet's: the host process by its host pid.
HOST_RULES = """\
version: 1
rules:
  - name: host-forked
    match: {{provider: sched, event: sched_process_fork}}
    condition: pid == {pid} and fields.parent_comm == "dyntel-host"
    actions:
      - log: {{message: "on the host: pid {{pid}}, host pid {{fields.parent_pid}}"}}
      - stacks: {{}}
      - dump: {{format: minidump}}
"""

FIGURES: dict[str, Any] = {}


def _unavailable(why: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(why)
    pytest.skip(why)


def _ulimits() -> list[str]:
    # podman asks for more open files and processes than root may raise RLIMIT_NOFILE and RLIMIT_NPROC to on some
    # hosts (runc: "error setting rlimit type 6: operation not permitted"): say limits that fit. A pod needs few
    # processes; the open files are dyntel's perf events (one a tracepoint a CPU).
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 65536 if nofile == resource.RLIM_INFINITY else min(nofile, 65536)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=4096:4096"]


def podman(*args: str, runtime: Path | str = RUNC_CRI, check: bool = True, timeout: float = 180,
           ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", "--runtime", str(runtime), *args], capture_output=True, text=True,
                          timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


def _record(name: str, value: Any) -> None:
    FIGURES[name] = value
    print(f"figure: {name} = {value}")
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "figures.json").write_text(json.dumps(FIGURES, indent=1) + "\n")


def _get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _wait_for(url: str, deadline_s: float, what: str, status: int = 200) -> float:
    start = time.monotonic()
    last = ""
    while time.monotonic() - start < deadline_s:
        try:
            code, body = _get(url, timeout=2)
            if code == status:
                return time.monotonic() - start
            last = f"HTTP {code}: {body[:200]}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise AssertionError(f"{what}: {url} did not answer {status} within {deadline_s} s (last: {last})")


# --- the image -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image() -> str:
    if os.geteuid() != 0:
        _unavailable("the container tests need root (rootful podman, tracefs)")
    for tool in ("podman", "runc", "debootstrap"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is not installed (.ci/run installs it)")
    start = time.monotonic()
    done = subprocess.run([str(BUILD)], capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr
    _record("image build or cache hit, s", round(time.monotonic() - start, 1))
    name = done.stdout.strip().splitlines()[-1]
    size = int(podman("image", "inspect", "--format", "{{.Size}}", name).stdout.strip())
    _record("image size, MB", round(size / 1e6, 1))
    return name


def test_image_has_no_setuid_files_and_the_documented_file_capabilities(image: str) -> None:
    # The image's files as the runtime unpacks them, read from the host (the image has no getcap: libcap2-bin is
    # purged once used).
    mount = podman("image", "mount", image).stdout.strip()
    try:
        setuid = subprocess.run(["find", mount, "-xdev", "-type", "f", "-perm", "/6000"], capture_output=True,
                                text=True, timeout=120, check=True).stdout.split()
        assert setuid == []
        getcap = subprocess.run(["getcap", "-r", mount], capture_output=True, text=True, timeout=300, check=False)
        found = {}
        for line in getcap.stdout.splitlines():
            path, _, caps = line.rpartition(" ")
            found[path.removeprefix(mount)] = caps
        assert found == {INTERPRETER: "cap_dac_read_search,cap_sys_ptrace,cap_perfmon=p"}, getcap.stdout
        # The documented set, exactly.
        names = {c.upper() for c in found[INTERPRETER].split("=")[0].split(",")}
        assert names == documented_caps()
        st = os.stat(mount + INTERPRETER)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 10001, 0o750)
    finally:
        podman("image", "unmount", image, check=False)


# --- the pod -----------------------------------------------------------------------------------------------------


@dataclass
class Pod:
    """The app container and the volumes dyntel's containers get, on the host."""

    image: str
    base: Path
    app: str
    ip: str
    state: Path
    rules: Path
    containers: list[str] = field(default_factory=list)

    def dyntel_args(self, *, caps: tuple[str, ...] = CAPS, nnp: bool = False, host: bool = False,
                    name: str | None = None, env: dict[str, str] | None = None,
                    seccomp: Path | None = SECCOMP) -> list[str]:
        """`podman run` options of the dyntel container, as the manifests make it."""
        name = name or f"dyntel-{uuid.uuid4().hex[:8]}"
        self.containers.append(name)
        shape = ["--pid", "host", "--network", "host"] if host else \
            ["--pid", f"container:{self.app}", "--network", f"container:{self.app}"]
        return [
            "--name", name, "--user", "10001:10001", "--cap-drop", "ALL",
            *(a for c in caps for a in ("--cap-add", c)),
            "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,size=64m,mode=1777",
            "--image-volume", "ignore", *_ulimits(),
            *(["--security-opt", f"seccomp={seccomp}"] if seccomp else []),
            *(["--security-opt", "no-new-privileges"] if nnp else []),
            *shape,
            "-v", "/sys/kernel/tracing:/sys/kernel/tracing",
            "-v", f"{self.state}:/var/lib/dyntel",
            "-v", f"{self.rules}:/etc/dyntel/rules:ro",
            *(a for k, v in (env or {}).items() for a in ("-e", f"{k}={v}")),
        ]

    def artifacts(self) -> Path:
        return self.state / "artifacts"


def _configmap(directory: Path, files: dict[str, str]) -> None:
    """The kubelet's ConfigMap volume: the files in a timestamped directory, `..data` a symlink to it, and each
    name a symlink through `..data`; root's, files 0444 (defaultMode), the volume's own directory 0777."""
    stamp = directory / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{os.getpid()}"
    stamp.mkdir(parents=True)
    for name, text in files.items():
        (stamp / name).write_text(text)
        (stamp / name).chmod(0o444)
    stamp.chmod(0o755)
    (directory / "..data").symlink_to(stamp.name)
    for name in files:
        (directory / name).symlink_to(f"..data/{name}")
    directory.chmod(0o777)


def _configmap_update(directory: Path, files: dict[str, str]) -> None:
    """The kubelet's update of a ConfigMap volume: a new timestamped directory, `..data` swapped to it by a rename
    of a new symlink over the old, the old directory removed."""
    old = os.readlink(directory / "..data")
    stamp = directory / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{uuid.uuid4().hex[:6]}"
    stamp.mkdir()
    for name, text in files.items():
        (stamp / name).write_text(text)
        (stamp / name).chmod(0o444)
    stamp.chmod(0o755)
    (directory / "..data_tmp").symlink_to(stamp.name)
    os.rename(directory / "..data_tmp", directory / "..data")
    shutil.rmtree(directory / old)


@pytest.fixture(scope="module")
def pod(image: str) -> Iterator[Pod]:
    base = Path(f"/var/tmp/dyntel-pod-{uuid.uuid4().hex[:8]}")
    base.mkdir(mode=0o755)
    app_dir = base / "app"
    app_dir.mkdir()
    shutil.copy(APP, app_dir / "app.py")
    (app_dir / "app.py").chmod(0o444)
    state = base / "state"
    state.mkdir()
    state.chmod(0o777)  # an emptyDir: root's, 0777; dyntel makes artifacts/ 0700 in it
    rules = base / "rules"
    rules.mkdir()
    _configmap(rules, {"sidecar.yaml": RULES})
    app = f"app-{uuid.uuid4().hex[:8]}"
    pod = Pod(image, base, app, "", state, rules)
    try:
        # The app: its own uid, no capabilities, the default seccomp profile; the pod's network (a bridge).
        podman("run", "-d", "--name", app, "--user", f"{APP_UID}:{APP_UID}", "--cap-drop", "ALL", "--read-only",
               "--image-volume", "ignore", *_ulimits(), "-v", f"{app_dir}:/app:ro",
               "--entrypoint", "/usr/bin/python3", image, "/app/app.py", str(APP_PORT), "dyntel-app")
        pod.ip = podman("inspect", "--format", "{{.NetworkSettings.IPAddress}}", app).stdout.strip()
        assert pod.ip, "the app container has no IP address"
        _wait_for(f"http://{pod.ip}:{APP_PORT}/", 60, "the app")
        yield pod
    finally:
        for name in [*pod.containers, app]:
            podman("rm", "-f", "-t", "0", name, check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def host_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """The same app as a process of this host (uid 1000, thread name dyntel-host): (pid, port)."""
    directory = Path(f"/var/tmp/dyntel-hostapp-{uuid.uuid4().hex[:8]}")
    directory.mkdir(mode=0o755)
    shutil.copy(APP, directory / "app.py")
    (directory / "app.py").chmod(0o444)
    port = 18000 + os.getpid() % 1000
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else shutil.which("python3") or "python3"
    proc = subprocess.Popen(["setpriv", f"--reuid={APP_UID}", f"--regid={APP_UID}", "--clear-groups", python,
                             str(directory / "app.py"), str(port), "dyntel-host"], cwd=directory)
    try:
        _wait_for(f"http://127.0.0.1:{port}/", 30, "the host app")
        yield proc.pid, port
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def sidecar(pod: Pod, host_app: tuple[int, int]) -> Iterator[str]:
    """dyntel run in the pod, ready: its container's name."""
    args = pod.dyntel_args()
    name = args[args.index("--name") + 1]
    start = time.monotonic()
    podman("run", "-d", *args, pod.image, "run", "--rules", "/etc/dyntel/rules", "--quota", "1536MB")
    try:
        ready = _wait_for(f"http://{pod.ip}:{METRICS_PORT}/readyz", 120, "dyntel's /readyz")
    except AssertionError:
        print(podman("logs", name, check=False).stderr)
        raise
    _record("podman run to /readyz answering 200 from outside the pod, s", round(time.monotonic() - start, 2))
    _record("of which after the container started, s", round(ready, 2))
    yield name
    print(podman("logs", name, check=False).stderr[-4000:])


def _exec(container: str, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return podman("exec", container, *argv, check=False, timeout=timeout)


def _artifact(pod: Pod, path_text: str) -> Path:
    """The host path of an artifact a container names (/var/lib/dyntel/...)."""
    return pod.state / Path(path_text).relative_to("/var/lib/dyntel")


def _detail(stderr: str, key: str) -> str:
    match = re.search(rf"^  {key}: (.*)$", stderr, re.M)
    assert match, (key, stderr)
    return match.group(1)


# --- the sidecar -------------------------------------------------------------------------------------------------


def test_stacks_by_hand_give_the_apps_python_and_native_frames(pod: Pod, sidecar: str) -> None:
    done = _exec(sidecar, "dyntel", "action", "stacks", "--pid", "1")
    assert done.returncode == 0, done.stderr
    report = done.stdout
    assert "Python:" in report and "Native:" in report, report
    assert "wait_for_requests (/app/app.py" in report and "serve_forever" in report, report
    assert re.search(r"\b(__)?poll\b|\bselect\b", report), report  # the libc call the main thread waits in
    assert "Errors:" not in report, report
    # By hand, the report lands where dyntel run's artifacts go: one place in the pod.
    path = _artifact(pod, _detail(done.stderr, "text_path"))
    assert path.parent == pod.artifacts() and path.is_file()


def test_dump_by_hand_is_a_minidump_lldb_and_the_minidump_package_read(pod: Pod, sidecar: str) -> None:
    from minidump.minidumpfile import MinidumpFile

    done = _exec(sidecar, "dyntel", "action", "dump", "--pid", "1", "--format", "minidump")
    assert done.returncode == 0, done.stderr
    path = _artifact(pod, _detail(done.stderr, "path"))
    assert path.parent == pod.artifacts()
    st = path.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (10001, 0o600)
    dump = MinidumpFile.parse(str(path))
    assert dump.threads is not None and dump.threads.threads
    modules = [m.name for m in dump.modules.modules]
    assert any(m.endswith("/python3.11") for m in modules), modules
    if shutil.which("lldb") is None:
        _unavailable("lldb is not installed (.ci/run installs it)")
    lldb = subprocess.run(["lldb", "--batch", "-c", str(path), "-o", "thread list", "-o", "image list"],
                          capture_output=True, text=True, timeout=120)
    assert "thread #1" in lldb.stdout and "python3.11" in lldb.stdout, lldb.stdout + lldb.stderr


def _firing_records(pod: Pod, rule: str, deadline_s: float, want: int = 1) -> list[dict[str, Any]]:
    log = pod.artifacts() / "actions.jsonl"
    start = time.monotonic()
    records: list[dict[str, Any]] = []
    while time.monotonic() - start < deadline_s:
        if log.exists():
            records = [r for r in map(json.loads, log.read_text().splitlines()) if r.get("rule") == rule]
            if len(records) >= want:
                return records
        time.sleep(0.2)
    raise AssertionError(f"no {want} outcomes of {rule} in {log} after {deadline_s} s: {records}")


def test_run_fires_a_rule_the_app_triggers(pod: Pod, sidecar: str) -> None:
    code, _ = _get(f"http://{pod.ip}:{APP_PORT}/fork")
    assert code == 200
    records = _firing_records(pod, "app-forked", 90, want=3)
    by_type = {r["type"]: r for r in records}
    assert {r["status"] for r in records} == {"ok"}, records
    for kind, key in (("stacks", "path"), ("dump", "path")):
        path = _artifact(pod, str(by_type[kind][key]))
        st = path.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (10001, 0o600), (kind, path)
    stacks = _artifact(pod, str(by_type["stacks"]["text_path"])).read_text()
    assert "wait_for_requests" in stacks or "do_GET" in stacks, stacks


def test_a_sidecar_sees_pid_0_for_processes_outside_its_pod(pod: Pod, sidecar: str,
                                                            host_app: tuple[int, int]) -> None:
    pid, port = host_app
    assert _get(f"http://127.0.0.1:{port}/fork")[0] == 200
    start = time.monotonic()
    while time.monotonic() - start < 60:
        logs = podman("logs", sidecar, check=False).stderr + podman("logs", sidecar, check=False).stdout
        found = re.search(r"outside the pod: pid (\d+), host pid (\d+)", logs)
        if found:
            assert found.groups() == ("0", str(pid)), found.group(0)
            return
        time.sleep(0.5)
    raise AssertionError(f"no 'outside the pod' line in dyntel's log:\n{logs[-3000:]}")


def test_health_ready_and_metrics_answer_from_outside_the_pod(pod: Pod, sidecar: str) -> None:
    base = f"http://{pod.ip}:{METRICS_PORT}"
    assert _get(base + "/healthz")[0] == 200
    assert _get(base + "/readyz")[0] == 200
    code, body = _get(base + "/metrics")
    assert code == 200 and "# TYPE" in body and "dyntel_" in body


def test_rules_reload_when_the_kubelet_updates_the_configmap(pod: Pod, sidecar: str) -> None:
    extra = """\
  - name: added-later
    match: {provider: sched, event: sched_process_exec}
    condition: pid == 1
    actions:
      - log: {message: "never: the app does not exec"}
"""
    _configmap_update(pod.rules, {"sidecar.yaml": RULES + extra})
    start = time.monotonic()
    while time.monotonic() - start < 60:
        code, body = _get(f"http://{pod.ip}:{METRICS_PORT}/status")
        if code == 200 and "added-later" in body:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"the new rule never showed in /status: {body[:2000]}")


def _caps_without(cap: str) -> tuple[str, ...]:
    return tuple(c for c in CAPS if c != cap)


@pytest.mark.parametrize("cap", CAPS)
def test_each_capability_missing_gives_the_documented_message(pod: Pod, sidecar: str, cap: str) -> None:
    rows = {row["capability"]: row["without it"] for row in doc_table("capability", "needed for", "without it")}
    # Beside the running sidecar, in its network namespace: a port of its own.
    args = pod.dyntel_args(caps=_caps_without(cap), env={"DYNTEL_METRICS_LISTEN": "127.0.0.1:9470"})
    if cap == "SYS_PTRACE":
        argv = ["action", "dump", "--pid", "1"]
    else:
        argv = ["run", "--rules", "/etc/dyntel/rules", "--duration", "2", "--no-reload"]
    done = podman("run", *args, pod.image, *argv, check=False)
    assert done.returncode == 1, (cap, done.stdout, done.stderr)
    assert _message(rows["CAP_" + cap]).search(done.stdout + done.stderr), (cap, done.stderr)


def test_podmans_default_seccomp_profile_refuses_perf_event_open(pod: Pod, sidecar: str) -> None:
    # The sidecar runs with deploy/seccomp/dyntel.json; podman's default profile (containers/common) allows
    # perf_event_open only with CAP_SYS_ADMIN, and dyntel says so.
    args = pod.dyntel_args(seccomp=None, env={"DYNTEL_METRICS_LISTEN": "127.0.0.1:9471"})
    done = podman("run", *args, pod.image, "run", "--rules", "/etc/dyntel/rules", "--duration", "2", "--no-reload",
                  check=False)
    assert done.returncode == 1, done.stderr
    said = " ".join(done.stderr.split())
    assert "although this process has CAP_PERFMON. Something else refuses it: in a container, the seccomp profile" \
        in said, said
    seccomp = " ".join(DOCS.read_text().split("### Seccomp")[1].split("## Mounts")[0].split())
    assert "although this process has CAP_PERFMON. Something else refuses it: in a container, the seccomp profile" \
        in seccomp


# --- allowPrivilegeEscalation: false, per runtime ---------------------------------------------------------------

_STATUS = ("import dyntel.privileges as p; p.raise_permitted(); "
           "print(''.join(l for l in open('/proc/self/status') if l.startswith(('NoNewPrivs', 'Cap'))))")
_NAMES = {38: "CAP_PERFMON", 19: "CAP_SYS_PTRACE", 2: "CAP_DAC_READ_SEARCH"}


def _held(pod: Pod, runtime: Path | str, nnp: bool) -> tuple[int, str]:
    args = pod.dyntel_args(nnp=nnp)
    done = podman("run", "--rm", *args, "--entrypoint", INTERPRETER, pod.image, "-I", "-c", _STATUS,
                  runtime=runtime, check=False)
    assert done.returncode == 0, done.stderr
    status = dict(line.split(":\t") for line in done.stdout.split("\n") if ":\t" in line)
    mask = int(status["CapEff"], 16)
    held = " ".join(name for bit, name in sorted(_NAMES.items(), reverse=True) if mask >> bit & 1)
    return int(status["NoNewPrivs"]), held or "none"


def test_no_new_privs_per_runtime_is_what_the_docs_say(pod: Pod, sidecar: str) -> None:
    runtimes = {"containerd, CRI-O": RUNC_CRI, "podman": "runc"}
    table = doc_table("runtime", "allowPrivilegeEscalation", "NoNewPrivs", "dyntel holds")
    seen = []
    for row in table:
        runtime = next(v for k, v in runtimes.items() if row["runtime"].startswith(k))
        nnp = row["allowPrivilegeEscalation"] == "false"
        seen.append((row["runtime"], row["allowPrivilegeEscalation"], *map(str, _held(pod, runtime, nnp))))
    assert seen == [tuple(r.values()) for r in table]


def test_the_cri_shape_gives_a_file_without_capabilities_none(pod: Pod, sidecar: str) -> None:
    # Why the tests run podman through runc-cri: podman's own shape gives uid 10001 the capabilities as ambient
    # ones, so that any program would hold them and an image without file capabilities would seem to work.
    show = ["--entrypoint", "/bin/grep", pod.image, "-E", "^Cap(Eff|Amb)", "/proc/self/status"]
    mask = sum(1 << bit for bit in _NAMES)
    for runtime, expected in ((RUNC_CRI, 0), ("runc", mask)):
        done = podman("run", "--rm", *pod.dyntel_args(), *show, runtime=runtime, check=False)
        status = dict(line.split(":\t") for line in done.stdout.splitlines())
        assert (int(status["CapEff"], 16), int(status["CapAmb"], 16)) == (expected, expected), (runtime, done)


def test_with_no_new_privs_the_actions_work_in_the_cri_shape(pod: Pod, sidecar: str) -> None:
    # allowPrivilegeEscalation: false under containerd: stacks by hand, native frames (eu-stack) included.
    args = pod.dyntel_args(nnp=True)
    done = podman("run", "--rm", *args, pod.image, "action", "stacks", "--pid", "1", check=False)
    assert done.returncode == 0, done.stderr
    assert "wait_for_requests" in done.stdout and "Native:" in done.stdout and "Errors:" not in done.stdout


# --- the DaemonSet shape -----------------------------------------------------------------------------------------


def test_the_daemonset_shape_acts_on_a_host_process(pod: Pod, host_app: tuple[int, int]) -> None:
    pid, port = host_app
    metrics = 19000 + os.getpid() % 1000
    rules = pod.base / "host-rules"
    rules.mkdir()
    _configmap(rules, {"host.yaml": HOST_RULES.format(pid=pid)})
    state = pod.base / "host-state"
    state.mkdir()
    state.chmod(0o777)
    host_pod = Pod(pod.image, pod.base, pod.app, "127.0.0.1", state, rules, pod.containers)
    args = host_pod.dyntel_args(host=True, env={"DYNTEL_METRICS_LISTEN": f"127.0.0.1:{metrics}"})
    name = args[args.index("--name") + 1]
    stacks = podman("run", "--rm", *args[2:], pod.image, "action", "stacks", "--pid", str(pid), check=False)
    assert stacks.returncode == 0, stacks.stderr
    assert "wait_for_requests" in stacks.stdout and "Native:" in stacks.stdout, stacks.stdout
    # No permission is missing (eu-stack may stop at a frame without unwind tables, as it does outside a container).
    assert not re.search(r"denied|not permitted|CAP_", stacks.stdout), stacks.stdout
    podman("run", "-d", *args, pod.image, "run", "--rules", "/etc/dyntel/rules", "--quota", "1536MB")
    _wait_for(f"http://127.0.0.1:{metrics}/readyz", 120, "dyntel's /readyz (DaemonSet shape)")
    assert _get(f"http://127.0.0.1:{port}/fork")[0] == 200
    start = time.monotonic()
    logs = ""
    while time.monotonic() - start < 60:
        logs = podman("logs", name, check=False).stderr
        found = re.search(r"on the host: pid (\d+), host pid (\d+)", logs)
        if found:
            # hostPID: the event's pid is the host's.
            assert found.groups() == (str(pid), str(pid)), found.group(0)
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"no 'on the host' line:\n{logs[-3000:]}")
    records = _firing_records(host_pod, "host-forked", 90, want=3)
    assert {r["status"] for r in records} == {"ok"}, records
    dump = next(r for r in records if r["type"] == "dump")
    assert _artifact(host_pod, str(dump["path"])).stat().st_size > 0
