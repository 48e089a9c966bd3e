# Rendered by Slipway from buildtemplates/python (requirements.txt found).
FROM slipway/python:3.11-bookworm
RUN python3 -m venv /opt/venv
WORKDIR /app
COPY requirements.txt ./
RUN --mount=type=cache,id=slipway-0123456789abcdef0123-pip,target=/root/.cache/pip \
    /opt/venv/bin/pip download --disable-pip-version-check --cache-dir /root/.cache/pip --dest /root/.cache/pip/files -r requirements.txt gunicorn \
    && /opt/venv/bin/pip install --disable-pip-version-check --no-index --find-links /root/.cache/pip/files -r requirements.txt gunicorn
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PORT=8080 HOME=/tmp PYTHONUNBUFFERED=1
COPY --chown=10001:10001 . /app
USER 10001:10001
CMD ["sh", "-c", "exec gunicorn --bind \"0.0.0.0:$PORT\" app:application"]
