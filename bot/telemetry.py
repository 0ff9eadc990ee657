"""What the core reports about its work (metrics), and the id of the request being handled.

The core only calls the small ``Telemetry`` protocol; an adapter implements it (Prometheus
in ``adapters/metrics.py``). ``REQUEST_ID`` is set while one message is handled, so every
log line about that message can carry it (``adapters/logs.py`` adds it).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal, Protocol

from bot.ledger import UsageRecord

# What happened to a message that produced no usage record (no model was called), or
# something noticed on the way. "command": /help, /reset, /model answered; "refused": a
# user-facing refusal (empty, too long, premium not allowed or over budget, rate limit);
# "store_unavailable" and "error": the message got an apology; "dedupe_hit": a redelivered
# or doubled event that was not answered again; "rate_limited": a question refused by the
# rate limit (also counted as "refused"); "reclaimed": a question another replica accepted
# and did not finish, taken over here.
EventName = Literal[
    "command", "refused", "store_unavailable", "error", "dedupe_hit", "rate_limited", "reclaimed"
]

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)


class Telemetry(Protocol):
    """Receives what the core reports; must not block or raise."""

    def usage(self, record: UsageRecord) -> None:
        """A model was asked a question (answered or failed): one usage record."""
        ...

    def event(self, name: EventName, platform: str) -> None:
        """Something countable happened to a message from ``platform``."""
        ...


class NullTelemetry:
    """Telemetry that records nothing (the default)."""

    def usage(self, record: UsageRecord) -> None:
        """Ignore the record."""

    def event(self, name: EventName, platform: str) -> None:
        """Ignore the event."""


def new_request_id() -> str:
    """A short random id for one handled message."""
    return uuid.uuid4().hex[:12]


@contextmanager
def request_scope() -> Iterator[str]:
    """Set ``REQUEST_ID`` for the code inside, unless an outer scope (an adapter) set one."""
    current = REQUEST_ID.get()
    if current is not None:
        yield current
        return
    request_id = new_request_id()
    token = REQUEST_ID.set(request_id)
    try:
        yield request_id
    finally:
        REQUEST_ID.reset(token)
