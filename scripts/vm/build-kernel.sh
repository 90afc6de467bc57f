#!/usr/bin/env bash
# Build (or reuse) an x86-64 kernel with CONFIG_USER_EVENTS for the VM tests; print the bzImage's path last.
#
# Debian's own kernels lack user_events, so this builds one from Debian trixie's linux-source-6.12 package,
# fetched with a private apt sources list (nothing is installed or changed system-wide): make defconfig,
# make kvm_guest.config, merge scripts/vm/user-events.config, make olddefconfig, make bzImage.
#
# Cache: $DYNTEL_VM_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/dyntel/vm)/<key>/bzImage, where <key> hashes the
# fragment and the source package's version, so a changed fragment or a new Debian point release builds anew
# and anything else is reused.
#
# Usage: build-kernel.sh            reuse the cache entry for the current source version, else build (network)
#        build-kernel.sh --cached   no network: print the newest cached bzImage built from this fragment, or exit 3
# Needs: apt-get, dpkg-deb, make, gcc, flex, bison, bc, libelf-dev, libssl-dev. Takes ~13 min on 2 cores.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
fragment="$here/user-events.config"
cache_root="${DYNTEL_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dyntel/vm}"
package=linux-source-6.12
# Part of the key so that a change to how the kernel is built (not only to what is merged) rebuilds.
recipe=1

log() { echo "build-kernel: $*" >&2; }

fragment_hash="$(sha256sum "$fragment" | cut -c1-16)"

newest_cached() {
  # Entries record the fragment hash they were built from; the newest one wins.
  local best="" entry
  for entry in "$cache_root"/*/; do
    [ -f "$entry/bzImage" ] && [ -f "$entry/fragment.sha" ] || continue
    [ "$(cat "$entry/fragment.sha")" = "$fragment_hash-r$recipe" ] || continue
    if [ -z "$best" ] || [ "$entry/bzImage" -nt "$best" ]; then best="$entry/bzImage"; fi
  done
  [ -n "$best" ] && realpath "$best"
}

if [ "${1:-}" = "--cached" ]; then
  if path="$(newest_cached)"; then echo "$path"; exit 0; fi
  log "no cached kernel for fragment $fragment_hash under $cache_root"
  exit 3
fi
[ $# -eq 0 ] || { echo "usage: $0 [--cached]" >&2; exit 2; }

for tool in apt-get dpkg-deb make gcc flex bison bc; do
  command -v "$tool" >/dev/null || { log "missing $tool (apt-get install make gcc flex bison bc libelf-dev libssl-dev)"; exit 1; }
done

mkdir -p "$cache_root"
apt_dir="$cache_root/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/sources.list.d"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$keyring" ] || { log "missing $keyring (apt-get install debian-archive-keyring)"; exit 1; }
echo "deb [signed-by=$keyring] http://deb.debian.org/debian trixie main" >"$apt_dir/sources.list"
# Only the private list, lists and caches: the machine's own apt state is neither read for sources nor written.
apt_opts=(
  -o "Dir::Etc::SourceList=$apt_dir/sources.list"
  -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
  -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::Cache=$apt_dir/cache"
  -o "Dir::Cache::pkgcache=$apt_dir/cache/pkgcache.bin"
  -o "Dir::Cache::srcpkgcache=$apt_dir/cache/srcpkgcache.bin"
  -o "APT::Sandbox::User=root"
)
log "apt-get update (trixie main, private lists in $apt_dir)"
if ! apt-get "${apt_opts[@]}" -q update >"$apt_dir/update.log" 2>&1; then
  cat "$apt_dir/update.log" >&2
  if path="$(newest_cached)"; then
    log "cannot reach the archive; reusing $path"
    echo "$path"
    exit 0
  fi
  log "cannot reach the archive and nothing is cached"
  exit 1
fi
version="$(apt-cache "${apt_opts[@]}" show "$package" | sed -n 's/^Version: //p' | sort -V | tail -n1)"
[ -n "$version" ] || { log "$package not found in trixie"; exit 1; }

key="$( (cat "$fragment"; echo "$package $version recipe $recipe") | sha256sum | cut -c1-16)"
out="$cache_root/$key"
if [ -f "$out/bzImage" ]; then
  log "cached: $package $version with fragment $fragment_hash"
  realpath "$out/bzImage"
  exit 0
fi

work="$cache_root/build-$key"
rm -rf "$work"
mkdir -p "$work"
# The source tree is ~1.5 GB once built; it is not worth keeping beside a 13 MB bzImage.
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
log "downloading $package $version"
(cd "$work" && apt-get "${apt_opts[@]}" -q download "$package=$version" >&2)
dpkg-deb -x "$work"/"${package}"_*.deb "$work/pkg"
tarball="$(ls "$work"/pkg/usr/src/linux-source-*.tar.xz)"
log "unpacking $(basename "$tarball")"
tar -xJf "$tarball" -C "$work"
src="$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'linux-source-*')"

cd "$src"
make -s defconfig >&2
make -s kvm_guest.config >&2
scripts/kconfig/merge_config.sh -m .config "$fragment" >&2
make -s olddefconfig >&2

# Kconfig drops a symbol whose dependencies are unmet without a word; check every line of the fragment.
bad=0
while IFS= read -r line; do
  case "$line" in ''|'#'*) continue ;; esac
  sym="${line%%=*}"
  want="${line#*=}"
  if [ "$want" = n ]; then
    if grep -q "^$sym=" .config; then log "$sym should be off but is: $(grep "^$sym=" .config)"; bad=1; fi
  elif ! grep -qx "$sym=$want" .config; then
    log "$sym=$want asked for, got: $(grep -E "^(# )?$sym[= ]" .config || echo absent)"
    bad=1
  fi
done <"$fragment"
grep -qx CONFIG_USER_EVENTS=y .config || { log "CONFIG_USER_EVENTS=y missing from the final .config"; bad=1; }
[ "$bad" = 0 ] || exit 1

log "make -j$(nproc) bzImage"
make -s -j"$(nproc)" bzImage >&2
built="$(make -s kernelrelease)"

mkdir -p "$out.tmp"
cp arch/x86/boot/bzImage "$out.tmp/bzImage"
cp .config "$out.tmp/config"
echo "$fragment_hash-r$recipe" >"$out.tmp/fragment.sha"
echo "$package $version ($built), built in $(( $(date +%s) - start )) s on $(nproc) CPUs, $(date -u +%FT%TZ)" \
  >"$out.tmp/built"
rm -rf "$out"
mv "$out.tmp" "$out"
log "$(cat "$out/built")"
realpath "$out/bzImage"
