# Balance Gateway image (docs/DEPLOYMENT.md).
#
#   docker build -t balance-gateway .                    # with GraphiQL's assets (needs the npm registry)
#   docker build --target runtime -t balance-gateway .   # without them (no node stage is built)
#   docker build --build-arg PIP_EXTRAS=otel -t balance-gateway .   # with OpenTelemetry tracing
#
#   docker run -p 8000:8000 -v /etc/balance-gateway:/etc/balance-gateway:ro \
#     -e REDIS_URL=redis://redis:6379/0 ... balance-gateway
#
# The config is read from $GATEWAY_CONFIG (default /etc/balance-gateway/gateway.toml);
# a missing file stops the container (status 2) rather than starting the demo.

# --- GraphiQL's browser assets, pinned and hash-checked (only GraphiQL needs them) -------------
FROM node:20-slim AS graphiql-assets
WORKDIR /src
COPY scripts/fetch_graphiql_assets.sh scripts/
COPY gateway/server/graphiql_assets.json gateway/server/
RUN bash scripts/fetch_graphiql_assets.sh

# --- the package and its dependencies, in a virtualenv copied whole into the runtime ----------
FROM python:3.11-slim AS build
ARG PIP_EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml ./
COPY gateway gateway
COPY schema schema
COPY resolvers resolvers
RUN /opt/venv/bin/pip install ".${PIP_EXTRAS:+[$PIP_EXTRAS]}"

# --- runtime: no compilers, no sources, a non-root user -------------------------------------------
FROM python:3.11-slim AS runtime
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid gateway --no-create-home --shell /usr/sbin/nologin gateway
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_CONFIG=/etc/balance-gateway/gateway.toml \
    GATEWAY_LOG_FORMAT=json \
    GATEWAY_WORKERS=1
USER gateway
EXPOSE 8000
# Liveness only (the readiness view, /health?ready, is for the load balancer).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
# SIGTERM (docker stop, Kubernetes) stops accepting, lets requests in flight finish for up to
# --graceful-timeout seconds, then closes upstream pools and Redis.
STOPSIGNAL SIGTERM
CMD ["balance-gateway", "serve", "--host", "0.0.0.0", "--port", "8000"]

# --- default image: the runtime plus GraphiQL's assets, served only when [server] graphiql = true --
FROM runtime AS runtime-graphiql
USER root
COPY --from=graphiql-assets /src/gateway/server/static/graphiql /tmp/graphiql
RUN dest="$(python -c 'import gateway, pathlib; print(pathlib.Path(gateway.__file__).parent / "server" / "static")')" \
 && mkdir -p "$dest" && rm -rf "$dest/graphiql" && mv /tmp/graphiql "$dest/graphiql" \
 && chmod -R a+rX "$dest"
USER gateway
