"""The deployment files agree with docs/deploy.md and with each other, the manifests validate against Kubernetes'
schemas, the systemd unit parses, and on this kernel the documented capabilities are enough and each is needed."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "deploy.md"
DOCKERFILE = ROOT / "Dockerfile"
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
WORKLOADS = [ROOT / "deploy" / "kubernetes" / n for n in ("sidecar.yaml", "daemonset.yaml")]
UNIT = ROOT / "deploy" / "systemd" / "dyntel.service"
SYSUSERS = ROOT / "deploy" / "systemd" / "dyntel-sysusers.conf"
# Fixed schema versions kubernetes-validate bundles: the oldest we promise and the newest it has.
K8S_VERSIONS = ("1.30.0", "1.37.0")


# --- readers ----------------------------------------------------------------------------------------------------


def tables(markdown: str) -> list[list[dict[str, str]]]:
    """Every markdown table, as rows keyed by the header's cells."""
    out: list[list[dict[str, str]]] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\|(\s*-+\s*\|)+", lines[i + 1]):
            header = [c.strip() for c in lines[i].strip("|").split("|")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split(" | ")]
                rows.append(dict(zip(header, cells, strict=True)))
                i += 1
            out.append(rows)
        else:
            i += 1
    return out


def doc_table(*columns: str) -> list[dict[str, str]]:
    for table in tables(DOCS.read_text()):
        if table and list(table[0])[: len(columns)] == list(columns):
            return table
    raise AssertionError(f"docs/deploy.md has no table with columns {' | '.join(columns)}")


def documented_caps() -> set[str]:
    return {row["capability"] for row in doc_table("capability", "needed for", "without it")}


def refused_caps() -> set[str]:
    return {row["capability"] for row in doc_table("capability", "why not")}


def documented_mounts() -> dict[str, str]:
    """path → access (read-write / read-only)."""
    return {row["path"]: row["access"] for row in doc_table("mount", "path", "access", "needed for", "without it")}


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and not pending):
            continue
        pending += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def docker_args() -> dict[str, str]:
    return dict(a.split("=", 1) for w, a in dockerfile() if w == "ARG" and "=" in a)


def docker_final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile()
    last_from = max(i for i, (w, _) in enumerate(instructions) if w == "FROM")
    return instructions[last_from:]


def docker_file_caps() -> dict[str, set[str]]:
    """setcap'd file → its capabilities, upper-case CAP_ names."""
    out = {}
    for word, args in docker_final_stage():
        if word == "RUN":
            for caps, path in re.findall(r"setcap (\S+)=p (\S+)", args):
                out[path] = {c.upper() for c in caps.split(",")}
    return out


def k8s_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def dyntel_container(path: Path) -> dict[str, Any]:
    [workload] = [d for d in k8s_docs(path) if d["kind"] in ("Deployment", "DaemonSet")]
    [container] = [c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == "dyntel"]
    return dict(container)


def pod_spec(path: Path) -> dict[str, Any]:
    [workload] = [d for d in k8s_docs(path) if d["kind"] in ("Deployment", "DaemonSet")]
    return dict(workload["spec"]["template"]["spec"])


def unit() -> configparser.ConfigParser:
    # systemd units repeat keys (Environment=) and use % and $ freely: no strictness, no interpolation.
    parser = configparser.ConfigParser(strict=False, interpolation=None, empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


# --- the manifests are Kubernetes objects ------------------------------------------------------------------------


def _kubernetes_validate() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("kubernetes-validate is not installed (it belongs to the dev extras)")
        pytest.skip("needs kubernetes-validate (pip install kubernetes-validate)")
    return kubernetes_validate


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates_strictly(path: Path, version: str) -> None:
    kv = _kubernetes_validate()
    docs = k8s_docs(path)
    assert docs
    for doc in docs:
        kv.validate(doc, version, strict=True)  # raises ValidationError naming the field


def test_the_validator_does_catch_a_wrong_manifest() -> None:
    kv = _kubernetes_validate()
    [doc] = [d for d in k8s_docs(WORKLOADS[0]) if d["kind"] == "Deployment"]
    doc["spec"]["template"]["spec"]["shareProcessNamespaces"] = True  # a typo strict validation must refuse
    with pytest.raises(kv.ValidationError):
        kv.validate(doc, K8S_VERSIONS[0], strict=True)


def test_the_configmap_rules_load(tmp_path: Path) -> None:
    from dyntel.rules.loader import check_rules

    [config_map] = [d for d in k8s_docs(ROOT / "deploy" / "kubernetes" / "configmap-rules.yaml")
                    if d["kind"] == "ConfigMap"]
    for name, text in config_map["data"].items():
        (tmp_path / name).write_text(text)
    assert [str(e) for e in check_rules([str(tmp_path)])] == []
    for path in WORKLOADS:
        [volume] = [v for v in pod_spec(path)["volumes"] if v["name"] == "rules"]
        assert volume["configMap"]["name"] == config_map["metadata"]["name"]


# --- capabilities ------------------------------------------------------------------------------------------------


def test_docs_list_capabilities_once() -> None:
    granted, refused = documented_caps(), refused_caps()
    assert granted == {"CAP_PERFMON", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"}
    assert not granted & refused and "CAP_BPF" in refused and "CAP_SYS_ADMIN" in refused


@pytest.mark.parametrize("path", WORKLOADS, ids=lambda p: p.name)
def test_manifest_capabilities_are_the_documented_ones(path: Path) -> None:
    caps = dyntel_container(path)["securityContext"]["capabilities"]
    assert caps["drop"] == ["ALL"]
    assert {"CAP_" + c for c in caps["add"]} == documented_caps()
    assert len(caps["add"]) == len(set(caps["add"]))


def test_dockerfile_file_capabilities_are_the_documented_ones() -> None:
    file_caps = docker_file_caps()
    interpreter = "/opt/dyntel/bin/python3.11"
    assert file_caps[interpreter] == documented_caps()
    # Everything set on any file must be in the pods' bounding set, or the kernel refuses to execute the file.
    # One file: the helpers (eu-stack, py-spy) get theirs as ambient capabilities from dyntel (dyntel/privileges.py).
    assert list(file_caps) == [interpreter]
    # Permitted only: never the effective bit, which makes the kernel refuse the file when the bounding set lacks
    # one of them (test_file_capabilities_* below).
    run = " ".join(a for w, a in docker_final_stage() if w == "RUN")
    assert "+ep" not in run and "+eip" not in run and "=ep" not in run
    # chown(2) clears file capabilities: the owner is set first.
    assert run.index(f"chown root:dyntel {interpreter}") < run.index("setcap ")
    # The console script runs the interpreter that has them, isolated from PYTHON* variables.
    assert f"#!{interpreter} -I" in run


def test_systemd_capabilities_are_the_documented_ones() -> None:
    service = unit()["Service"]
    assert set(service["AmbientCapabilities"].split()) == documented_caps()
    assert set(service["CapabilityBoundingSet"].split()) == documented_caps()
    assert service["NoNewPrivileges"] == "yes"


def test_refused_capabilities_are_nowhere() -> None:
    refused = refused_caps()
    for path in WORKLOADS:
        assert not {"CAP_" + c for c in dyntel_container(path)["securityContext"]["capabilities"]["add"]} & refused
    for caps in docker_file_caps().values():
        assert not caps & refused
    service = unit()["Service"]
    assert not set(service["AmbientCapabilities"].split()) & refused
    assert not set(service["CapabilityBoundingSet"].split()) & refused


@pytest.mark.parametrize("path", WORKLOADS, ids=lambda p: p.name)
def test_non_root_with_file_capabilities_needs_privilege_escalation(path: Path) -> None:
    # true, although under containerd and CRI-O false works too (docs/deploy.md; tests/test_container.py runs it):
    # runtimes that hand the capabilities otherwise would leave dyntel without them under no_new_privs.
    context = dyntel_container(path)["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] != 0
    assert context["allowPrivilegeEscalation"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod_spec(path)["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


# --- the user ----------------------------------------------------------------------------------------------------


def test_one_uid_everywhere() -> None:
    args = docker_args()
    uid, gid = int(args["DYNTEL_UID"]), int(args["DYNTEL_GID"])
    assert uid != 0
    [user] = [a for w, a in docker_final_stage() if w == "USER"]
    assert user == f"{uid}:{gid}"
    run = " ".join(a for w, a in docker_final_stage() if w == "RUN")
    assert "useradd --system --uid ${DYNTEL_UID} --gid dyntel" in run and "--gid ${DYNTEL_GID} dyntel" in run
    for path in WORKLOADS:
        context = dyntel_container(path)["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid)
    assert unit()["Service"]["User"] == "dyntel"
    sysusers = [line.split() for line in SYSUSERS.read_text().splitlines() if line and not line.startswith("#")]
    assert ["g", "dyntel", str(gid)] in sysusers
    assert any(fields[:3] == ["u", "dyntel", f"{uid}:{gid}"] for fields in sysusers)
    assert f"uid and gid\n**{uid}**" in DOCS.read_text() or f"(uid and gid **{uid}**)" in DOCS.read_text()


# --- mounts ------------------------------------------------------------------------------------------------------


def test_dockerfile_volumes_are_the_documented_mounts() -> None:
    [volumes] = [json.loads(a) for w, a in docker_final_stage() if w == "VOLUME"]
    assert set(volumes) == set(documented_mounts())


@pytest.mark.parametrize("path", WORKLOADS, ids=lambda p: p.name)
def test_manifest_mounts_are_the_documented_ones(path: Path) -> None:
    mounts = {m["mountPath"]: ("read-only" if m.get("readOnly") else "read-write")
              for m in dyntel_container(path)["volumeMounts"]}
    assert mounts == documented_mounts()
    volumes = {v["name"]: v for v in pod_spec(path)["volumes"]}
    by_path = {m["mountPath"]: volumes[m["name"]] for m in dyntel_container(path)["volumeMounts"]}
    assert by_path["/sys/kernel/tracing"]["hostPath"] == {"path": "/sys/kernel/tracing", "type": "Directory"}
    assert "sizeLimit" in by_path["/var/lib/dyntel"]["emptyDir"]


def test_sidecar_shares_the_pid_namespace_and_the_daemonset_the_hosts() -> None:
    sidecar, daemonset = (pod_spec(p) for p in WORKLOADS)
    assert sidecar["shareProcessNamespace"] is True and "hostPID" not in sidecar
    assert daemonset["hostPID"] is True
    assert [c["name"] for c in sidecar["containers"]] == ["app", "dyntel"]


def test_systemd_paths_are_the_documented_ones() -> None:
    service = unit()["Service"]
    writable = set(service["ReadWritePaths"].split()) | {f"/var/lib/{service['StateDirectory']}"}
    assert writable == {p for p, a in documented_mounts().items() if a == "read-write" and p != "/tmp"}
    assert service["PrivateTmp"] == "yes"  # /tmp of its own, as the pods' emptyDir
    assert service["ProtectSystem"] == "strict"
    assert service.get("ProtectProc", "default") == "default"  # dumps need the host's processes


def test_the_rules_path_is_the_same_everywhere() -> None:
    rules = [p for p, a in documented_mounts().items() if a == "read-only"]
    assert rules == ["/etc/dyntel/rules"]
    final = docker_final_stage()
    [cmd] = [json.loads(a) for w, a in final if w == "CMD"]
    [entrypoint] = [json.loads(a) for w, a in final if w == "ENTRYPOINT"]
    assert entrypoint == ["dyntel"] and cmd == ["run", "--rules", rules[0]]
    for path in WORKLOADS:
        args = dyntel_container(path)["args"]
        assert args[:3] == ["run", "--rules", rules[0]]
    exec_start = shlex.split(unit()["Service"]["ExecStart"])
    assert exec_start[1:4] == ["run", "--rules", rules[0]]


@pytest.mark.parametrize("path", WORKLOADS, ids=lambda p: p.name)
def test_probes_and_metrics_port(path: Path) -> None:
    container = dyntel_container(path)
    [port] = container["ports"]
    assert (port["name"], port["containerPort"]) == ("metrics", 9464)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["DYNTEL_METRICS_LISTEN"] == "0.0.0.0:9464"
    assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]["cpu"]
    assert ("EXPOSE", "9464") in docker_final_stage()


def test_the_artifact_quota_stays_below_the_emptydir_limit() -> None:
    from dyntel.units import parse_size

    for path in WORKLOADS:
        args = dyntel_container(path)["args"]
        quota = parse_size(args[args.index("--quota") + 1])
        [state] = [v for v in pod_spec(path)["volumes"] if v["name"] == "state"]
        limit = state["emptyDir"]["sizeLimit"]
        assert limit.endswith("Gi")
        assert quota < int(limit[:-2]) << 30


# --- the systemd unit --------------------------------------------------------------------------------------------


def test_systemd_unit_parses() -> None:
    parsed = unit()
    assert parsed.sections() == ["Unit", "Service", "Install"]
    assert parsed["Install"]["WantedBy"] == "multi-user.target"
    assert parsed["Service"]["StateDirectoryMode"] == "0700"
    assert "@debug" in parsed["Service"]["SystemCallFilter"].split()  # perf_event_open, ptrace


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    # verify checks that ExecStart exists; point it at one that does.
    text = UNIT.read_text().replace("ExecStart=/opt/dyntel/bin/dyntel", "ExecStart=/bin/true")
    copy = tmp_path / "dyntel.service"
    copy.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines() if "dyntel.service" in line]
    assert problems == [], problems


# --- on this kernel: what the docs say about capabilities --------------------------------------------------------


def _need_root_and(tool: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if shutil.which(tool) is None:
        pytest.skip(f"needs {tool}")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dyntel-deploy-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _as_nobody(argv: list[str], *, caps: set[str] | frozenset[str] = frozenset(), nnp: bool = False,
               cwd: Path | None = None,
               ) -> subprocess.CompletedProcess[str]:
    names = ",".join("+" + c.removeprefix("CAP_").lower() for c in sorted(caps))
    extra = [f"--inh-caps={names}", f"--ambient-caps={names}"] if caps else []
    if nnp:
        extra.append("--no-new-privs")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *extra, *argv],
                          capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


def test_file_capabilities_are_void_under_no_new_privs_and_need_the_bounding_set(shared_dir: Path) -> None:
    # What docs/deploy.md says of file capabilities, on this kernel: a process that holds none loses them under
    # no_new_privs; with the effective bit (+ep) a bounding set without one of them refuses the execve, while the
    # image's permitted-only form (=p) runs with what the bounding set leaves.
    _need_root_and("setcap")
    binary = shared_dir / "cat"
    shutil.copy("/bin/cat", binary)
    caps = ",".join(c.lower() for c in sorted(documented_caps()))
    subprocess.run(["setcap", f"{caps}+ep", str(binary)], check=True)
    mask = sum(1 << n for n in (38, 19, 2))  # CAP_PERFMON, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH
    shell = f"{binary} /proc/self/status | grep CapEff"
    plain = _as_nobody(["/bin/sh", "-c", shell])
    assert int(plain.stdout.split()[1], 16) == mask, plain.stderr
    no_new_privs = _as_nobody(["/bin/sh", "-c", shell], nnp=True)
    assert int(no_new_privs.stdout.split()[1], 16) == 0
    narrow = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--bounding-set=-sys_ptrace",
              str(binary), "/proc/self/status"]
    refused = subprocess.run(narrow, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "Operation not permitted" in refused.stderr
    subprocess.run(["setcap", f"{caps}=p", str(binary)], check=True)
    runs = subprocess.run(narrow, capture_output=True, text=True, timeout=60)
    assert runs.returncode == 0, runs.stderr
    permitted = next(line for line in runs.stdout.splitlines() if line.startswith("CapPrm:"))
    assert int(permitted.split()[1], 16) == mask & ~(1 << 19)


def _message(cell: str) -> re.Pattern[str]:
    """The first quoted message of a docs cell, up to its '...', as a pattern: numbers and the example process
    name stand for any."""
    quoted = re.findall(r"`([^`]*\.\.\.)`", cell)
    assert quoted, f"no `message ...` in {cell!r}"
    text = quoted[0].removesuffix("...").rstrip()
    pattern = re.sub(r"\d+", r"\\d+", re.escape(text)).replace(re.escape("(app)"), r"\([^)]*\)")
    return re.compile(pattern)


RULE = """\
version: 1
rules:
  - name: any-switch
    match: {provider: sched, event: sched_switch}
    actions:
      - log: {message: "switch"}
"""


@pytest.mark.kernel
def test_the_documented_capabilities_are_enough_and_each_is_needed(shared_dir: Path) -> None:
    _need_root_and("setpriv")
    rules = shared_dir / "rules.yaml"
    rules.write_text(RULE)
    rules.chmod(0o644)
    for name in ("artifacts", "dumps"):
        (shared_dir / name).mkdir()
        os.chown(shared_dir / name, 65534, 65534)  # dyntel's own directories, as the state volume gives it
    run = [sys.executable, "-m", "dyntel.cli", "run", "--rules", str(rules), "--duration", "0.5", "--no-reload",
           "--dry-run", "--artifacts", str(shared_dir / "artifacts")]
    full = documented_caps()
    ok = _as_nobody(run, caps=full, cwd=shared_dir)
    assert ok.returncode == 0, ok.stderr
    assert "firing(s)" in ok.stderr
    rows = {row["capability"]: row["without it"] for row in doc_table("capability", "needed for", "without it")}
    for cap in ("CAP_PERFMON", "CAP_DAC_READ_SEARCH"):
        without = _as_nobody(run, caps=full - {cap}, cwd=shared_dir)
        assert without.returncode == 1, (cap, without.stderr)
        assert _message(rows[cap]).search(without.stderr), (cap, without.stderr)
    # CAP_SYS_PTRACE: a dump of a root process, with and without it.
    target = subprocess.Popen(["sleep", "30"])
    try:
        dump = [sys.executable, "-m", "dyntel.cli", "action", "dump", "--pid", str(target.pid), "--dir",
                str(shared_dir / "dumps")]
        refused = _as_nobody(dump, caps=full - {"CAP_SYS_PTRACE"}, cwd=shared_dir)
        assert _message(rows["CAP_SYS_PTRACE"]).search(refused.stdout + refused.stderr), refused
        allowed = _as_nobody(dump, caps=full, cwd=shared_dir)
        assert "dump: ok" in allowed.stdout + allowed.stderr, allowed
    finally:
        target.kill()
        target.wait()
