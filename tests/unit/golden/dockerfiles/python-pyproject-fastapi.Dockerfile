# Rendered by Slipway from buildtemplates/python (pyproject.toml found).
FROM slipway/python:3.11-bookworm AS deps
WORKDIR /app
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check 'fastapi>=0.110' httpx uvicorn

FROM slipway/python:3.11-bookworm
COPY --from=deps /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PORT=8080 HOME=/tmp PYTHONUNBUFFERED=1
WORKDIR /app
COPY --chown=10001:10001 . /app
USER 10001:10001
CMD ["sh", "-c", "exec uvicorn main:app --host 0.0.0.0 --port \"$PORT\""]
