# Rendered by Slipway from buildtemplates/node (package.json found).
FROM slipway/node:bookworm
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,id=slipway-0123456789abcdef0123-npm,target=/root/.npm \
    npm ci --omit=dev --cache /root/.npm
ENV PORT=8080 HOME=/tmp NODE_ENV=production
COPY --chown=10001:10001 . /app
USER 10001:10001
CMD ["npm", "start", "--silent"]
