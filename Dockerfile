# tradebot: the trading daemon (`tradebot run`) in a slim, non-root image.
#
# Two stages. The builder installs the runtime dependencies pinned by requirements.lock (the lock CI
# installs from: `make install` = `pip install -c requirements.lock -e ".[dev]"`) in their own layer,
# then the package itself, non-editable and without the [dev] extras. The final stage copies only the
# virtualenv, the migrations, the config and the sample data: no pytest, ruff, mypy, nor the source tree.
FROM python:3.11.11-slim-bookworm AS builder

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build

# 1. Dependencies: this layer is rebuilt only when pyproject.toml or requirements.lock change.
#    The runtime requirements are [project].dependencies, each pinned by the lock (-c).
COPY pyproject.toml requirements.lock ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > runtime-requirements.txt \
    && pip install -c requirements.lock -r runtime-requirements.txt

# 2. The package: the source changes often, so it comes last; --no-deps keeps the pinned layer above.
COPY README.md ./
COPY src ./src
RUN pip install --no-deps . && pip check

FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin tradebot

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY --chown=tradebot:tradebot alembic.ini ./
COPY --chown=tradebot:tradebot alembic ./alembic
COPY --chown=tradebot:tradebot config ./config
COPY --chown=tradebot:tradebot data ./data

USER tradebot
ENV PATH=/opt/venv/bin:$PATH \
    TRADEBOT_ALEMBIC_DIR=/app/alembic \
    TRADEBOT_DAEMON__HEALTH_FILE=/tmp/tradebot-health.json \
    TRADEBOT_LOG_FORMAT=json

# Reports feed lag and the last successful reconciliation; unhealthy when the daemon's health file is
# older than TRADEBOT_DAEMON__HEALTH_MAX_AGE_S or the feed lags more than TRADEBOT_DAEMON__HEALTH_MAX_FEED_LAG_S.
HEALTHCHECK --interval=60s --timeout=10s --start-period=180s --retries=3 CMD ["tradebot", "healthcheck"]

# /metrics when TRADEBOT_METRICS__PORT is set (docker-compose.yml: 9100 on the compose network).
EXPOSE 9100

# SIGTERM (docker stop) shuts the daemon down gracefully with exit code 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["tradebot"]
CMD ["run"]
