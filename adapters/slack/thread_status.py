"""What a Slack thread shows before an answer's first text: "thinking", or the place in line.

In a thread, that is the thread's status line (assistant.threads.setStatus), which Slack
clears when the answer is posted; where Slack has no status line (a top-level message, or
a workspace that refuses it) a placeholder message the answer then takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.render import to_mrkdwn
from adapters.slack.writers import slack_error

log = logging.getLogger(__name__)

STATUS_INTERVAL = 5.0  # a queue position is updated at most this often, then
MAX_STATUS_INTERVAL = 20.0  # less and less often (a long wait spares the workspace's calls)
# An answer started by then (a command, a fast model) shows no status. Later than the place
# in line (inference.pool.QUEUE_NOTICE_AFTER, 0.5 s after entering the line): a question
# waiting for a model shows its place instead of "thinking" first, one call instead of two.
THINKING_DELAY = 0.8
THINKING = "is thinking…"
LOADING_MESSAGES = (
    "Reading your question…",
    "Thinking it through…",
    "Checking what I know…",
    "Putting an answer together…",
)
WAITING = "is waiting for a free model…"


class ThreadStatus:
    """The status of one answer until its first text (``started`` says when that is)."""

    def __init__(
        self,
        *,
        client: AsyncWebClient,
        channel: str,
        thread_ts: str | None,
        started: Callable[[], bool],
        posted: Callable[[str], Awaitable[None]],
    ) -> None:
        self._client = client
        self._channel = channel
        self._thread_ts = thread_ts
        self._started = started
        self._posted = posted
        self._placeholder: str | None = None  # a message shown until the answer starts
        self._at = 0.0
        self._interval = STATUS_INTERVAL
        self._lock = asyncio.Lock()
        # The thread's status line: "thinking" while the model has not answered, or the
        # place in line. A thread only: Slack has no status for a top-level message.
        self._line = thread_ts is not None
        self._shown = False
        self._thinking: asyncio.Task[None] | None = None
        if self._line:
            self._thinking = asyncio.get_running_loop().create_task(self._think())

    async def show(self, text: str) -> None:
        """Show a passing status (a queue position) until the answer's first text: in the
        thread's status line, else in a placeholder message the answer replaces."""
        async with self._lock:
            if self._started():
                return  # the answer is already on its way
            now = asyncio.get_running_loop().time()
            shown_before = self._placeholder is not None or self._at > 0
            if shown_before and now - self._at < self._interval:
                return  # the line moves fast when it is long: spare Slack's rate limits
            if shown_before:
                self._interval = min(self._interval * 2, MAX_STATUS_INTERVAL)
            self._at = now
            if self._line and await self._set(WAITING, [text]):
                return
            shown = to_mrkdwn(f"_{text}_")
            try:
                if self._placeholder is None:
                    response = await self._client.chat_postMessage(
                        channel=self._channel, thread_ts=self._thread_ts, text=shown
                    )
                    self._placeholder = str(response["ts"])
                    await self._posted(self._placeholder)
                else:
                    await self._client.chat_update(
                        channel=self._channel, ts=self._placeholder, text=shown
                    )
            except SlackApiError as exc:
                log.warning("could not show a status in Slack (%s)", slack_error(exc))

    @contextlib.asynccontextmanager
    async def replaced(self) -> AsyncIterator[str | None]:
        """While the answer's first message is posted: the placeholder message (its ts,
        for the answer to take over or delete) or None. The status is gone after: Slack
        clears the thread's status line when the answer posts."""
        async with self._lock:
            placeholder, self._placeholder = self._placeholder, None
            self._shown = False
            yield placeholder

    async def delete(self, placeholder: str) -> None:
        """Remove a placeholder message the answer did not take over."""
        try:
            await self._client.chat_delete(channel=self._channel, ts=placeholder)
        except SlackApiError as exc:
            log.warning("could not remove the status message (%s)", slack_error(exc))

    async def stop_thinking(self) -> None:
        """Show no "thinking" from now on (the answer is ending)."""
        if self._thinking is not None:
            self._thinking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._thinking

    async def clear(self) -> None:
        """Take the status line away (no answer came)."""
        if self._shown:
            async with self._lock:
                await self._set("")

    async def _think(self) -> None:
        """Show "thinking" in the thread if the answer has not started after a moment."""
        await asyncio.sleep(THINKING_DELAY)
        async with self._lock:
            if not (self._started() or self._shown or self._placeholder):
                await self._set(THINKING, list(LOADING_MESSAGES))

    async def _set(self, status: str, loading: list[str] | None = None) -> bool:
        """Set (or with "" clear) the thread's status line; False if Slack refused it."""
        assert self._thread_ts is not None
        try:
            await self._client.assistant_threads_setStatus(
                channel_id=self._channel,
                thread_ts=self._thread_ts,
                status=status,
                loading_messages=loading,
            )
        except SlackApiError as exc:
            log.info("no thread status in Slack (%s); using messages", slack_error(exc))
            self._line = False
            return False
        self._shown = bool(status)
        return True
