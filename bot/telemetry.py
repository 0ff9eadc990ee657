"""What the core reports about its work (metrics), and the id of the request being handled.

The core only calls the small ``Telemetry`` protocol; an adapter implements it (Prometheus
in ``adapters/app/metrics.py``). ``REQUEST_ID`` is set while one message is handled, so every
log line about that message can carry it (``adapters/app/logs.py`` adds it).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol

from bot.outcome import Event, Outcome
from bot.usage import UsageRecord

# What is counted besides usage records: how a message that asked no model ended
# (``Outcome.COMMAND``, ``REFUSED``, ``STORE_UNAVAILABLE``, ``ERROR``), or an ``Event``.
EventName = Outcome | Event

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
