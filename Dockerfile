# syntax=docker/dockerfile:1
#
# promosync: one image for every role. The command picks it:
#   promosync start    migrate, then API + worker in one process (the default)
#   promosync api      REST API only
#   promosync worker   queue worker only (scale out with more containers)
#   promosync migrate  apply pending migrations and exit
# The CLI runs the TypeScript sources through tsx, so there is no compile step.

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: every dependency, then the generated Prisma client (src/generated/prisma) ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# The client generator needs no schema engine: /bin/false stands in for it, so nothing is
# downloaded (the same as `npm run generate` on an offline machine).
ENV PRISMA_SCHEMA_ENGINE_BINARY=/bin/false
COPY package.json package-lock.json prisma.config.ts ./
COPY prisma ./prisma
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && npm run generate

# ---- deps: production dependencies only ----
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Install scripts are not needed: esbuild and msgpackr load their prebuilt platform packages.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

# ---- runtime ----
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    PORT=3000 \
    HOST=0.0.0.0
WORKDIR /app
# Code and dependencies belong to root and are read-only to the app; only .data (the embedded
# database and private Redis of `start` without DATABASE_URL/REDIS_URL) is writable.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY machines ./machines
COPY prisma ./prisma
COPY src ./src
COPY --from=build /app/src/generated ./src/generated
RUN mkdir -p /app/.data && chown node:node /app/.data
USER node
EXPOSE 3000
CMD ["node", "bin/promosync.js", "start"]
