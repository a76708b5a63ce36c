# Multi-stage build: compile TypeScript with dev dependencies, ship only dist/ and production modules, run as non-root.
# The last stage is the production image (the default target); `dev` is the local stack's (docker-compose.yml).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

# The local stack's SnapLogic stand-in and development token issuer, run from source with tsx (test/dev/): every
# dependency and test/. Never deployed; the production stage below copies nothing from it.
FROM node:20-bookworm-slim AS dev
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY test ./test
# The dev issuer's state dir, owned by node so a named volume mounted there starts out writable by it.
RUN mkdir -p /var/lib/snapgate-dev/issuer && chown -R node:node /var/lib/snapgate-dev
USER node
CMD ["node", "--import", "tsx", "test/dev/stand-in.ts", "--host", "0.0.0.0"]

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    SNAPGATE_CONFIG=/app/config/snapgate.yaml
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY config/snapgate.example.yaml ./config/snapgate.example.yaml
USER node
EXPOSE 8080 9464
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s CMD node -e "fetch('http://127.0.0.1:'+(process.env.SNAPGATE_PORT||8080)+'/livez').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "dist/src/main.js"]
