# dyntel as a sidecar image. Capabilities: see docs/deploy.md ("Capabilities"), which tests/test_deploy.py checks
# against this file, the Kubernetes manifests and the systemd unit.
#
#   docker build -t dyntel .
#   docker run --rm --pid=container:APP --cap-drop ALL \
#     --cap-add PERFMON --cap-add SYS_PTRACE --cap-add DAC_READ_SEARCH \
#     -v /sys/kernel/tracing:/sys/kernel/tracing -v ./rules:/etc/dyntel/rules:ro dyntel

# --- build: the wheel with its optional C fast paths (a compiler only here, not in the image that runs) ---------
FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# --copies: the venv's interpreter is a file of its own, so that file capabilities set on it below are not those of
# the image's /usr/local/bin/python3.11, which any other program in the container may run.
RUN python -m venv --copies /opt/dyntel \
 && /opt/dyntel/bin/pip install --no-cache-dir . \
 && rm -f /opt/dyntel/bin/python /opt/dyntel/bin/python3 \
 && ln -s python3.11 /opt/dyntel/bin/python \
 && ln -s python3.11 /opt/dyntel/bin/python3

# --- run -------------------------------------------------------------------------------------------------------
FROM python:3.11-slim

# A fixed uid/gid: the Kubernetes manifests' runAsUser/runAsGroup and the systemd unit name the same numbers.
ARG DYNTEL_UID=10001
ARG DYNTEL_GID=10001

# elfutils: eu-stack, the native unwinder of the stacks action. libcap2-bin: setcap, removed once used.
RUN apt-get update \
 && apt-get install -y --no-install-recommends elfutils libcap2-bin \
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

# File capabilities, because Kubernetes gives a non-root container its added capabilities in the bounding set only
# (no ambient set): without them on the executable, uid 10001 runs with none. They are set in this stage, not the
# build stage, because COPY does not keep the security.capability attribute everywhere.
#   python3.11: CAP_PERFMON (perf_event_open), CAP_SYS_PTRACE (dump), CAP_DAC_READ_SEARCH (tracefs is 0700 root).
#   eu-stack, py-spy: run by the stacks action as child processes, which do not inherit file capabilities.
# Only root and the dyntel group may execute them: nobody else in the container gains the capabilities.
RUN setcap cap_perfmon,cap_sys_ptrace,cap_dac_read_search+ep /opt/dyntel/bin/python3.11 \
 && setcap cap_sys_ptrace+ep /usr/bin/eu-stack \
 && setcap cap_sys_ptrace+ep /opt/dyntel/bin/py-spy \
 && chown root:dyntel /opt/dyntel/bin/python3.11 /usr/bin/eu-stack /opt/dyntel/bin/py-spy \
 && chmod 0750 /opt/dyntel/bin/python3.11 /usr/bin/eu-stack /opt/dyntel/bin/py-spy \
 && apt-get purge -y libcap2-bin && apt-get autoremove -y \
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
