# syntax=docker/dockerfile:1
# ztgate's image (docs/deployment.md, "Container image"). Two stages: the first builds ztgate's
# wheel and the wheels of its dependencies, as a release would; the second installs those wheels
# and nothing else, so the image holds the package as published, with no compiler, no pip and no
# source tree. It runs as an unprivileged user on a read-only root file system; the audit store
# lives on a volume at /var/lib/ztgate.
#
#   docker build -t ztgate .
#   docker run --read-only --tmpfs /tmp -p 8787:8787 \
#     -v "$PWD/deploy-config:/etc/ztgate:ro" -v ztgate-store:/var/lib/ztgate \
#     -e ANTHROPIC_API_KEY ztgate
#
# PYTHON_IMAGE: any Debian-based image with Python 3.11+ and its venv module.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# pip trusts the system's CA bundle, so a build behind a TLS-inspecting proxy can mount its own
# bundle over it for the build (podman build -v /etc/ssl/certs/ca-certificates.crt:...:ro).
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# ztgate's wheel (PEP 517, the build backend pyproject.toml names) and one wheel per dependency.
# --only-binary keeps a compiler out of this stage too: a dependency without a wheel for this
# platform fails the build here instead of compiling something nobody reviewed.
RUN python3 -m venv /opt/build \
 && /opt/build/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/build/bin/pip wheel --only-binary=:all: --wheel-dir /wheels /wheels/ztgate-*.whl

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="ztgate" \
      org.opencontainers.image.description="A zero-trust gateway for the Claude API" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/ztgate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ZTGATE_CONFIG=/etc/ztgate/ztgate.yaml \
    ZTGATE_HEALTHCHECK_URL=http://127.0.0.1:8787/healthz
# The wheels are bind-mounted from the first stage, so they never become a layer of this image.
# Installing compiles the bytecode now: the root file system is read-only at run time. Then pip
# and setuptools leave, from ztgate's environment and the base image's.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python3 -m venv /opt/ztgate \
 && /opt/ztgate/bin/pip install --no-cache-dir --no-index --find-links=/wheels /wheels/ztgate-*.whl \
 && /opt/ztgate/bin/pip uninstall --yes --quiet pip setuptools \
 && if python3 -m pip --version >/dev/null 2>&1; then \
      python3 -m pip uninstall --yes --quiet pip setuptools wheel; \
    fi \
 && groupadd --gid 10001 ztgate \
 && useradd --uid 10001 --gid 10001 --no-log-init --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin ztgate \
 && mkdir -p /var/lib/ztgate /etc/ztgate \
 && chown 10001:10001 /var/lib/ztgate
# The working directory is the store's volume: the default store.url (sqlite:///.ztgate/...)
# lands on it too.
WORKDIR /var/lib/ztgate
VOLUME ["/var/lib/ztgate"]
# Numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8787
# Alive and answering on its port (the Kubernetes chart probes /healthz and /readyz itself).
# ZTGATE_HEALTHCHECK_URL follows a config that listens elsewhere.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['ZTGATE_HEALTHCHECK_URL'], timeout=4)"]
ENTRYPOINT ["ztgate"]
CMD ["serve"]
