"""dyntel.security and dyntel.rules.trust: rule files others could have written are refused (real files, real
modes, real users), and secrets are redacted from environments, command lines and alert attributes."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dyntel.rules.trust import check_rule_files
from dyntel.security import (
    REDACTED,
    UntrustedFileError,
    redact,
    redact_nul_separated,
    untrusted_reasons,
)

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534
RULE = """\
version: 1
rules:
  - name: any-switch
    match: {provider: sched, event: sched_switch}
    actions:
      - log: {message: "switch"}
"""


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: files of other users, and setpriv to become nobody")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A 0755 root-owned directory that `nobody` can enter (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="dyntel-security-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _rules(directory: Path, mode: int, name: str = "x.yaml") -> Path:
    path = directory / name
    path.write_text(RULE)
    path.chmod(mode)
    return path


def test_a_world_writable_rule_file_is_refused_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rules").mkdir(mode=0o755)
    _rules(tmp_path / "rules", 0o666)
    assert untrusted_reasons("rules/x.yaml") == [
        "rules/x.yaml is writable by others (mode 0666): chmod go-w rules/x.yaml"]
    with pytest.raises(UntrustedFileError) as e:
        check_rule_files(["rules/x.yaml"])
    assert "rules/x.yaml is writable by others (mode 0666): chmod go-w rules/x.yaml" in str(e.value)
    assert "--insecure-rules" in str(e.value)


def test_a_0644_file_in_a_0755_directory_is_trusted(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir(mode=0o755)
    path = _rules(tmp_path / "rules", 0o644)
    assert untrusted_reasons(path) == []
    assert check_rule_files([str(path)]) == []
    assert check_rule_files([str(tmp_path / "rules")]) == []


def test_group_writable_is_refused_too(tmp_path: Path) -> None:
    path = _rules(tmp_path, 0o664)
    [reason] = untrusted_reasons(path)
    assert "is writable by its group" in reason and "(mode 0664)" in reason and "chmod go-w" in reason


def test_a_world_writable_directory_is_refused_even_with_a_safe_file(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    rules.chmod(0o777)  # anyone may replace x.yaml, however x.yaml's own mode reads
    _rules(rules, 0o644)
    log = io.StringIO()
    reasons = check_rule_files([str(rules)], refuse=False, log=log)
    assert reasons == [f"{rules} is writable by others (mode 0777): chmod go-w {rules}"]
    assert log.getvalue() == f"dyntel: warning: {reasons[0]}\n"
    with pytest.raises(UntrustedFileError):
        check_rule_files([str(rules / "x.yaml")])


def test_every_bad_file_of_a_directory_is_named(tmp_path: Path) -> None:
    _rules(tmp_path, 0o644, "a.yaml")
    _rules(tmp_path, 0o666, "b.yaml")
    _rules(tmp_path, 0o646, "c.yml")
    _rules(tmp_path, 0o666, "notes.txt")  # not a rule file: the loader never reads it
    with pytest.raises(UntrustedFileError) as e:
        check_rule_files([str(tmp_path)])
    assert [r.split(" is ")[0] for r in e.value.reasons] == [str(tmp_path / "b.yaml"), str(tmp_path / "c.yml")]


def test_a_sticky_world_writable_directory_is_accepted(tmp_path: Path) -> None:
    # /tmp: others may add entries but not rename or delete ours.
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    assert untrusted_reasons(_rules(sticky, 0o644)) == []


def test_symlinks_check_both_the_link_and_its_target(tmp_path: Path) -> None:
    safe = tmp_path / "safe"
    safe.mkdir(mode=0o755)
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    target_in_open = _rules(open_dir, 0o644, "target.yaml")
    link_to_open = safe / "link.yaml"
    link_to_open.symlink_to(target_in_open)
    # The file read sits in a directory anyone can write.
    assert untrusted_reasons(link_to_open) == [f"{open_dir} is writable by others (mode 0777): chmod go-w {open_dir}"]
    safe_target = _rules(safe, 0o644, "real.yaml")
    link_in_open = open_dir / "link.yaml"
    link_in_open.symlink_to(safe_target)
    # Anyone can point the link elsewhere.
    assert untrusted_reasons(link_in_open) == [
        f"{open_dir} is writable by others (mode 0777): chmod go-w {open_dir}"]
    good = safe / "good.yaml"
    good.symlink_to(safe_target)
    assert untrusted_reasons(good) == []


def test_a_missing_file_is_left_to_the_loader(tmp_path: Path) -> None:
    assert untrusted_reasons(tmp_path / "missing.yaml") == []


def test_a_file_of_another_user_is_refused_as_root(tmp_path: Path) -> None:
    _need_root()
    path = _rules(tmp_path, 0o644)
    os.chown(path, NOBODY, -1)
    [reason] = untrusted_reasons(path)
    assert reason.startswith(f"{path} is owned by uid {NOBODY}")
    assert "neither root nor the user dyntel runs as (uid 0" in reason and f"chown root:root {path}" in reason
    # The same file is fine for the user who owns it.
    assert untrusted_reasons(path, euid=NOBODY) == []


def _as_nobody(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux)")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=60)


def test_as_nobody_root_owned_and_own_files_are_trusted_others_not(shared_dir: Path) -> None:
    _need_root()
    _rules(shared_dir, 0o644, "root.yaml")
    mine = _rules(shared_dir, 0o644, "mine.yaml")
    os.chown(mine, NOBODY, -1)
    theirs = _rules(shared_dir, 0o644, "theirs.yaml")
    os.chown(theirs, 1234, -1)
    script = ("import sys; from dyntel.security import untrusted_reasons as u; "
              "[print(n, u(n)) for n in sys.argv[1:]]")
    result = _as_nobody([sys.executable, "-c", script, "root.yaml", "mine.yaml", "theirs.yaml"], shared_dir)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "root.yaml []" and lines[1] == "mine.yaml []"
    assert "theirs.yaml is owned by uid 1234" in lines[2] and f"({_user(NOBODY)})" in lines[2]


def _user(uid: int) -> str:
    import pwd

    return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"


def _dyntel_run(*extra: str) -> list[str]:
    return [sys.executable, "-m", "dyntel.cli", "run", "--no-reload", "--duration", "0.2", "--dry-run", *extra]


def test_dyntel_run_refuses_before_opening_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rules").mkdir(mode=0o755)
    _rules(tmp_path / "rules", 0o666)
    result = subprocess.run(_dyntel_run("--rules", "rules/x.yaml"), capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1
    assert "dyntel run: refusing rule files that others could have changed" in result.stderr
    assert "rules/x.yaml is writable by others (mode 0666): chmod go-w rules/x.yaml" in result.stderr
    assert "tracefs" not in result.stderr and "perf_event_open" not in result.stderr
    assert result.stdout == ""


def test_as_nobody_dyntel_run_refuses_first_and_insecure_rules_gets_past_the_check(shared_dir: Path) -> None:
    # nobody can neither read tracefs nor open perf events: what dyntel says tells which check came first.
    _need_root()
    _rules(shared_dir, 0o666)
    refused = _as_nobody(_dyntel_run("--rules", "x.yaml"), shared_dir)
    assert refused.returncode == 1
    assert "x.yaml is writable by others (mode 0666): chmod go-w x.yaml" in refused.stderr
    assert "tracefs" not in refused.stderr and "perf_event_open" not in refused.stderr
    allowed = _as_nobody(_dyntel_run("--rules", "x.yaml", "--insecure-rules"), shared_dir)
    assert "dyntel run: warning: x.yaml is writable by others (mode 0666)" in allowed.stderr
    assert "refusing" not in allowed.stderr
    # Past the check it goes on to the machine, which this user may not use.
    assert allowed.returncode == 1
    assert "/sys/kernel/tracing" in allowed.stderr or "perf_event_open" in allowed.stderr, allowed.stderr


def test_validate_warns_and_still_validates(tmp_path: Path) -> None:
    path = _rules(tmp_path, 0o666)
    result = subprocess.run([sys.executable, "-m", "dyntel.cli", "validate", str(path)], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 1 rule")
    assert f"dyntel validate: warning: {path} is writable by others (mode 0666)" in result.stderr


def test_a_read_only_mount_is_trusted_whatever_its_modes(tmp_path: Path) -> None:
    # A Kubernetes ConfigMap volume: its directory is 0777, but the mount is read-only.
    _need_root()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0777", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        path = _rules(mnt, 0o666)
        assert len(untrusted_reasons(path)) == 2  # the directory and the file
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        assert untrusted_reasons(path) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


# ---------------------------------------------------------------------------------------------------------------
# Redaction


def test_environment_mapping() -> None:
    env = {"PATH": "/usr/bin", "DB_PASSWORD": "hunter2", "GITHUB_TOKEN": "ghp_x", "AWS_REGION": "eu-west-1",
           "API_KEY": "k", "client_secret": "s", "DATABASE_URL": "postgres://app:pw@db:5432/app", "HOME": "/root"}
    assert redact(env) == {"PATH": "/usr/bin", "DB_PASSWORD": REDACTED, "GITHUB_TOKEN": REDACTED,
                           "AWS_REGION": REDACTED, "API_KEY": REDACTED, "client_secret": REDACTED,
                           "DATABASE_URL": f"postgres://app:{REDACTED}@db:5432/app", "HOME": "/root"}
    assert env["DB_PASSWORD"] == "hunter2"  # pure: the input is left alone


def test_proc_environ_bytes_keep_their_separators() -> None:
    raw = b"LANG=C\0AWS_SECRET_ACCESS_KEY=abc\0WEIRD=\xff\xfe\0"
    assert redact(raw) == b"LANG=C\0AWS_SECRET_ACCESS_KEY=" + REDACTED.encode() + b"\0WEIRD=\xff\xfe\0"
    assert redact_nul_separated(b"") == b""


def test_proc_cmdline_bytes() -> None:
    raw = b"/usr/bin/app\0--db-password\0s3cret\0--token=abc\0--port\x008080\0-v\0--api-key\0--next\0"
    assert redact(raw).split(b"\0") == [b"/usr/bin/app", b"--db-password", REDACTED.encode(),
                                        b"--token=" + REDACTED.encode(), b"--port", b"8080", b"-v",
                                        b"--api-key", b"--next", b""]


def test_command_line_text_and_argv() -> None:
    assert redact("java -Dx=1 --password hunter2 --user bob") == f"java -Dx=1 --password {REDACTED} --user bob"
    assert redact(["curl", "https://u:p@example.com/x"]) == ["curl", f"https://u:{REDACTED}@example.com/x"]
    assert redact(("env", "MY_TOKEN=abc", "prog")) == ("env", f"MY_TOKEN={REDACTED}", "prog")
    assert redact("A=1\nSECRET_THING=two words\n") == f"A=1\nSECRET_THING={REDACTED}\n"


def test_patterns_are_configurable() -> None:
    assert redact({"INTERNAL_PIN": "1234", "DB_PASSWORD": "x"}, patterns=["*PIN*"]) == {
        "INTERNAL_PIN": REDACTED, "DB_PASSWORD": "x"}
    assert redact(b"--pin\x001234\0", patterns=["PIN"]) == b"--pin\0" + REDACTED.encode() + b"\0"


def test_alert_attributes_keep_the_event_keyword() -> None:
    attributes = {"dyntel.rule": "r", "dyntel.event.keyword": 5, "dyntel.group.user": "bob",
                  "db.password": "x", "process.command_line": "app --secret=zz", "count": 3}
    assert redact(attributes) == {"dyntel.rule": "r", "dyntel.event.keyword": 5, "dyntel.group.user": "bob",
                                  "db.password": REDACTED, "process.command_line": f"app --secret={REDACTED}",
                                  "count": 3}


def test_a_reload_of_a_rule_file_made_writable_by_others_is_refused(tmp_path: Path) -> None:
    """dyntel run's reloads check the files as its start did: the running rules stay, the failure says why."""
    from dyntel.engine.engine import Engine
    from dyntel.engine.reload import RuleReloader
    from dyntel.live import RunOptions, _trusted_loader
    from dyntel.rules.loader import load_rules

    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\nrules:\n  - name: a\n    match: {provider: P}\n")
    rules.chmod(0o644)
    tmp_path.chmod(0o755)
    ruleset = load_rules([str(rules)])
    engine = Engine(ruleset, None)
    reloader = RuleReloader([str(rules)], engine, ruleset, loader=_trusted_loader(RunOptions()), watch=False)
    rules.write_text("version: 1\nrules:\n  - name: b\n    match: {provider: P}\n")
    rules.chmod(0o666)
    assert reloader.reload_now() is False
    assert [r.name for r in engine.rules] == ["a"]
    assert any("writable by others" in line for line in reloader.stats.last_error), reloader.stats.last_error
    rules.chmod(0o644)
    assert reloader.reload_now() is True and [r.name for r in engine.rules] == ["b"]
