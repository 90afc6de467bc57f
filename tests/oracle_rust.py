"""The Rust oracle (tests/peers/tracepoint-rs: LinuxTracepoints' tracepoint_perf + tracepoint_decode) beside dyntel.

dyntel prints events as perf-decode (the C++ tool of microsoft/LinuxTracepoints, the corpus's reference) prints
them. The Rust crates by the same authors format a few things differently from their own C++ tool; each such
difference is named here, and `comparable` maps both sides' parsed JSON to one form for those cases only, so that
everything else must be equal. Each rule counts how often it applied, so a test can say what it forgave.
"""

from __future__ import annotations

import codecs
import contextlib
import ipaddress
import json
import re
from collections import Counter
from typing import Any

# name -> what differs (Rust reader vs perf-decode C++/dyntel). dyntel follows perf-decode in each case.
DIFFERENCES = {
    "nan": 'a NaN float: Rust "NaN", perf-decode "-nan" or "nan" (C printf)',
    "bool-range": 'a boolean outside 0..1: Rust "BOOL(255)", perf-decode the number 255',
    "time-z": 'a time field: Rust "2033-05-18T03:33:20Z", perf-decode "2033-05-18T03:33:20" (no Z)',
    "hex-case": 'hex-bytes fields: Rust upper case "48 6F", perf-decode lower case "48 6f"',
    "bad-text": "text whose bytes are invalid in its encoding: Rust writes U+FFFD, perf-decode the bytes as they "
                "are (a UTF-8-like form of the bad code point)",
    "meta-time": 'meta.time: Rust to 100 ns ("12.6409131Z"), perf-decode to the ns ("12.640913120Z")',
    "meta-tid": "meta.tid: Rust leaves it out when it equals pid, perf-decode always prints it",
    "ipv6-value128": 'a 16-byte value with format IPAddress (17): Rust hex bytes "20 01 0D B8 ...", perf-decode the '
                     'IPv6 address "2001:db8::1" (tracepoint_decode 0.5.0 handles only the obsolete format 18 there)',
    "utf8-surrogate": "UTF-8 text holding an encoded surrogate (ED A0 80): Rust writes those bytes as Latin-1 "
                      "characters, perf-decode passes them through as they are",
    "escape-case": "not counted (equal once parsed): Rust escapes control characters as \\u001F, perf-decode and "
                   "dyntel as \\u001f",
    "relloc-offset": "a tracefs `__rel_loc` array (otlp_metrics' buffer): Rust takes its offset from the start of the "
                     "record, as for `__data_loc`, and shows the record's first bytes (as signed numbers); the kernel "
                     "counts it from the end of the field, as perf-decode and dyntel do (perf script prints the raw "
                     "word: offset 0, 238 bytes, and what dyntel reads there is the OTLP the SDK wrote)",
    "dataloc-string": 'a tracefs `__data_loc char[]` string (sched_process_fork\'s parent_comm, sched_process_exec\'s '
                      'filename): Rust prints "" (tracepoint_decode 0.5.0 takes a string field\'s element size as '
                      '1 << 31 cut to a u8, 0; the length mask underflows and empties the slice in a release build), '
                      'perf-decode and perf script print the text',
}

_DATE = re.compile(r"^-?\d{4,}-\d\d-\d\dT\d\d:\d\d:\d\dZ?$")
_HEX = re.compile(r"^[0-9A-Fa-f]{2}( [0-9A-Fa-f]{2})*$")
_BOOL = re.compile(r"^BOOL\((-?\d+)\)$")
_BAD = re.compile("[\udc80-\udcff\ufffd]+")
_META_TIME = re.compile(r"^(.*\.\d{7})\d*Z$")


def parse_line(line: bytes) -> Any:
    return json.loads(line.decode("utf-8", "surrogateescape"), object_pairs_hook=list)


def _value(v: Any, seen: Counter[str]) -> Any:
    if isinstance(v, list):
        if v and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in v):
            return [(k, _value(x, seen)) for k, x in v]
        return [_value(x, seen) for x in v]
    if isinstance(v, str):
        if v in ("NaN", "-nan", "nan", "-NaN"):
            seen["nan"] += 1
            return "NaN"
        m = _BOOL.match(v)
        if m:
            seen["bool-range"] += 1
            return int(m.group(1))
        if _DATE.match(v) and v.endswith("Z"):
            seen["time-z"] += 1
            return v[:-1]
        if _HEX.match(v) and v != v.lower():
            seen["hex-case"] += 1
            return v.lower()
        if _BAD.search(v):
            seen["bad-text"] += 1
            return _BAD.sub("\ufffd", v)
    return v


def _latin1_fallback(raw: bytes) -> str:
    """Text as the Rust crates show bytes that are not valid UTF-8: each invalid byte as its Latin-1 character."""
    return raw.decode("utf-8", "dyntel-latin1-fallback")


codecs.register_error("dyntel-latin1-fallback",
                      lambda e: (e.object[e.start:e.end].decode("latin-1"), e.end))  # type: ignore[attr-defined]
_IPV6_HEX = re.compile(r"^[0-9A-Fa-f]{2}( [0-9A-Fa-f]{2}){15}$")


def _relloc_from_record_start(ours: Any, theirs: Any) -> bool:
    """Both byte arrays of one length, and the Rust one the record's bytes from its start: what dyntel read (from
    the end of the field, the kernel's rule) begins a few bytes into it, where the record's common fields end."""
    if not (isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs) >= 32):
        return False
    if not all(isinstance(x, int) for x in ours + theirs):
        return False
    mine, its = bytes(x & 0xFF for x in ours), bytes(x & 0xFF for x in theirs)
    return any(its[skip:] == mine[: len(mine) - skip] for skip in range(8, 64, 4)) and mine != its


def _pair(ours: Any, theirs: Any, tracefs_top: bool, seen: Counter[str]) -> Any:
    """`ours` with the differences that need both sides to see (DIFFERENCES' pair rules) made theirs."""
    if tracefs_top and _relloc_from_record_start(ours, theirs):
        seen["relloc-offset"] += 1
        return theirs
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        pairs = all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in ours + theirs)
        if pairs:
            return [(k, _pair(v, v2, tracefs_top, seen) if k == k2 else v)
                    for (k, v), (k2, v2) in zip(ours, theirs, strict=True)]
        return [_pair(v, v2, False, seen) for v, v2 in zip(ours, theirs, strict=True)]
    if not (isinstance(ours, str) and isinstance(theirs, str)) or ours == theirs:
        return ours
    if tracefs_top and theirs == "" and ours:
        seen["dataloc-string"] += 1
        return theirs
    if _IPV6_HEX.match(theirs) and ":" in ours:
        with contextlib.suppress(ValueError):
            if ipaddress.IPv6Address(ours).packed == bytes.fromhex(theirs.replace(" ", "")):
                seen["ipv6-value128"] += 1
                return theirs
    raw = ours.encode("utf-8", "surrogateescape")
    if re.search(rb"\xed[\xa0-\xbf][\x80-\xbf]", raw) and _latin1_fallback(raw) == theirs:
        seen["utf8-surrogate"] += 1
        return theirs
    return ours


def comparable_pair(ours: Any, theirs: Any, seen_ours: Counter[str], seen_theirs: Counter[str]) -> tuple[Any, Any]:
    """Both sides of one event in one form: the pair rules, then `comparable` on each side."""
    meta = dict(dict(ours).get("meta") or [])
    tracefs = "level" not in meta and "keyword" not in meta
    # the top level of a tracefs event: its fields; EventHeader events and nested values are not concerned
    if tracefs:
        ours = [(k, _pair(v, v2, True, seen_ours) if k == k2 and k != "meta" else v)
                for (k, v), (k2, v2) in zip(ours, theirs, strict=False)] if len(ours) == len(theirs) else ours
    else:
        ours = _pair(ours, theirs, False, seen_ours)
    return comparable(ours, seen_ours), comparable(theirs, seen_theirs)


def comparable(event: Any, seen: Counter[str]) -> Any:
    """One event's parsed JSON with the named differences mapped to one form (applied to both sides)."""
    out = []
    for k, v in event:
        if k != "meta":
            out.append((k, _value(v, seen)))
            continue
        meta = []
        pid = dict(v).get("pid")
        for mk, mv in v:
            if mk == "time" and isinstance(mv, str) and (m := _META_TIME.match(mv)) and m.group(1) + "Z" != mv:
                seen["meta-time"] += 1
                mv = m.group(1) + "Z"
            if mk == "tid" and mv == pid:
                seen["meta-tid"] += 1
                continue
            meta.append((mk, mv))
        out.append((k, meta))
    return out
