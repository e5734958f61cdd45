# tradebot: the trading daemon (`tradebot run`) in a slim, non-root image.
# The install steps are the Makefile's (`make install`: a virtualenv in .venv and
# `pip install -c requirements.lock -e ".[dev]"`), the same ones CI runs through `.ci/run` → `make test`.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin tradebot

WORKDIR /app
COPY --chown=tradebot:tradebot Makefile pyproject.toml requirements.lock README.md alembic.ini ./
COPY --chown=tradebot:tradebot src ./src
COPY --chown=tradebot:tradebot alembic ./alembic
COPY --chown=tradebot:tradebot config ./config
COPY --chown=tradebot:tradebot data ./data

USER tradebot
RUN make install PYTHON=python3

ENV PATH=/app/.venv/bin:$PATH \
    TRADEBOT_ALEMBIC_DIR=/app/alembic \
    TRADEBOT_DAEMON__HEALTH_FILE=/tmp/tradebot-health.json \
    TRADEBOT_LOG_FORMAT=json

# Reports feed lag and the last successful reconciliation; unhealthy when the daemon's health file is
# older than TRADEBOT_DAEMON__HEALTH_MAX_AGE_S or the feed lags more than TRADEBOT_DAEMON__HEALTH_MAX_FEED_LAG_S.
HEALTHCHECK --interval=60s --timeout=10s --start-period=180s --retries=3 CMD ["tradebot", "healthcheck"]

# SIGTERM (docker stop) shuts the daemon down gracefully with exit code 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["tradebot"]
CMD ["run"]
