# Rendered by Slipway from buildtemplates/node (package.json found).
FROM slipway/node:bookworm
ARG NPM_CONFIG_LOGLEVEL
WORKDIR /app
COPY package.json ./
RUN --mount=type=cache,id=slipway-0123456789abcdef0123-npm,target=/root/.npm --mount=type=secret,id=NPM_TOKEN \
    export NPM_TOKEN="$(cat /run/secrets/NPM_TOKEN)" && npm install --omit=dev --cache /root/.npm
ENV PORT=8080 HOME=/tmp NODE_ENV=production
COPY --chown=10001:10001 . /app
USER 10001:10001
CMD ["npm", "start", "--silent"]
