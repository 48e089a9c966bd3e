# Rendered by Slipway from buildtemplates/procfile (Procfile found).
FROM slipway/debian:bookworm
ENV PORT=8080 HOME=/tmp
WORKDIR /app
COPY --chown=10001:10001 . /app
USER 10001:10001
CMD ["sh", "-c", "exec ./serve --port $PORT"]
