# dyntel as a sidecar image. Capabilities: see docs/deploy.md ("Capabilities"), which tests/test_deploy.py checks
# against this file, the Kubernetes manifests and the systemd unit; tests/test_container.py builds this file with
# podman and runs it as Kubernetes would (scripts/container/).
#
#   podman build -t dyntel .            (or docker build)
#   podman run --rm --pid=container:APP --network=container:APP --user 10001:10001 --read-only \
#     --cap-drop ALL --cap-add PERFMON --cap-add SYS_PTRACE --cap-add DAC_READ_SEARCH \
#     --security-opt seccomp=deploy/seccomp/dyntel.json \
#     -v /sys/kernel/tracing:/sys/kernel/tracing -v ./rules:/etc/dyntel/rules:ro dyntel
#
# Debian's packages only (Python too), so that the image is built from one distribution's archive and its
# security updates: the same python3.11 in both stages, which the venv below relies on.

# --- build: the wheel with its optional C fast paths (a compiler only here, not in the image that runs) ---------
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libc6-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# --copies: the venv's interpreter is a file of its own, so that file capabilities set on it below are not those of
# the image's /usr/bin/python3.11, which any other program in the container may run. pip and setuptools go once
# used: nothing installs at run time.
RUN python3 -m venv --copies /opt/dyntel \
 && /opt/dyntel/bin/pip install --no-cache-dir . \
 && /opt/dyntel/bin/pip uninstall -y -q pip setuptools \
 && rm -f /opt/dyntel/bin/python /opt/dyntel/bin/python3 \
 && ln -s python3.11 /opt/dyntel/bin/python \
 && ln -s python3.11 /opt/dyntel/bin/python3

# --- run -------------------------------------------------------------------------------------------------------
FROM debian:bookworm-slim

# A fixed uid/gid: the Kubernetes manifests' runAsUser/runAsGroup and the systemd unit name the same numbers.
ARG DYNTEL_UID=10001
ARG DYNTEL_GID=10001

# python3: the standard library the venv's interpreter uses (the same package as in the build stage).
# elfutils: libdw1, which the stacks action unwinds with inside dyntel, and eu-stack, its fallback. libcap2-bin:
# setcap, removed once used.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 elfutils libcap2-bin \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid ${DYNTEL_GID} dyntel \
 && useradd --system --uid ${DYNTEL_UID} --gid dyntel --home-dir /var/lib/dyntel --no-create-home \
      --shell /usr/sbin/nologin dyntel

COPY --from=build /opt/dyntel /opt/dyntel

# The console script, run in isolated mode (-I): the interpreter carries file capabilities, so PYTHONPATH,
# PYTHONSTARTUP or a user site directory must not be able to put code in it.
RUN printf '#!/opt/dyntel/bin/python3.11 -I\nimport sys\nfrom dyntel.cli import main\nsys.exit(main())\n' \
      > /opt/dyntel/bin/dyntel \
 && chmod 0755 /opt/dyntel/bin/dyntel

# File capabilities, because Kubernetes (containerd, CRI-O) gives a non-root container its added capabilities in
# the bounding, permitted and effective sets but no ambient ones: the first execve as uid 10001 clears them, and
# only a file that carries capabilities gets them back. One file: dyntel's own interpreter, not the image's
# /usr/bin/python3.11 that anything may run.
#   CAP_PERFMON (perf_event_open), CAP_SYS_PTRACE (dumps, stacks), CAP_DAC_READ_SEARCH (tracefs is 0700 root's;
#   /proc/PID/auxv and environ of another user).
# Permitted only (=p), not effective: with the effective bit the kernel refuses to execute the file in a container
# whose bounding set lacks one of the three; without it dyntel starts, makes what it was given effective, says
# which one is missing where it is needed, and passes the ptrace ones to eu-stack and py-spy (dyntel/privileges.py).
# chown before setcap: chown(2) clears the security.capability attribute. Only root and the dyntel group may
# execute the file. Set in this stage, not the build stage, because COPY does not keep the attribute everywhere.
# No setuid or setgid files: nothing in the container can become root or another group.
RUN chown root:dyntel /opt/dyntel/bin/python3.11 \
 && chmod 0750 /opt/dyntel/bin/python3.11 \
 && setcap cap_perfmon,cap_sys_ptrace,cap_dac_read_search=p /opt/dyntel/bin/python3.11 \
 && apt-get purge -y libcap2-bin && apt-get autoremove -y \
 && find / -xdev -type f -perm /6000 -exec chmod ug-s {} + \
 && install -d -o root -g root -m 0755 /etc/dyntel /etc/dyntel/rules \
 && install -d -o dyntel -g dyntel -m 0700 /var/lib/dyntel /var/lib/dyntel/artifacts

# Rules are root's and read-only to dyntel: `dyntel run` refuses rule files others could write (dyntel/security.py).
COPY --chown=root:root rules/*.yaml /etc/dyntel/rules/

ENV PATH=/opt/dyntel/bin:$PATH \
    DYNTEL_ARTIFACTS=/var/lib/dyntel/artifacts \
    DYNTEL_METRICS_LISTEN=0.0.0.0:9464 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# State (artifacts/: dumps and stacks, the action log, the OTLP spool); tracefs (the host's, bind-mounted: a
# container may not mount it without CAP_SYS_ADMIN); the rules; /tmp, so that `docker run --read-only` works.
VOLUME ["/var/lib/dyntel", "/sys/kernel/tracing", "/etc/dyntel/rules", "/tmp"]

USER 10001:10001
WORKDIR /var/lib/dyntel
EXPOSE 9464
ENTRYPOINT ["dyntel"]
CMD ["run", "--rules", "/etc/dyntel/rules"]
