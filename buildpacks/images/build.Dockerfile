# slipway/cnb-build:bookworm — the build-time base image of Slipway's CNB builder.
#
# Debian bookworm (slipway/debian:bookworm: debootstrap minbase + the host's CA bundle, made by
# `python -m pipeline.build.baseimages`) plus what Slipway's buildpacks run at build time:
# Python 3.11 with venv/pip, Node.js 18 with npm. Nothing is pulled from a container registry: every package
# comes from Debian's archive through the host's proxy.
#
# pip and npm reach PyPI and the npm registry through the same TLS proxy, so they are pointed at
# the CA bundle baked into the base image (the host's /etc/ssl/certs/ca-certificates.crt).
ARG BASE=slipway/debian:bookworm
FROM ${BASE}

ARG CNB_UID=1000
ARG CNB_GID=1000
ARG STACK_ID=dev.slipway.stacks.bookworm

# dpkg excludes keep docs/man pages out (they are not needed to build apps).
RUN set -eux; \
    printf '%s\n' 'path-exclude=/usr/share/doc/*' 'path-exclude=/usr/share/man/*' \
      'path-exclude=/usr/share/info/*' >/etc/dpkg/dpkg.cfg.d/slipway-nodoc; \
    apt-get update -q; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      python3 python3-venv python3-pip nodejs npm; \
    apt-get clean; rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    groupadd --gid "${CNB_GID}" cnb; \
    useradd --uid "${CNB_UID}" --gid "${CNB_GID}" --create-home --shell /bin/bash cnb

# The lifecycle (v0.21: Docker's Go client v29, API 1.44-1.52) exports into the Docker Engine
# that pack mounts. With an older engine (Debian bookworm's docker.io 20.10 speaks API 1.41)
# it must be told the engine's API version, or every build fails with "client version 1.52 is too
# new". scripts/builder sets this from `docker version` when the engine is older than API 1.44;
# empty = negotiate.
ARG DOCKER_API_VERSION=
ENV DOCKER_API_VERSION=${DOCKER_API_VERSION} \
    CNB_USER_ID=${CNB_UID} \
    CNB_GROUP_ID=${CNB_GID} \
    CNB_STACK_ID=${STACK_ID} \
    LANG=C.UTF-8 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=180 \
    NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
    NPM_CONFIG_CAFILE=/etc/ssl/certs/ca-certificates.crt \
    NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false \
    NPM_CONFIG_AUDIT=false

LABEL io.buildpacks.stack.id="${STACK_ID}" \
      io.buildpacks.base.distro.name="debian" \
      io.buildpacks.base.distro.version="12" \
      io.buildpacks.base.maintainer="Slipway" \
      io.buildpacks.base.description="Slipway CNB build image: Debian bookworm with Python 3.11 (venv, pip) and Node.js 18 (npm)" \
      io.buildpacks.stack.maintainer="Slipway" \
      io.buildpacks.stack.distro.name="debian" \
      io.buildpacks.stack.distro.version="12"

USER ${CNB_UID}:${CNB_GID}
