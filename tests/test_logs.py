"""dyntel's own log is configured once, in cli.main: `--log-level`, $DYNTEL_LOG_LEVEL, the config's log.level."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

from dyntel import cli
from dyntel.engine.reload import RuleReloader


def _reset() -> None:
    logger = logging.getLogger("dyntel")
    for h in list(logger.handlers):
        logger.removeHandler(h)
    logger.setLevel(logging.NOTSET)


def test_the_reloaders_info_lines_are_shown_at_the_default_level(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`log.info("rules reloaded")` reaches stderr once the CLI configured logging (it went nowhere before)."""
    from dyntel.engine.engine import Engine
    from dyntel.rules.loader import load_rules
    from dyntel.runtime.scheduler import Scheduler

    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\nrules:\n  - name: a\n    match: {provider: P}\n    actions: [{log: {}}]\n")
    assert cli.main(["validate", str(rules)]) == 0  # any verb: main configures the log first
    capsys.readouterr()
    try:
        ruleset = load_rules([str(rules)])
        reloader = RuleReloader([str(rules)], Engine(ruleset, Scheduler()), ruleset, watch=False, sighup=False)
        rules.write_text(rules.read_text().replace("name: a", "name: b"))
        assert reloader.reload_now("test")
        err = capsys.readouterr().err
        assert "dyntel.reload INFO: rules reloaded (test)" in err, err
    finally:
        _reset()


def test_log_level_from_the_flag_the_environment_and_the_config(tmp_path: Path) -> None:
    config = tmp_path / "dyntel.yaml"
    config.write_text("log: {level: error}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("DYNTEL_LOG_LEVEL", "DYNTEL_CONFIG")}
    script = ("import logging, sys; from dyntel import cli; cli.main(sys.argv[1:]); "
              "print(logging.getLevelName(logging.getLogger('dyntel').level))")

    def level(*argv: str, **extra: str) -> str:
        proc = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, cwd=ROOT,
                              env={**env, **extra}, timeout=60)
        return proc.stdout.strip().splitlines()[-1]

    rules = str(ROOT / "rules")
    assert level("validate", rules) == "INFO"
    assert level("--log-level", "debug", "validate", rules) == "DEBUG"
    assert level("validate", rules, DYNTEL_LOG_LEVEL="warning") == "WARNING"
    assert level("validate", rules, DYNTEL_CONFIG=str(config)) == "ERROR"
    assert level("--log-level", "info", "validate", rules, DYNTEL_CONFIG=str(config)) == "INFO"
    bad = subprocess.run([sys.executable, "-m", "dyntel.cli", "--log-level", "loud", "validate", rules],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "invalid choice: 'loud'" in bad.stderr
