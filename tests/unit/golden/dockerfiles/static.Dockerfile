# Rendered by Slipway from buildtemplates/static (index.html found).
FROM slipway/busybox:1.35-bookworm
ENV PORT=8080
COPY --chown=10001:10001 . /www
USER 10001:10001
CMD ["sh", "-c", "exec httpd -f -p \"$PORT\" -h /www"]
