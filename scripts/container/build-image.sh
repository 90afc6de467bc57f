#!/usr/bin/env bash
# Builds dyntel's image (the Dockerfile, unchanged) with podman and runc, as a user would, and prints its name.
#
# The Dockerfile starts FROM debian:bookworm-slim, and no container registry is reachable here, so the base is
# made locally the way Debian's own images are: `debootstrap --variant=minbase bookworm`, imported under that
# name. Into it go this machine's CA certificates (and pip's cert setting), so that apt and pip inside the build
# reach Debian and PyPI through the machine's proxy exactly as they do outside.
#
# Cached under ~/.cache/dyntel/container/: the base tarball keyed on the suite, mirror and CA certificates; the
# built image (podman save) keyed on the base, the Dockerfile and every file the build context holds. Podman's own
# storage is checked first, so a second run costs a few hashes.
#
#   scripts/container/build-image.sh          # -> localhost/dyntel:KEY
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE="${DYNTEL_CACHE:-$HOME/.cache/dyntel}/container"
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
BASE_NAME=docker.io/library/debian:bookworm-slim
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
# runc, not crun: crun fails on this kind of host's hybrid cgroups. The explicit nofile limit: podman otherwise
# asks for more than root may raise RLIMIT_NOFILE to here.
PODMAN=(podman --runtime runc)
NOFILE="$(ulimit -Hn)"
mkdir -p "$CACHE"
log() { echo "build-image: $*" >&2; }

hash_of() { sha256sum | cut -c1-16; }

# --- the base -----------------------------------------------------------------------------------------------------
base_key=$( { echo "base v2 slim $SUITE $MIRROR"; cat "$CA_BUNDLE"; cat /etc/pip.conf 2>/dev/null || true; } | hash_of)
base_tar="$CACHE/base-$SUITE-$base_key.tar"
if [ "$("${PODMAN[@]}" image inspect --format '{{index .Labels "dyntel.base"}}' "$BASE_NAME" 2>/dev/null)" != "$base_key" ]; then
  if [ ! -s "$base_tar" ]; then
    log "debootstrap --variant=minbase $SUITE (a few minutes, once)"
    rootfs=$(mktemp -d /var/tmp/dyntel-base.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
      || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
    # The sources an official bookworm image has (updates and security too).
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    # This machine's CAs: as the bundle (for anything run before ca-certificates is installed) and as local
    # certificates (which the ca-certificates package adds to the bundle it builds in the image).
    mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/usr/local/share/ca-certificates"
    cp "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
    [ -f /etc/pip.conf ] && cp /etc/pip.conf "$rootfs/etc/pip.conf"
    # -slim as Debian's images make it: no documentation, manual pages or translations, now or from later
    # installs (the path-exclude rules of debuerreotype's slimming).
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'SLIM'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
SLIM
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/info/* "$rootfs"/usr/share/linda/* "$rootfs"/usr/share/lintian/overrides/* \
      "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/man/*
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" --numeric-owner --xattrs -cf "$base_tar.tmp" .
    mv "$base_tar.tmp" "$base_tar"
    rm -rf "$rootfs"
    trap - EXIT
  fi
  log "importing $base_tar as $BASE_NAME"
  "${PODMAN[@]}" import --change 'CMD ["bash"]' --change "LABEL dyntel.base=$base_key" "$base_tar" "$BASE_NAME" >/dev/null
fi
# Only the current base is kept.
find "$CACHE" -maxdepth 1 -name "base-*.tar" ! -name "$(basename "$base_tar")" -delete

# --- the image ----------------------------------------------------------------------------------------------------
# The build context as .dockerignore leaves it: the Dockerfile's COPY . . sees these files and no others.
context_files() {
  git ls-files --cached --others --exclude-standard -z -- Dockerfile .dockerignore pyproject.toml setup.py \
    MANIFEST.in README.md dyntel rules | sort -z
}
image_key=$( { echo "image v1 $base_key"; context_files | xargs -0 sha256sum; } | hash_of)
image="localhost/dyntel:$image_key"
image_tar="$CACHE/image-$image_key.tar"
if ! "${PODMAN[@]}" image exists "$image"; then
  if [ -s "$image_tar" ]; then
    log "loading $image_tar"
    "${PODMAN[@]}" load -q -i "$image_tar" >/dev/null
  else
    log "podman build -t $image (several minutes, once for each change of the context)"
    # --network host: the build's apt and pip go out as this machine does, without a container network.
    nice -n 10 "${PODMAN[@]}" build --network host --ulimit "nofile=$NOFILE:$NOFILE" -t "$image" . \
      >"$CACHE/build.log" 2>&1 || { tail -30 "$CACHE/build.log" >&2; exit 1; }
    "${PODMAN[@]}" save -q -o "$image_tar.tmp" "$image"
    mv "$image_tar.tmp" "$image_tar"
  fi
fi
find "$CACHE" -maxdepth 1 -name "image-*.tar" ! -name "$(basename "$image_tar")" -delete
# Older builds out of podman's storage too (their tags, then the layers nothing uses any more).
for old in $("${PODMAN[@]}" images --format '{{.Repository}}:{{.Tag}}' localhost/dyntel | grep -vx "$image" || true); do
  "${PODMAN[@]}" rmi -f "$old" >/dev/null 2>&1 || true
done
"${PODMAN[@]}" image prune -f >/dev/null 2>&1 || true
echo "$image"
