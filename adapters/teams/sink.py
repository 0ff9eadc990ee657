"""How one reply appears in Teams: streamed in personal chats, one message elsewhere.

Teams' streaming protocol (one-on-one chats only): ``typing`` activities carrying a
``streaminfo`` entity (``streamType`` "informative" or "streaming", an increasing
``streamSequence``, and after the first one the ``streamId`` Teams returned) whose text is
the whole answer so far, then a ``message`` with ``streamType`` "final". Teams accepts
about one update a second, ends a stream after two minutes, and answers 403
ContentStreamNotAllowed once the user pressed Stop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from botbuilder.core import TurnContext
from botbuilder.schema import Activity, Entity, ErrorResponseException
from msrest.exceptions import ClientRequestError

from adapters.teams.errors import DeliveryFailed
from adapters.teams.render import to_teams_markdown
from adapters.text_split import cut_for_limit, split_message, utf16_len
from bot.errors import ReplyCancelled

log = logging.getLogger(__name__)

# Throttling (429) and the transient failures Teams documents (412, 502, 504), plus 503.
RETRYABLE = frozenset({412, 429, 502, 503, 504})
INFORMATIVE_LIMIT = 1000  # characters Teams allows in an informative update


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


class StreamInfo(Entity):  # type: ignore[misc]
    """The ``streaminfo`` entity; botbuilder's Entity would drop these fields on the wire."""

    _attribute_map: ClassVar[dict[str, dict[str, str]]] = {
        "type": {"key": "type", "type": "str"},
        "stream_id": {"key": "streamId", "type": "str"},
        "stream_type": {"key": "streamType", "type": "str"},
        "stream_sequence": {"key": "streamSequence", "type": "int"},
    }

    def __init__(
        self,
        *,
        stream_type: str,
        stream_id: str | None = None,
        stream_sequence: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(type="streaminfo", **kwargs)
        self.stream_type = stream_type
        self.stream_id = stream_id
        self.stream_sequence = stream_sequence


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


def _delivery_failed(exc: ErrorResponseException) -> tuple[DeliveryFailed, float | None]:
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
    return DeliveryFailed(status, code, message), retry_after


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
        options = self._options
        attempts = options.retry_attempts if retry else 1
        async with self._lock:
            for attempt in range(attempts):
                try:
                    return await operation()
                except ErrorResponseException as exc:
                    failure, retry_after = _delivery_failed(exc)
                    if failure.status not in RETRYABLE or attempt == attempts - 1:
                        raise failure from exc
                except ClientRequestError as exc:
                    failure, retry_after = DeliveryFailed(None, "", type(exc).__name__), None
                    if attempt == attempts - 1:
                        raise failure from exc
                if retry_after is None:
                    retry_after = options.retry_base_delay * 2**attempt * (0.5 + random.random())
                delay = min(retry_after, options.retry_max_delay)
                log.info("Bot Connector answered %s; retrying in %.1fs", failure.status, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")


class TeamsReplySink:
    """Writes one reply into a Teams conversation (a ReplySink of the core)."""

    def __init__(self, *, outbox: Outbox, streaming: bool, options: ReplyOptions) -> None:
        self._outbox = outbox
        self._streaming = streaming
        self._options = options
        self._buffer = ""  # text written and not yet part of a message
        self._segment = ""  # raw Markdown of the streamed message being written
        self._stream_id: str | None = None
        self._sequence = 0
        self._stream_started = 0.0
        self._last_sent = 0.0
        self._shown = ""  # text of the last streaming update
        self._status_id: str | None = None  # a status message the answer will replace
        self._cancelled = False  # the user pressed Stop
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._typing_stop = asyncio.Event()
        self._typing: asyncio.Task[None] | None = None

    # -- the ReplySink protocol ------------------------------------------------

    async def begin(self) -> None:
        """Show the typing indicator (after a short delay) until the answer appears."""
        self._typing = asyncio.get_running_loop().create_task(self._type())

    async def status(self, text: str) -> None:
        """A passing status (queue position): a stream's informative update in personal
        chats, else a short message the answer replaces."""
        if self._cancelled or self._buffer or self._segment or self._pump is not None:
            return  # the answer is already on its way
        if self._streaming:
            activity = Activity(
                type="typing",
                text=text[:INFORMATIVE_LIMIT],
                entities=[
                    StreamInfo(
                        stream_type="informative",
                        stream_id=self._stream_id,
                        stream_sequence=self._next_sequence(),
                    )
                ],
            )
            await self._stream_send(activity)
            if self._streaming or self._cancelled:
                return
        shown = to_teams_markdown(f"_{text}_")
        try:
            if self._status_id is None:
                self._status_id = await self._outbox.send(_message(shown))
            else:
                await self._outbox.update(_message(shown, activity_id=self._status_id))
        except DeliveryFailed as exc:
            log.warning("could not show a status in Teams: %s", exc)

    async def write(self, text: str) -> None:
        """Queue text; streamed at Teams' pace in personal chats, else sent on close.

        Raises ReplyCancelled once the user pressed Stop, so the model stops generating."""
        if self._cancelled:
            raise ReplyCancelled("the user stopped the answer")
        if not text:
            return
        self._buffer += text
        if self._streaming and self._pump is None:
            self._pump = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    async def close(self) -> None:
        """Send what is left: end the stream, or post the answer (split if long)."""
        self._closing.set()
        self._wake.set()
        if self._pump is not None:
            await self._pump
        if not self._cancelled and self._buffer.strip():
            await self._stop_typing()
            await self._post_answer(self._buffer)
            self._buffer = ""
        await self._stop_typing()

    async def stop(self) -> None:
        """Stop the typing indicator (also for a message the core did not answer)."""
        await self._stop_typing()

    # -- streaming -------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._buffer and self._streaming and not self._cancelled:
                await self._flush()
            if self._cancelled or not self._streaming:
                return  # stopped by the user, or close() posts the rest as a message
            if self._closing.is_set():
                if self._buffer:
                    continue
                await self._finish_segment()
                return
            try:
                async with asyncio.timeout(self._options.stream_interval):
                    await self._closing.wait()
            except TimeoutError:
                pass

    async def _flush(self) -> None:
        text, self._buffer = self._buffer, ""
        limit = self._options.message_limit
        while text and self._streaming and not self._cancelled:
            if (
                self._segment
                and self._stream_id is not None
                and time.monotonic() - self._stream_started > self._options.stream_budget
            ):
                await self._finish_segment()  # before Teams' two-minute limit: a new stream
                continue
            room = limit - utf16_len(self._segment)
            if utf16_len(text) <= room:
                self._segment, text = self._segment + text, ""
                break
            head, text = cut_for_limit(self._segment, text, room, measure=utf16_len)
            self._segment += head
            await self._finish_segment()
        if not self._streaming:
            # Streaming turned out not to be available here: the answer goes out on close.
            self._buffer, self._segment = self._segment + text + self._buffer, ""
            return
        if self._segment and not self._cancelled:
            await self._send_update()

    async def _send_update(self) -> None:
        shown = to_teams_markdown(self._segment, complete=False)
        if not shown.strip() or shown == self._shown:
            return
        activity = Activity(
            type="typing",
            text=shown,
            entities=[
                StreamInfo(
                    stream_type="streaming",
                    stream_id=self._stream_id,
                    stream_sequence=self._next_sequence(),
                )
            ],
        )
        if await self._stream_send(activity):
            self._shown = shown
        elif not self._streaming:
            # Streaming is not available after all: the answer goes out as messages.
            self._buffer, self._segment = self._segment + self._buffer, ""
            self._stream_id, self._sequence, self._shown = None, 0, ""

    async def _finish_segment(self) -> None:
        """End the current streamed message with its whole text."""
        segment, stream_id = self._segment, self._stream_id
        self._segment, self._stream_id, self._sequence, self._shown = "", None, 0, ""
        if self._cancelled or not segment.strip():
            return
        text = to_teams_markdown(segment)
        if stream_id is None:
            await self._post(text)  # nothing was streamed yet: a plain message
            return
        final = _message(text)
        final.entities = [StreamInfo(stream_type="final", stream_id=stream_id)]
        await self._pace()
        try:
            await self._outbox.send(final)
        except DeliveryFailed as exc:
            await self._stream_failed(exc, stream_id, text)
            if not self._streaming:
                await self._post(text)  # the stream is broken: the whole text as a message
        finally:
            self._last_sent = time.monotonic()

    async def _stream_send(self, activity: Activity) -> bool:
        """Send one streaming activity; False when the stream could not take it."""
        if self._stream_id is None:
            await self._stop_typing()  # the stream shows its own typing indicator
        await self._pace()
        stream_id = self._stream_id
        try:
            sent = await self._outbox.send(activity)
        except DeliveryFailed as exc:
            await self._stream_failed(exc, stream_id, to_teams_markdown(self._segment))
            return False
        finally:
            self._last_sent = time.monotonic()
        if self._stream_id is None:
            self._stream_id, self._stream_started = sent, time.monotonic()
        return True

    async def _stream_failed(self, exc: DeliveryFailed, stream_id: str | None, text: str) -> None:
        """Decide what a refused streaming activity means for the rest of the answer."""
        if exc.stream_timed_out and stream_id is not None:
            # Teams closed the stream at its time limit: complete that message with its text
            # so far; what follows goes into a new message.
            log.info("Teams ended a stream at its time limit; continuing in a new message")
            self._segment, self._stream_id, self._sequence, self._shown = "", None, 0, ""
            if text.strip():
                try:
                    await self._outbox.update(_message(text, activity_id=stream_id))
                except DeliveryFailed as update_exc:
                    log.warning("could not complete a timed-out stream: %s", update_exc)
        elif exc.stream_closed:
            log.info("the user stopped the answer in Teams")
            self._cancelled = True
        elif exc.streaming_unsupported:
            log.info("streaming is not available in this Teams conversation; sending messages")
            self._streaming = False
        else:
            log.warning("streaming to Teams failed (%s); sending the answer as messages", exc)
            self._streaming = False

    def _next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    async def _pace(self) -> None:
        wait = self._last_sent + self._options.stream_interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    # -- messages ----------------------------------------------------------------

    async def _post_answer(self, text: str) -> None:
        chunks = split_message(
            to_teams_markdown(text), self._options.message_limit, measure=utf16_len
        )
        for index, chunk in enumerate(chunks):
            if index == 0 and self._status_id is not None:
                status_id, self._status_id = self._status_id, None
                try:
                    # The status message becomes the answer: one message, no flicker.
                    await self._outbox.update(_message(chunk, activity_id=status_id))
                    continue
                except DeliveryFailed as exc:
                    log.warning("could not replace the status message: %s", exc)
            await self._post(chunk)

    async def _post(self, text: str) -> None:
        try:
            await self._outbox.send(_message(text))
        except DeliveryFailed as exc:
            log.warning("could not post an answer in Teams: %s", exc)

    # -- typing indicator ----------------------------------------------------------

    async def _type(self) -> None:
        options = self._options
        try:
            async with asyncio.timeout(options.typing_delay):
                await self._typing_stop.wait()
                return
        except TimeoutError:
            pass
        while not self._typing_stop.is_set():
            try:
                await self._outbox.send(Activity(type="typing"), retry=False)
            except DeliveryFailed as exc:
                log.debug("typing indicator not sent: %s", exc)
                if exc.status in (401, 403, 404):
                    return
            try:
                async with asyncio.timeout(options.typing_interval):
                    await self._typing_stop.wait()
            except TimeoutError:
                pass

    async def _stop_typing(self) -> None:
        self._typing_stop.set()
        if self._typing is not None:
            await self._typing


def _message(text: str, *, activity_id: str | None = None) -> Activity:
    return Activity(type="message", text=text, text_format="markdown", id=activity_id)
