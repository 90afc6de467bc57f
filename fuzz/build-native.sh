#!/usr/bin/env bash
# The native modules (dyntel/_speedups.c, dyntel/_prefilter.c) built for fuzzing, into a directory of their own so
# that the installed build is untouched: clang with AddressSanitizer, UndefinedBehaviorSanitizer (every report
# fatal, so the fuzzer sees it) and libFuzzer's coverage instrumentation (fuzzer-no-link). Beside them, the runtime
# that holds ASan (with UBSan) and libFuzzer in one library, which python loads first with LD_PRELOAD (atheris then
# uses that libFuzzer, which also collects the C coverage): made from Debian's clang runtime (libclang-rt-14-dev)
# the way atheris' own build merges them, so that the runtime and the instrumentation come from the same clang.
#
#   fuzz/build-native.sh [OUT_DIR]     default build/fuzz/native; prints OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-build/fuzz/native}"
py="${PYTHON:-.venv/bin/python}"
mkdir -p "$out"
cc="${CLANG:-clang}"
rt="$(dirname "$("$cc" -print-file-name=libclang_rt.asan-x86_64.a)")"
for lib in libclang_rt.asan-x86_64.a libclang_rt.fuzzer_no_main-x86_64.a; do
  [ -f "$rt/$lib" ] || { echo "fuzz/build-native.sh: $rt/$lib missing (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
done
include="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
suffix="$("$py" -c 'import importlib.machinery as m; print(m.EXTENSION_SUFFIXES[0])')"
flags=(-shared -fPIC -g -O1 -fno-omit-frame-pointer -std=c11 -Wall -Wextra -Wno-missing-field-initializers
       -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined -I "$include")
# As setup.py builds them: _speedups has the EventHeader writer (dyntel/_eventheader.c) compiled in, without its
# own module init; _eventheader is also a module of its own (replay and live).
build() {
  local name="$1"; shift
  local target="$out/$name$suffix" newer=0 src
  for src in "$@" dyntel/_perf_record.h dyntel/_eventheader.h "$0"; do
    [ "$src" -nt "$target" ] && newer=1
  done
  if [ ! -f "$target" ] || [ "$newer" = 1 ]; then
    "$cc" "${flags[@]}" "$@" -o "$target"
  fi
}
build _speedups dyntel/_speedups.c dyntel/_eventheader.c -DDYNTEL_EVENTHEADER_NO_MODULE=1
build _prefilter dyntel/_prefilter.c
build _eventheader dyntel/_eventheader.c
runtime="$out/asan_with_fuzzer.so"
if [ ! -f "$runtime" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  cp "$rt/libclang_rt.asan-x86_64.a" "$tmp/asan.a"
  # The preinit object would run ASan's init from .preinit_array, which a shared library may not have.
  ar d "$tmp/asan.a" asan_preinit.cpp.o asan_preinit.cc.o 2>/dev/null || true
  "${CLANGXX:-clang++}" -Wl,--whole-archive "$rt/libclang_rt.fuzzer_no_main-x86_64.a" "$tmp/asan.a" \
    -Wl,--no-whole-archive -lpthread -ldl -shared -o "$runtime"
fi
echo "$out"
