"""Run the fuzz targets for a while each and print executions, coverage and findings.

    python -m fuzz.run [--seconds N | --minutes N] [--sanitizers] [--targets a,b] [--work DIR] [--fresh]
    python -m fuzz.run --smoke          every target briefly, sanitizers on (for the targets that reach C), a fresh
                                        corpus (what .ci/run does)

Each target runs as `python -m fuzz.TARGET` under atheris (libFuzzer), seeded from fuzz/seeds.py, growing a corpus
under WORK/corpus/TARGET (kept between runs unless --fresh). With --sanitizers, for the targets that reach the C
code (NATIVE_TARGETS), the native modules are the AddressSanitizer + UndefinedBehaviorSanitizer builds of
fuzz/build-native.sh and python runs with the merged ASan/libFuzzer runtime preloaded (and PYTHONMALLOC=malloc, so
that ASan sees every Python allocation too).

A finding is a crash, a sanitizer report, an exception other than the documented errors, a hang (-timeout: 20 s, 60 s
with sanitizers) or a
runaway allocation (-rss_limit_mb). The input is kept under WORK/findings/TARGET/; reproduce it with
`python -m fuzz.TARGET --run FILE`. After a finding the target is restarted on its corpus until its time is up.

Figures per target: executions (libFuzzer's number_of_executed_units, summed over restarts), cov (coverage edges:
Python bytecode edges of the instrumented dyntel modules, plus the C edges when built with sanitizers), ft
(features: edges with hit counts, comparisons), corpus (inputs kept), and the findings.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from fuzz.common import ROOT
from fuzz.seeds import SEEDS, write_seeds

TARGETS = list(SEEDS)
# The targets that reach the C modules. Under --sanitizers only these run with the ASan build: the others are pure
# Python, which ASan with every allocation malloc'd slows twenty-fold (compile() of the tracefs decoders most) for
# nothing to find. (perf_pipe reaches the C code through its whole-buffer comparison, which perf_file covers.)
NATIVE_TARGETS = {"perf_file", "native_speedups", "native_prefilter"}
# Signs of a finding in libFuzzer's / the sanitizers' / atheris' output, with what to call it
_FINDINGS = [
    (re.compile(r"^\s*=+ Uncaught Python exception: =+$"), "exception"),
    (re.compile(r"ERROR: AddressSanitizer: ([\w-]+)"), "asan"),
    (re.compile(r"runtime error: (.*)"), "ubsan"),
    (re.compile(r"ALARM: working on the last Unit for (\d+) seconds"), "hang"),
    (re.compile(r"ERROR: libFuzzer: out-of-memory"), "out-of-memory"),
    (re.compile(r"ERROR: libFuzzer: deadly signal"), "signal"),
]
_STATUS = re.compile(r"^#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)/")
_EXECS = re.compile(r"^stat::number_of_executed_units: (\d+)")
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


@dataclass
class Result:
    target: str
    seconds: float = 0.0
    execs: int = 0
    cov: int = 0
    ft: int = 0
    corpus: int = 0
    runs: int = 0
    findings: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, summary, input file)
    inactive: bool = False
    failed: str = ""


def _summary(lines: list[str], kind: str) -> str:
    """One line that tells this finding from others: the exception, or the sanitizer's first frame in dyntel."""
    if kind == "exception":
        for i, line in enumerate(lines[:-1]):
            if "Uncaught Python exception" in line:
                return lines[i + 1].strip()[:200]
    for line in lines:
        if kind == "asan" and "SUMMARY: AddressSanitizer" in line:
            return line.strip()[:200]
        if kind == "ubsan" and "runtime error" in line:
            return line.strip()[:200]
    return kind


def sanitizer_env(native_dir: Path) -> dict[str, str]:
    return {
        "DYNTEL_FUZZ_NATIVE": str(native_dir),
        "LD_PRELOAD": str(native_dir / "asan_with_fuzzer.so"),
        "PYTHONMALLOC": "malloc",
        # Python frees little at exit and keeps caches: leaks are not findings here.
        # Short allocation stacks: with every Python object malloc'd, unwinding 30 frames a malloc halves the speed.
        "ASAN_OPTIONS": "detect_leaks=0:allocator_may_return_null=1:handle_abort=1:symbolize=1:malloc_context_size=4",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    }


def run_target(target: str, seconds: float, work: Path, env: dict[str, str], fresh: bool, log: Path,
               timeout: int = 20) -> Result:
    result = Result(target)
    seeds = work / "seeds" / target
    shutil.rmtree(seeds, ignore_errors=True)
    write_seeds(target, seeds)
    corpus = work / "corpus" / target
    if fresh:
        shutil.rmtree(corpus, ignore_errors=True)
    corpus.mkdir(parents=True, exist_ok=True)
    findings = work / "findings" / target
    findings.mkdir(parents=True, exist_ok=True)
    if target == "otlp_metrics":
        from fuzz import otlp_metrics

        if not otlp_metrics.active():
            result.inactive = True
            return result
    start = time.monotonic()
    seen: set[str] = set()
    with log.open("a") as out:
        while (left := seconds - (time.monotonic() - start)) > 1 and result.runs < 20:
            cmd = [sys.executable, "-m", f"fuzz.{target}", f"-max_total_time={max(1, int(left))}",
                   f"-timeout={timeout}", "-rss_limit_mb=4096", f"-artifact_prefix={findings}/", "-print_final_stats=1",
                   str(corpus), str(seeds)]
            out.write(f"\n$ {' '.join(cmd)}\n")
            out.flush()
            proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, errors="replace", check=False)
            out.write(proc.stdout)
            result.runs += 1
            lines = proc.stdout.splitlines()
            kind = None
            last_units = 0
            for line in lines:
                if m := _STATUS.match(line):
                    result.cov, result.ft, result.corpus = int(m[3]), int(m[4]), int(m[5])
                    last_units = int(m[1])
                elif m := _EXECS.match(line):
                    last_units = int(m[1])
                for pattern, name in _FINDINGS:
                    if kind is None and pattern.search(line):
                        kind = name
            result.execs += last_units
            if kind is None and proc.returncode != 0:
                if not any(_STATUS.match(line) for line in lines):
                    result.failed = f"exit {proc.returncode} before fuzzing: " + " | ".join(lines[-5:])
                    break
                kind = f"exit {proc.returncode}"
            if kind is not None:
                artifacts = [m[1] for line in lines if (m := _ARTIFACT.search(line))]
                summary = _summary(lines, kind)
                key = re.sub(r"\d+", "N", summary)  # the same defect at another offset is not a new one
                if key not in seen:
                    seen.add(key)
                    result.findings.append((kind, summary, artifacts[-1] if artifacts else "?"))
                continue
            break
    result.seconds = time.monotonic() - start
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--sanitizers", action="store_true",
                    help="the targets that reach the C modules run with their ASan + UBSan build")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--work", default=str(ROOT / "build" / "fuzz"))
    ap.add_argument("--fresh", action="store_true", help="start from the seeds, not the kept corpus")
    ap.add_argument("--smoke", action="store_true", help="each target 8 s, sanitizers, a fresh scratch corpus")
    args = ap.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    unknown = [t for t in targets if t not in SEEDS]
    if unknown:
        ap.error(f"unknown targets {unknown}; known: {', '.join(TARGETS)}")
    seconds = args.seconds if args.seconds is not None else (args.minutes or 0) * 60 or 60.0
    work = Path(args.work)
    scratch = None
    if args.smoke:
        seconds = args.seconds if args.seconds is not None else 8.0
        args.sanitizers = True
        scratch = Path(tempfile.mkdtemp(prefix="dyntel-fuzz-smoke-"))
        work = scratch
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    sanitized_env = None
    if args.sanitizers:
        built = subprocess.run([str(ROOT / "fuzz" / "build-native.sh"), str(work / "native")], cwd=ROOT,
                               capture_output=True, text=True, check=False)
        if built.returncode != 0:
            print(f"fuzz: the sanitizer build failed:\n{built.stderr}", file=sys.stderr)
            return 2
        sanitized_env = {**env, **sanitizer_env(work / "native")}
    log = work / "fuzz.log"
    print(f"fuzz: {len(targets)} targets, {seconds:g} s each; sanitizers "
          f"{'on for ' + ', '.join(sorted(NATIVE_TARGETS)) if sanitized_env else 'off'}; log {log}")
    print(f"{'target':<18} {'mode':<10} {'seconds':>7} {'execs':>9} {'exec/s':>7} {'cov':>6} {'ft':>7} {'corpus':>6}"
          "  findings")
    results = []
    for target in targets:
        sanitized = sanitized_env is not None and target in NATIVE_TARGETS
        mode = "asan+ubsan" if sanitized else "plain"
        # Under ASan with every allocation malloc'd and every Python edge counted, a 100 KB perf.data takes ~20 s
        # where plain Python takes 0.2 s: the hang limit grows with it.
        r = run_target(target, seconds, work, sanitized_env if sanitized and sanitized_env else env,
                       args.fresh or args.smoke, log, 60 if sanitized else 20)
        results.append(r)
        if r.inactive:
            print(f"{target:<18} {mode:<10} inactive: its decoder is not in this checkout")
            continue
        if r.failed:
            print(f"{target:<18} {mode:<10} FAILED TO RUN: {r.failed}")
            continue
        rate = r.execs / r.seconds if r.seconds else 0
        found = "; ".join(f"{k}: {s} ({f})" for k, s, f in r.findings) or "none"
        print(f"{target:<18} {mode:<10} {r.seconds:7.0f} {r.execs:9d} {rate:7.0f} {r.cov:6d} {r.ft:7d} "
              f"{r.corpus:6d}  {found}", flush=True)
    bad = [r for r in results if r.findings or r.failed]
    if scratch is not None and not bad:
        shutil.rmtree(scratch, ignore_errors=True)
    elif scratch is not None:
        print(f"fuzz: findings and the log kept in {scratch}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
