"""Checks on what dyntel trusts: the files that tell it what to do, and the secrets it must not write out.

Rule and config files decide what a process holding CAP_SYS_PTRACE and CAP_PERFMON does (dump any process, run
`exec` actions), so whoever can write them can act with those capabilities. `untrusted_reasons` says why a path
could have been written by someone else: the file, or any directory on the way to it (someone who can write a
directory can replace the file in it), is writable by its group or by others, or is owned by a user who is neither
root nor the user dyntel runs as. Like sshd's StrictModes, with two exceptions that take away nobody's safety:
a sticky directory (/tmp) lets others create entries but not replace ours, and a read-only mount (a Kubernetes
ConfigMap volume, whose directory is 0777) cannot be written through at all. `dyntel.rules.trust` applies it to
the rule files before they are loaded.

`redact` takes secrets out of environment variables, command lines and attribute mappings before they leave the
machine in a dump's metadata streams or an alert. It is a pure function; callers choose the patterns.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import stat
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from dyntel.errors import DyntelError

__all__ = [
    "DEFAULT_PATTERNS",
    "REDACTED",
    "UntrustedFileError",
    "redact",
    "redact_argv",
    "redact_nul_separated",
    "redact_text",
    "secret_name",
    "untrusted_reasons",
]

INSECURE_FLAG = "--insecure-rules"


class UntrustedFileError(DyntelError):
    """A rule or config file that others could have written; the message says what to change."""

    def __init__(self, reasons: Sequence[str]) -> None:
        self.reasons = list(reasons)
        super().__init__("refusing rule files that others could have changed:\n  " + "\n  ".join(self.reasons)
                         + f"\n(fix the modes or owners above; {INSECURE_FLAG} runs anyway, for development only)")


# ---------------------------------------------------------------------------------------------------------------
# Files dyntel trusts


def _owner(uid: int) -> str:
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _read_only_mount(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _entry_reasons(shown: str, st: os.stat_result, euid: int, inside_sticky: bool, read_only: bool) -> list[str]:
    mode = stat.S_IMODE(st.st_mode)
    quoted = shlex.quote(shown)
    out: list[str] = []
    if st.st_uid not in (0, euid):
        # In a sticky directory only the owner may rename or delete an entry; that owner must be trusted too.
        where = " in a sticky directory" if inside_sticky else ""
        out.append(f"{shown} is owned by {_owner(st.st_uid)}{where}, neither root nor the user dyntel runs as "
                   f"({_owner(euid)}): chown root:root {quoted} (or to dyntel's user)")
    if read_only:
        return out  # nobody can write through a read-only mount, whatever its mode says
    sticky_dir = stat.S_ISDIR(st.st_mode) and bool(mode & stat.S_ISVTX)
    if mode & 0o022 and not sticky_dir:
        who = "others" if mode & stat.S_IWOTH else f"its group (gid {st.st_gid})"
        out.append(f"{shown} is writable by {who} (mode {mode:04o}): chmod go-w {quoted}")
    return out


def _chain(path: str) -> list[str]:
    """`path` and every directory above it, the file first."""
    chain = [path]
    while True:
        parent = os.path.dirname(chain[-1])
        if parent == chain[-1]:
            return chain
        chain.append(parent)


def untrusted_reasons(path: str | os.PathLike[str], euid: int | None = None) -> list[str]:
    """Every reason `path` could have been written by someone other than root or the user `euid` (default: ours);
    [] when it is safe to trust. A missing path gives [] (the loader says it is missing).

    Both the path as given and the one its symlinks lead to are checked, with every directory above each: a link
    in a directory others may write can be pointed elsewhere, and the file it points to is the one read.
    """
    euid = os.geteuid() if euid is None else euid
    given = os.fspath(path)
    if not os.path.exists(given):
        return []
    seen: set[str] = set()
    out: list[str] = []
    for start in (os.path.abspath(given), os.path.realpath(given)):
        chain = _chain(start)
        for i, entry in enumerate(chain):
            if entry in seen:
                continue
            seen.add(entry)
            try:
                # The directories of the given path may be symlinks themselves: stat follows them, and the
                # resolved chain covers where they lead.
                st = os.stat(entry)
            except OSError:
                continue
            parent = chain[i + 1] if i + 1 < len(chain) else entry
            try:
                inside_sticky = bool(os.stat(parent).st_mode & stat.S_ISVTX) and parent != entry
            except OSError:
                inside_sticky = False
            shown = given if i == 0 else entry
            out.extend(_entry_reasons(shown, st, euid, inside_sticky, _read_only_mount(entry)))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Redaction

REDACTED = "[REDACTED]"

# Name globs, matched case-insensitively against names with '-' and '.' read as '_' (so that `--db-password`
# and `db.password` meet `*PASSWORD*`). Broad on purpose (a redacted harmless value costs less than a leaked key),
# except that KEY and AUTH must end a word: `*KEY*` would hide every alert's `dyntel.event.keyword`, and `*AUTH*`
# the author.
DEFAULT_PATTERNS: tuple[str, ...] = (
    "*PASSWORD*", "*PASSWD*", "*PASSPHRASE*", "*SECRET*", "*TOKEN*", "*CREDENTIAL*", "*COOKIE*", "*_PWD",
    "*KEY", "*KEY_*", "*KEYS", "*AUTH", "*AUTH_*", "*AUTHORIZATION*", "AWS_*",
)

# user:password@ in URLs (DATABASE_URL=postgres://app:hunter2@db/app), whatever the variable is called.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)(?P<secret>[^/\s@]+)(?P<tail>@)")
_NAME = re.compile(r"^-{0,2}(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)$")

T = TypeVar("T")


def _normal(name: str) -> str:
    return name.lstrip("-").upper().replace("-", "_").replace(".", "_")


def secret_name(name: str, patterns: Iterable[str] = DEFAULT_PATTERNS) -> bool:
    """Whether a variable, flag or attribute name matches one of the patterns."""
    normal = _normal(name)
    return any(fnmatch.fnmatchcase(normal, _normal(p)) for p in patterns)


def _urls(text: str) -> str:
    return _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED + m.group("tail"), text)


def _assignment(item: str, patterns: Sequence[str]) -> str:
    """`NAME=value` or `--name=value` with a secret name → the value redacted; URLs' passwords in any case."""
    name, eq, _ = item.partition("=")
    if eq and _NAME.match(name) and secret_name(name, patterns):
        return f"{name}={REDACTED}"
    return _urls(item)


def redact_argv(argv: Sequence[str], patterns: Iterable[str] = DEFAULT_PATTERNS) -> list[str]:
    """A command line (or environ entries) with secrets replaced: `X_TOKEN=v`, `--password=v`, `--password v`
    (the next argument, unless it is an option itself), and passwords in URLs."""
    pats = tuple(patterns)
    out: list[str] = []
    hide_next = False
    for item in argv:
        if hide_next and not item.startswith("-"):
            out.append(REDACTED)
            hide_next = False
            continue
        hide_next = False
        if item.startswith("-") and "=" not in item and _NAME.match(item) and secret_name(item, pats):
            hide_next = True
            out.append(item)
            continue
        out.append(_assignment(item, pats))
    return out


def redact_nul_separated(raw: bytes, patterns: Iterable[str] = DEFAULT_PATTERNS) -> bytes:
    """/proc/PID/environ or /proc/PID/cmdline bytes (NUL-separated) with secrets replaced, same separators."""
    trailing = raw.endswith(b"\0")
    items = raw[:-1].split(b"\0") if trailing else raw.split(b"\0")
    if raw == b"":
        return raw
    texts = [i.decode("utf-8", "surrogateescape") for i in items]
    joined = b"\0".join(t.encode("utf-8", "surrogateescape") for t in redact_argv(texts, patterns))
    return joined + (b"\0" if trailing else b"")


def redact_text(text: str, patterns: Iterable[str] = DEFAULT_PATTERNS) -> str:
    """Text: `NAME=value` lines (an environment listing) line by line, else a command line word by word."""
    pats = tuple(patterns)
    lines = text.splitlines(keepends=True)
    if len(lines) > 1 and all("=" in ln or not ln.strip() for ln in lines):
        out = []
        for line in lines:
            body = line.rstrip("\r\n")
            out.append(_assignment(body, pats) + line[len(body):])
        return "".join(out)
    parts = re.split(r"(\s+)", text)
    words = redact_argv(parts[0::2], pats)
    parts[0::2] = words
    return "".join(parts)


def redact(value: T, patterns: Iterable[str] = DEFAULT_PATTERNS) -> T:
    """`value` with secrets replaced by REDACTED, of the same shape:

    - a mapping (environment, OTLP attributes): the value of every key whose name matches a pattern; other
      string values as text (a command line in an attribute), nested mappings and lists likewise;
    - bytes: NUL-separated /proc environ or cmdline;
    - a string: see `redact_text`; a list or tuple of strings: an argv.
    """
    pats = tuple(patterns)
    result: Any
    if isinstance(value, Mapping):
        result = {k: (REDACTED if isinstance(k, str) and secret_name(k, pats) and v is not None
                      else redact(v, pats)) for k, v in value.items()}
    elif isinstance(value, bytes):
        result = redact_nul_separated(value, pats)
    elif isinstance(value, str):
        result = redact_text(value, pats)
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        result = type(value)(redact_argv(value, pats))
    elif isinstance(value, list | tuple):
        result = type(value)(redact(v, pats) for v in value)
    else:
        result = value
    return result  # type: ignore[no-any-return]
