"""Logging set-up: readable text by default, one JSON object per line with LOG_FORMAT=json.

Every line written while a message is handled carries its request id (``bot.telemetry``),
and secrets (tokens, keys, passwords in URLs) are redacted from every line, third-party
libraries' included. Message text is never logged at INFO or above by the bot itself.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from bot.redact import redact
from bot.telemetry import REQUEST_ID

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s"
# Attributes every LogRecord has; anything else was passed with `extra=` and goes into JSON.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "request_tag",
    "taskName",
}


class RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the message being handled, if any."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


def redacted(text: str) -> str:
    """``text`` with anything that looks like a secret replaced."""
    return redact(text).text


_safe = redacted


class OnceUntilChanged(logging.Filter):
    """Lets a repeated warning through once, then drops it until its logger says something
    else: "server X skipped" every 10 s becomes one line, and again after "X is back"."""

    def __init__(self) -> None:
        super().__init__()
        self._said: dict[tuple[str, str], object] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        # The first argument names the subject (a server's URL), so each is said once.
        subject = record.args[0] if isinstance(record.args, tuple) and record.args else ""
        key = (record.name, str(subject))
        if record.levelno < logging.WARNING:
            self._said.pop(key, None)  # e.g. "X is back": the next warning is news again
            return True
        if self._said.get(key) == record.msg:
            return False
        self._said[key] = record.msg
        return True


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [req <id>]: message`, secrets redacted."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        record.request_tag = f" [req {request_id}]" if request_id else ""
        return _safe(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, for log shippers; secrets redacted."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": _safe(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            data["request_id"] = request_id
        for name, value in record.__dict__.items():
            if name not in _STANDARD_ATTRS and name not in data:
                data[name] = (
                    value if isinstance(value, int | float | bool | None) else _safe(str(value))
                )
        if record.exc_info:
            data["exc_info"] = _safe(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=False)


# Loggers whose periodic checks repeat the same warning while a dependency stays down.
REPEATING = ("inference.pool",)


def configure(
    level: str, fmt: str, *, stream: IO[str] | None = None, path: Path | None = None
) -> None:
    """Configure the root logger once for the process: to ``path`` when given, else to
    ``stream`` (stderr by default). Never stdout: that is for answers and reports."""
    handler: logging.Handler = (
        logging.FileHandler(path, encoding="utf-8")
        if path is not None
        else logging.StreamHandler(stream)
    )
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if level.upper() in logging.getLevelNamesMapping() else "INFO")
    # Third-party clients log request bodies at DEBUG; keep them quiet unless asked.
    for noisy in (
        "httpx",
        "httpcore",
        "slack_bolt",
        "slack_sdk",
        "aiohttp.access",
        "openai",
        "msal",
        "alembic.runtime.plugins",  # one line per plugin on every migration
    ):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))
    once = OnceUntilChanged()
    for name in REPEATING:
        logger = logging.getLogger(name)
        logger.filters[:] = [f for f in logger.filters if not isinstance(f, OnceUntilChanged)]
        logger.addFilter(once)
