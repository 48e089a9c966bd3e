# slipway/cnb-run:bookworm — the run-time base image of Slipway's CNB builder: what every app
# image built by slipway/builder:bookworm starts from.
#
# Debian bookworm minbase (slipway/debian:bookworm, with the host's CA bundle) plus only the
# language runtimes the buildpacks' launch layers need: python3 (3.11; the python buildpack's
# virtualenv links to /usr/bin/python3) and nodejs (18). No pip, npm, compilers or docs.
ARG BASE=slipway/debian:bookworm
FROM ${BASE}

# A different uid from the build image's (1000), same group: the app cannot rewrite its own
# layers at run time (platform spec: run image user SHOULD differ from the build image's).
ARG CNB_UID=1001
ARG CNB_GID=1000
ARG STACK_ID=dev.slipway.stacks.bookworm

RUN set -eux; \
    printf '%s\n' 'path-exclude=/usr/share/doc/*' 'path-exclude=/usr/share/man/*' \
      'path-exclude=/usr/share/info/*' 'path-exclude=/usr/share/locale/*' \
      'path-include=/usr/share/locale/locale.alias' >/etc/dpkg/dpkg.cfg.d/slipway-nodoc; \
    apt-get update -q; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      python3-minimal libpython3-stdlib python3 nodejs; \
    apt-get clean; rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    find /usr/lib/python3* -name '__pycache__' -prune -exec rm -rf {} +; \
    groupadd --gid "${CNB_GID}" cnb; \
    useradd --uid "${CNB_UID}" --gid "${CNB_GID}" --create-home --shell /bin/bash cnb

ENV CNB_USER_ID=${CNB_UID} \
    CNB_GROUP_ID=${CNB_GID} \
    LANG=C.UTF-8 \
    PORT=8080 \
    PYTHONUNBUFFERED=1 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt

LABEL io.buildpacks.stack.id="${STACK_ID}" \
      io.buildpacks.base.id="dev.slipway.run.bookworm" \
      io.buildpacks.base.distro.name="debian" \
      io.buildpacks.base.distro.version="12" \
      io.buildpacks.base.maintainer="Slipway" \
      io.buildpacks.base.description="Slipway CNB run image: Debian bookworm minbase with python3 (3.11) and nodejs (18)" \
      io.buildpacks.stack.maintainer="Slipway" \
      io.buildpacks.stack.distro.name="debian" \
      io.buildpacks.stack.distro.version="12"

USER ${CNB_UID}:${CNB_GID}
