# Rendered by Slipway from buildtemplates/node (package.json found).
FROM slipway/node:bookworm AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN mkdir -p node_modules && npm ci --omit=dev

FROM slipway/node:bookworm
ENV PORT=8080 HOME=/tmp NODE_ENV=production
WORKDIR /app
COPY --from=deps --chown=10001:10001 /app/node_modules /app/node_modules
COPY --chown=10001:10001 . /app
USER 10001:10001
CMD ["npm", "start", "--silent"]
