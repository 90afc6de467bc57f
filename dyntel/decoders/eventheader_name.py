"""EventHeader tracepoint names: `ProviderName_L<level>K<keyword>[Options]`, e.g. `MyProvider_L5K1Gmsft`.

The level and keyword are lowercase hex; each option is an uppercase letter followed by lowercase letters and digits
('G' names the provider group). The provider name is everything before the last underscore. These rules are the
reference decoder's: a name it would not accept is not an EventHeader name here either.
"""

from __future__ import annotations

from dataclasses import dataclass

NAME_MAX = 256  # a tracepoint name, with its NUL, must fit in this many bytes

_HEX = {c: i for i, c in enumerate("0123456789abcdef")}


@dataclass(frozen=True, slots=True)
class TracepointName:
    name: str
    provider: str
    level: int
    keyword: int
    options: str  # everything after the keyword, e.g. "Gmsft"; "" when none
    group: str | None  # the value of the 'G' option


def _hex_prefix(s: str, i: int, bits: int) -> tuple[int, int]:
    """The lowercase hex number at s[i:], wrapped to `bits` as the reference's fixed-width parse wraps it."""
    value = 0
    mask = (1 << bits) - 1
    n = len(s)
    while i < n:
        digit = _HEX.get(s[i])
        if digit is None:
            break
        value = (value << 4 | digit) & mask
        i += 1
    return value, i


def parse_tracepoint_name(name: str) -> TracepointName:
    """The parts of an EventHeader tracepoint name; ValueError says why a name is not one."""
    if len(name.encode("utf-8", "replace")) >= NAME_MAX:
        raise ValueError(f"tracepoint name is {NAME_MAX} bytes or longer")
    if "\0" in name:
        raise ValueError("tracepoint name contains a NUL")
    underscore = name.rfind("_")
    if underscore < 0:
        raise ValueError("tracepoint name has no '_' before its attributes")
    i = underscore + 1
    if name[i : i + 1] != "L":
        raise ValueError("tracepoint name has no 'L<level>' after its last '_'")
    level, i = _hex_prefix(name, i + 1, 8)
    if name[i : i + 1] != "K":
        raise ValueError("tracepoint name has no 'K<keyword>' after its level")
    keyword, i = _hex_prefix(name, i + 1, 64)
    options = name[i:]
    group = None
    n = len(name)
    while i < n:
        letter = name[i]
        if not "A" <= letter <= "Z":
            raise ValueError(f"tracepoint name option does not start with an uppercase letter: {name[i:]!r}")
        start = i + 1
        i = start
        while i < n and ("0" <= name[i] <= "9" or "a" <= name[i] <= "z"):
            i += 1
        if letter == "G" and group is None:
            group = name[start:i]
    return TracepointName(name, name[:underscore], level, keyword, options, group)
