# Rendered by Slipway from buildtemplates/python (requirements.txt found).
FROM slipway/python:3.11-bookworm AS deps
ARG PIP_INDEX_URL
WORKDIR /app
COPY requirements.txt ./
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r requirements.txt

FROM slipway/python:3.11-bookworm
COPY --from=deps /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PORT=8080 HOME=/tmp PYTHONUNBUFFERED=1
WORKDIR /app
COPY --chown=10001:10001 . /app
USER 10001:10001
CMD ["sh", "-c", "exec gunicorn -b :$PORT app:app"]
