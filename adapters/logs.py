"""Logging set-up: readable text by default, one JSON object per line with LOG_FORMAT=json.

Every line written while a message is handled carries its request id (``bot.telemetry``),
and secrets (tokens, keys, passwords in URLs) are redacted from every line, third-party
libraries' included. Message text is never logged at INFO or above by the bot itself.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
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


def _safe(text: str) -> str:
    return redact(text).text


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


def configure(level: str, fmt: str, *, stream: IO[str] | None = None) -> None:
    """Configure the root logger once for the process (stderr unless ``stream``)."""
    handler = logging.StreamHandler(stream)
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
    ):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))
