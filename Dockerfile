# syntax=docker/dockerfile:1
# The bot's image: `chatbot serve` on port 3000, as a non-root user.
# docker-compose.yml builds it and also runs it once as `chatbot db upgrade` (the migrate service).

# Pinned: the image is built from what CI tested (Python, Debian release, requirements.lock).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- build: install the bot and its dependencies (pyproject.toml, versions from
#     requirements.lock) into /opt/venv ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_PROGRESS_BAR=off \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE requirements.lock ./
COPY scripts/install.sh scripts/install.sh
COPY bot bot
COPY inference inference
COPY adapters adapters
# The same script CI runs outside Docker (scripts/docker_install_check.py). The pip cache
# stays in BuildKit's cache, not in the image.
RUN --mount=type=cache,target=/root/.cache/pip \
    sh scripts/install.sh /opt/venv

# --- runtime: the virtualenv, and git for git knowledge sources ---
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# git (and ssh for git+ssh:// sources) fetch the git sources of KNOWLEDGE_SOURCES.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends git openssh-client \
    && rm -rf /var/lib/apt/lists/*
# A fixed numeric uid, so `runAsNonRoot`-style checks can see it is not root. Its home is
# /app: without DATABASE_URL the SQLite ledger is /app/.local/share/chatbot/chatbot.db.
RUN useradd --uid 10001 --user-group --create-home --home-dir /app --shell /usr/sbin/nologin chatbot
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER 10001:10001

EXPOSE 3000
# /healthz answers 200 while the process runs. The slim image has no curl: Python it is.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % (os.environ.get('PORT') or '3000'), timeout=4)"]
# `chatbot serve` drains answers in flight on SIGTERM (SHUTDOWN_GRACE_SECONDS).
STOPSIGNAL SIGTERM
CMD ["chatbot", "serve"]
