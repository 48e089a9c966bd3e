# Slipway's control plane, the image the Helm chart (charts/slipway) runs: `slipway server` as
# uid 10001. Build it with scripts/image, which first builds every wheel on the host into
# dist/image/ (containers may not reach PyPI) and tags slipway/slipway:<version>; this file
# installs only from those wheels. The build context is the checkout, of which .dockerignore
# sends dist/image/ alone.
#
# The image holds no HAProxy and no Docker Engine: it is for SLIPWAY_ENGINE=knative, which the
# chart sets.

FROM slipway/python:3.11-bookworm AS install
RUN python3 -m venv /opt/slipway
# Dependencies before Slipway, each in its own layer: a change to Slipway's code alone reuses
# the dependency layer.
COPY dist/image/deps/ /wheels/deps/
RUN /opt/slipway/bin/pip install --no-cache-dir --no-index --find-links /wheels/deps \
        /wheels/deps/*.whl
COPY dist/image/slipway/ /wheels/slipway/
# pip and setuptools only install: the running image needs neither (~20 MB).
RUN /opt/slipway/bin/pip install --no-cache-dir --no-index --no-deps /wheels/slipway/*.whl \
    && /opt/slipway/bin/pip check \
    && /opt/slipway/bin/python -m pip uninstall -q -y pip setuptools

# The wheels stay behind in the install stage; only the virtualenv is copied.
FROM slipway/python:3.11-bookworm
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/slipway \
        --shell /usr/sbin/nologin slipway \
    && install -d -o 10001 -g 10001 /var/lib/slipway
COPY --from=install /opt/slipway /opt/slipway
# The chart sets these too; they are what a container needs: the API on every interface, the
# data dir the chart mounts its volume on, and a metadata port a non-root user may bind (GCE's
# is 80).
ENV PATH=/opt/slipway/bin:$PATH \
    SLIPWAY_API_HOST=0.0.0.0 \
    SLIPWAY_DATA_DIR=/var/lib/slipway \
    SLIPWAY_METADATA_PORT=8080
USER 10001:10001
WORKDIR /var/lib/slipway
EXPOSE 8081 8080
ENTRYPOINT ["slipway"]
CMD ["server"]
