# router-health's image. The build needs no network: it installs the wheels
# that deploy/docker/wheelhouse.sh puts in deploy/docker/wheels/ on the host
# (router-health's own wheel and every dependency, for the base's Python).
#
#   deploy/docker/wheelhouse.sh && docker build -t router-health .
#   docker run --rm -p 8000:8000 router-health        # the demo, at http://127.0.0.1:8000
#
# Where no image registry can be reached, build from a local base, e.g. Debian
# 12's python3 made offline by deploy/docker/base-image.sh, with a wheelhouse
# for its Python (see docs/deployment.md):
#   deploy/docker/base-image.sh && deploy/docker/wheelhouse.sh 3.11 && \
#   docker build --build-arg BASE_IMAGE=router-health-base:bookworm -t router-health .
ARG PYTHON_VERSION=3.12
ARG BASE_IMAGE=python:${PYTHON_VERSION}-slim-bookworm

# -- build: a venv with router-health, installed from the wheelhouse only ------
FROM ${BASE_IMAGE} AS build
# Labelled, so `docker image prune --filter label=org.opencontainers.image.title=router-health`
# clears the stages a rebuild leaves behind.
LABEL org.opencontainers.image.title="router-health"
# EXTRAS: what the server side can use, for there is no pip in the image to add
# them later: [cluster] (replicas over Redis), [alerts], [otel]. The wheelhouse
# is made with the same list (deploy/docker/wheelhouse.sh reads it from here).
ARG EXTRAS="cluster,alerts,otel"
COPY deploy/docker/wheels/ /wheels/
# pip runs from its own wheel, so it is never installed in the venv (nor needed
# in the base), and --no-index keeps it off every index.
RUN set -- /wheels/pip-*.whl \
 && python3 -m venv --without-pip /opt/router-health \
 && /opt/router-health/bin/python "$1/pip" install \
        --no-index --find-links /wheels --no-cache-dir --disable-pip-version-check \
        --no-warn-script-location --compile \
        "router-health${EXTRAS:+[$EXTRAS]}" \
 && /opt/router-health/bin/router-health --help >/dev/null

# -- final: the venv and a user, nothing else ----------------------------------
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="router-health" \
      org.opencontainers.image.description="Concurrent, deadline-bounded health checks for AI router adapters" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --gid 10001 router-health \
 && useradd --no-log-init --uid 10001 --gid 10001 --home-dir /var/lib/router-health \
        --no-create-home --shell /usr/sbin/nologin router-health \
 && mkdir -p /var/lib/router-health /etc/router-health \
 && chown 10001:10001 /var/lib/router-health
COPY --from=build /opt/router-health /opt/router-health
# Storage (on by default) keeps its SQLite file at
# $XDG_STATE_HOME/router-health/health.db: /var/lib/router-health/health.db.
# `serve` reads ROUTER_HEALTH_CONFIG (mount the file there, or point it
# elsewhere); keys come from the environment (`-e OPENAI_API_KEY`, ...).
ENV PATH=/opt/router-health/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    XDG_STATE_HOME=/var/lib \
    ROUTER_HEALTH_CONFIG=/etc/router-health/config.toml
VOLUME ["/var/lib/router-health"]
WORKDIR /var/lib/router-health
USER 10001:10001
EXPOSE 8000
# /livez answers as long as the process serves HTTP; no curl in the image, and
# no proxy from the environment in the way. HEALTHCHECK_URL: another port or path.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open(os.environ.get('HEALTHCHECK_URL', 'http://127.0.0.1:8000/livez'), timeout=4)"]
# router-health drains in-flight requests and exits 0 on SIGTERM.
STOPSIGNAL SIGTERM
ENTRYPOINT ["router-health"]
# The demo (simulated providers, no keys). A real fleet:
#   docker run -v "$PWD/config.toml:/etc/router-health/config.toml:ro" -e OPENAI_API_KEY \
#       -p 8000:8000 router-health serve --host 0.0.0.0
CMD ["demo", "--host", "0.0.0.0"]
