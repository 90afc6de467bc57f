"""The trust check on rule (and config) files before they are loaded: dyntel.security.untrusted_reasons over
exactly the files the loader would read (its own directory expansion), and the directories that hold them.

Here rather than in dyntel.security because it needs the loader's expansion, and the redaction half of
dyntel.security sits below the actions that use it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TextIO

from dyntel.rules.loader import rule_files
from dyntel.security import UntrustedFileError, untrusted_reasons


def _rule_paths(paths: Iterable[str]) -> list[str]:
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            out.append(p)  # the directory itself: whoever can write it can add a rule file
        files, _ = rule_files([p])  # the loader's own expansion, so that exactly the files it reads are checked
        out.extend(f for f in files if f not in out)
    return out


def check_rule_files(paths: Iterable[str], *, refuse: bool = True, log: TextIO | None = None,
                     command: str = "dyntel") -> list[str]:
    """Check rule (or config) files and directories before loading them.

    refuse: raise UntrustedFileError listing every reason; otherwise write each as a warning to `log` (stderr)
    and return them, for the commands that only read rules (validate, replay, test) and for --insecure-rules.
    """
    reasons: list[str] = []
    for p in _rule_paths(paths):
        reasons.extend(r for r in untrusted_reasons(p) if r not in reasons)
    if reasons and refuse:
        raise UntrustedFileError(reasons)
    err = sys.stderr if log is None else log
    for reason in reasons:
        print(f"{command}: warning: {reason}", file=err)
    return reasons
