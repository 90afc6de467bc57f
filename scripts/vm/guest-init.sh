#!/bin/sh
# PID 1 of the test VM (see run-tests.py): set up the few file systems a read-only 9p root lacks, run the job the
# host left in the results export, leave its output and exit status there, and power off.
# Anything going wrong ends in `poweroff -f` too, so that the host never waits for its timeout on a finished guest.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

say() { echo "dyntel-vm: $*" >/dev/console; }
# `poweroff` comes with systemd, which a minimal Debian (a CI container) lacks: then sysrq, and as a last resort
# init's own exit, which panics the kernel, and panic=-1 with qemu's -no-reboot ends the VM all the same.
off() { sync; poweroff -f 2>/dev/null; echo o >/proc/sysrq-trigger; sleep 5; exit 1; }
die() { say "$*"; echo 125 >"$RESULTS/status" 2>/dev/null; off; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm 2>/dev/null
mount -t devpts devpts /dev/pts
# multiprocessing's locks and semaphores live in /dev/shm.
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tracefs tracefs /sys/kernel/tracing
say "init started at $(cut -d' ' -f1 /proc/uptime)s of uptime"

RESULTS=/tmp/vm-results
mkdir -p "$RESULTS"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results "$RESULTS" || die "cannot mount the results export"
[ -f "$RESULTS/job.env" ] || die "no job.env in the results export"
# job.env sets REPO, PYTHON, REPO_EXPORTED and JOB_ARGS (the test command's arguments, shell-quoted), and
# DYNTEL_PEERS (NAME=DIR;... of the peers built on the host, for tests/peers.py).
. "$RESULTS/job.env"
export DYNTEL_PEERS
if [ "$REPO_EXPORTED" = 1 ]; then
  # The checkout lives under the host's /tmp, which the tmpfs above hides: it comes in as an export of its own,
  # mounted at the same path so that the venv's absolute paths still hold.
  mkdir -p "$REPO"
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose,ro repo "$REPO" || die "cannot mount the repo export"
fi

# The root is read-only: everything Python, pytest and the tests write goes to /tmp.
export HOME=/tmp/home XDG_CACHE_HOME=/tmp/cache TMPDIR=/tmp PYTHONDONTWRITEBYTECODE=1 DYNTEL_IN_VM=1
mkdir -p "$HOME" "$XDG_CACHE_HOME"
ip link set lo up 2>/dev/null
cd "$REPO" || die "no $REPO"
say "running the tests"
eval "set -- $JOB_ARGS"
"$PYTHON" "$@" >"$RESULTS/output.txt" 2>&1
status=$?
echo "$status" >"$RESULTS/status.tmp" && mv "$RESULTS/status.tmp" "$RESULTS/status"
cut -d' ' -f1 /proc/uptime >"$RESULTS/uptime"
say "tests finished with status $status at $(cut -d' ' -f1 /proc/uptime)s of uptime"
umount "$RESULTS" 2>/dev/null
off
