"""The config file: validated with positions, and the precedence defaults < file < environment < flags."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

from dyntel.config import KEYS, env_name, resolve
from dyntel.rules.errors import RuleErrors

CONFIG = """\
rules: [rules/]
artifacts:
  dir: /var/lib/dyntel/artifacts
  quota: 1GB
  keep: 10
actions:
  workers: 3
  limits: {dump: 3/1h}
metrics:
  listen: 0.0.0.0:9464
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "dyntel.yaml"
    path.write_text(text)
    path.chmod(0o644)
    return str(path)


def test_precedence_defaults_file_environment_flags(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)
    env = {"DYNTEL_ARTIFACTS_KEEP": "7", "DYNTEL_ACTIONS_WORKERS": "5", "DYNTEL_SOURCES_EVENTS": "a:b, c:d"}
    s = resolve(path, env=env, flags={"actions.workers": 9, "actions.queue": None})
    assert s["artifacts.quota"] == 1 << 30 and s.origin["artifacts.quota"] == f"{path}:4:10"  # file
    assert s["artifacts.dir"] == "/var/lib/dyntel/artifacts"
    assert s["artifacts.keep"] == 7 and s.origin["artifacts.keep"] == "$DYNTEL_ARTIFACTS_KEEP"  # env over file
    assert s["actions.workers"] == 9 and s.origin["actions.workers"] == "flag"  # flag over env over file
    assert s["actions.queue"] == 64 and s.origin["actions.queue"] == "default"  # a flag not given is not a value
    assert s["sources.events"] == ["a:b", "c:d"]
    assert s["artifacts.min_free"] == KEYS["artifacts.min_free"].default
    assert s["actions.limits"] == {"dump": "3/1h"}


def test_the_config_file_can_come_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)
    assert resolve(None, env={"DYNTEL_CONFIG": path})["actions.workers"] == 3
    assert resolve(None, env={}).config_file is None


def test_errors_name_the_place(tmp_path: Path) -> None:
    path = write(tmp_path, "artifacts:\n  quota: lots\n  dirr: x\nmetrcs: {}\n")
    with pytest.raises(RuleErrors) as e:
        resolve(path, env={})
    messages = [str(x) for x in e.value.errors]
    assert messages == [
        f"{path}:2:10: artifacts.quota: bad size 'lots': expected a number of bytes or a number and a unit "
        "(KB, MB, GB), like 512MB or 2GB",
        f"{path}:3:3: unknown key 'dirr' in artifacts; expected one of: dir, quota, keep, min_free "
        "(did you mean 'dir'?)",
        f"{path}:4:1: unknown key 'metrcs' in the top level of a config file; expected one of: rules, sources, "
        "artifacts, actions, metrics, forward, security, log (did you mean 'metrics'?)",
    ]
    with pytest.raises(RuleErrors, match="DYNTEL_ARTIFACTS_KEEP: invalid literal"):
        resolve(None, env={"DYNTEL_ARTIFACTS_KEEP": "many"})


def test_every_key_has_an_environment_name() -> None:
    assert env_name("artifacts.min_free") == "DYNTEL_ARTIFACTS_MIN_FREE"
    assert len({env_name(k) for k in KEYS}) == len(KEYS)


def test_dyntel_config_show(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)
    proc = subprocess.run([sys.executable, "-m", "dyntel.cli", "config", "show", "--config", path, "--json"],
                          capture_output=True, text=True, cwd=ROOT, env={"DYNTEL_ARTIFACTS_KEEP": "7",
                                                                        "PATH": "/usr/bin:/bin"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["values"]["artifacts.keep"] == 7 and doc["origin"]["artifacts.keep"] == "$DYNTEL_ARTIFACTS_KEEP"
    assert doc["values"]["metrics.listen"] == "0.0.0.0:9464"
    text = subprocess.run([sys.executable, "-m", "dyntel.cli", "config", "show", "--config", path],
                          capture_output=True, text=True, cwd=ROOT, timeout=60).stdout
    assert f"artifacts.quota: 1073741824    # {path}:4:10" in text


def test_dyntel_artifacts_is_still_read() -> None:
    s = resolve(None, env={"DYNTEL_ARTIFACTS": "/a"})
    assert s["artifacts.dir"] == "/a" and s.origin["artifacts.dir"] == "$DYNTEL_ARTIFACTS"
    assert resolve(None, env={"DYNTEL_ARTIFACTS": "/a", "DYNTEL_ARTIFACTS_DIR": "/b"})["artifacts.dir"] == "/b"


def test_allow_exec_adds_exec_to_the_configs_allow_list(tmp_path: Path) -> None:
    from dyntel.cli import build_parser
    from dyntel.commands._action_flags import settings_from_args

    path = write(tmp_path, "actions:\n  allow: [log, dump]\n")
    args = build_parser().parse_args(["replay", "--config", path, "--allow-exec", "--rules", "r.yaml", "e.jsonl"])
    s = settings_from_args(args)
    assert s["actions.allow"] == ["log", "dump", "exec"]  # exec added, nothing the config left out let back in
    assert s.origin["actions.allow"] == f"{path}:2:10 + --allow-exec"
    plain = settings_from_args(build_parser().parse_args(["replay", "--rules", "r.yaml", "e.jsonl"]))
    assert "exec" not in plain["actions.allow"]
