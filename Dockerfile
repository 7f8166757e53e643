# Two stages on the same base: the builder installs the package into a venv at /opt/venv,
# the runtime copies only that venv (no pip cache, no build files, no sources).
# Build: docker build -t emaillog .
# Run:   docker run -p 8080:8080 -p 8081:8081 --env-file .env emaillog
# 8080: /metrics, /livez, /readyz; 8081: the web UI and REST API. EMAILLOG_UI_AUTH is token
# by default: mount a tokens file and set EMAILLOG_API_TOKENS_FILE (or EMAILLOG_UI_PORT=0
# serves no UI).

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# pyproject.toml names README.md as the package's readme: the build fails without it.
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY exchange_sim ./exchange_sim
# A regular (non-editable) install: the venv holds everything, /src is left behind.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    EMAILLOG_HTTP_HOST=0.0.0.0 \
    EMAILLOG_HTTP_PORT=8080 \
    EMAILLOG_UI_HOST=0.0.0.0 \
    EMAILLOG_UI_PORT=8081 \
    EMAILLOG_LOG_FORMAT=json \
    EMAILLOG_DATA_DIR=/var/lib/emaillog
# A numeric uid so Kubernetes' runAsNonRoot can verify it. The home directory is where the
# embedded PostgreSQL would keep its data when EMAILLOG_DATABASE_URL is not set (demo only).
RUN groupadd --system --gid 10001 emaillog \
    && useradd --system --uid 10001 --gid emaillog --create-home \
       --home-dir /var/lib/emaillog --shell /usr/sbin/nologin emaillog
COPY --from=builder /opt/venv /opt/venv
WORKDIR /var/lib/emaillog
USER 10001:10001
EXPOSE 8080 8081
# SIGTERM stops intake and drains within EMAILLOG_DRAIN_TIMEOUT_SECONDS (default 20 s), so
# give `docker stop` more than that: docker stop --time 30.
STOPSIGNAL SIGTERM
# Slim images have no curl: urlopen raises (exit 1) on a refused connection or a non-2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('EMAILLOG_HTTP_PORT', '8080') + '/livez', timeout=3)"]
# Exec form: emaillog is PID 1 and receives SIGTERM itself.
ENTRYPOINT ["emaillog"]
CMD ["run"]
