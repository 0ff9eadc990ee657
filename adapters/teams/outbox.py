"""Sending activities into one Teams conversation: one call at a time, throttled and transient
failures retried (tenacity) with jittered backoff, or after the Retry-After Teams asks for."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from botbuilder.core import TurnContext
from botbuilder.schema import Activity, ErrorResponseException
from msrest.exceptions import ClientRequestError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from adapters.teams.errors import DeliveryFailed

log = logging.getLogger(__name__)

# Throttling (429) and the transient failures Teams documents (412, 502, 504), plus 503.
RETRYABLE = frozenset({412, 429, 502, 503, 504})


@dataclass(slots=True)
class ReplyOptions:
    """Pacing and size limits of Teams replies; shared by every sink of one bot."""

    stream_interval: float = 1.0  # Teams accepts about one streaming update per second
    stream_budget: float = 100.0  # Teams ends a stream after 2 minutes: start a new one before
    typing_delay: float = 0.5  # instant replies (commands, redeliveries) show no typing
    typing_interval: float = 3.0  # Teams hides the typing indicator after a few seconds
    message_limit: int = 12_000  # UTF-16 units of text; Teams refuses messages over ~28 KB
    retry_attempts: int = 4
    retry_base_delay: float = 1.0
    retry_max_delay: float = 30.0


def tune_connector(client: Any, *, timeout: float = 30.0) -> None:
    """Make a botbuilder ConnectorClient fail fast: our own retries decide (with the status
    code in hand), not the urllib3 retries msrest hides behind 100-second timeouts."""
    config = getattr(client, "config", None)
    if config is None:
        return
    policy = config.retry_policy.policy  # the urllib3 Retry its requests session already holds
    policy.total = policy.connect = policy.read = 0
    policy.status_forcelist = set()
    config.connection.timeout = timeout


class _Refused(DeliveryFailed):
    """A failed call, with the Retry-After Teams sent (seconds), if any."""

    def __init__(self, failure: DeliveryFailed, retry_after: float | None) -> None:
        super().__init__(failure.status, failure.code, failure.message)
        self.retry_after = retry_after


def _delivery_failed(exc: ErrorResponseException) -> _Refused:
    response = exc.response
    status = getattr(response, "status_code", None)
    code = message = ""
    inner = getattr(getattr(exc, "error", None), "error", None)
    if inner is not None:
        code, message = str(inner.code or ""), str(inner.message or "")
    else:
        try:
            body = json.loads(response.text())
            code = str(body.get("error", {}).get("code", ""))
            message = str(body.get("error", {}).get("message", ""))
        except Exception:
            pass
    retry_after: float | None = None
    try:
        retry_after = float(response.headers.get("Retry-After"))
    except (AttributeError, TypeError, ValueError):
        pass
    return _Refused(DeliveryFailed(status, code, message), retry_after)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, DeliveryFailed) and (exc.status is None or exc.status in RETRYABLE)


class _RetryAfterOrBackoff:
    """Wait what Teams asked for (Retry-After), else a jittered exponential backoff."""

    def __init__(self, options: ReplyOptions) -> None:
        self._max = options.retry_max_delay
        self._backoff = wait_random_exponential(
            multiplier=options.retry_base_delay, max=options.retry_max_delay
        )

    def __call__(self, state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome is not None else None
        retry_after = getattr(failure, "retry_after", None)
        if retry_after is not None:
            return float(min(retry_after, self._max))
        return float(self._backoff(state))


def _log_retry(state: RetryCallState) -> None:
    failure = state.outcome.exception() if state.outcome is not None else None
    delay = state.next_action.sleep if state.next_action is not None else 0.0
    status = getattr(failure, "status", None)
    log.info("Bot Connector answered %s; retrying in %.1fs", status, delay)


class Outbox:
    """Sends activities into one conversation through botbuilder's TurnContext, one at a
    time, retrying throttled and transient failures with backoff."""

    def __init__(
        self,
        context: TurnContext,
        options: ReplyOptions,
        *,
        on_posted: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._context = context
        self._options = options
        self._lock = asyncio.Lock()
        self._on_posted = on_posted
        self._noted: set[str] = set()

    async def send(self, activity: Activity, *, retry: bool = True) -> str | None:
        """Post an activity; returns the id Teams gave it."""
        response = await self._call(lambda: self._context.send_activity(activity), retry)
        posted = getattr(response, "id", None) or None
        visible = activity.type != "typing" or bool(activity.entities)  # not a bare indicator
        if posted and visible and self._on_posted is not None and posted not in self._noted:
            # Recorded so that a replica taking over this answer can remove it.
            self._noted.add(posted)
            await self._on_posted(posted)
        return posted

    async def update(self, activity: Activity) -> None:
        """Replace the text of an activity the bot posted (``activity.id``)."""
        await self._call(lambda: self._context.update_activity(activity), True)

    async def _call(self, operation: Callable[[], Awaitable[Any]], retry: bool) -> Any:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._options.retry_attempts if retry else 1),
            retry=retry_if_exception(_retryable),
            wait=_RetryAfterOrBackoff(self._options),
            before_sleep=_log_retry,
            reraise=True,
        )
        async with self._lock:
            async for attempt in retrying:
                with attempt:
                    try:
                        return await operation()
                    except ErrorResponseException as exc:
                        raise _delivery_failed(exc) from exc
                    except ClientRequestError as exc:
                        raise DeliveryFailed(None, "", type(exc).__name__) from exc
        raise AssertionError("unreachable")  # reraise=True: the last failure was raised
