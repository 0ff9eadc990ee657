"""How one reply appears in Slack: streamed natively, or one message updated about once a second."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.reply.send_loop import SendLoop
from adapters.reply.text_split import cut_for_limit, split_message
from adapters.slack.budget import SlackBudget
from adapters.slack.feedback import feedback_block
from adapters.slack.render import sources_blocks, sources_text, to_mrkdwn
from bot.conversation import Citation
from bot.errors import UserFacingError

log = logging.getLogger(__name__)

# Slack renders about 4,000 characters of a message well; leave room for mrkdwn escaping.
MESSAGE_LIMIT = 3500
UPDATE_INTERVAL = 1.0  # chat.update is rate limited (Tier 3): about once a second per message
STREAM_INTERVAL = 0.5  # the first append; later ones further apart, up to:
MAX_STREAM_INTERVAL = 2.0
MAX_RETRY_AFTER = 60.0
STATUS_INTERVAL = 5.0  # a queue position is updated at most this often, then
MAX_STATUS_INTERVAL = 20.0  # less and less often (a long wait spares the workspace's budget)
SECTION_LIMIT = 3000  # characters of mrkdwn in one section block
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
# Errors meaning "this workspace/app cannot use chat.startStream": stop trying it.
_STREAMING_REFUSED = {
    "unknown_method",
    "not_allowed_token_type",
    "missing_scope",
    "method_deprecated",
    "feature_not_enabled",
    "not_enabled",
}


# The last words of an answer the bot stopped writing because it was restarting.
CUT_OFF = "\n\n_(cut off: the bot restarted; ask again)_"


@dataclass(slots=True)
class StreamingSupport:
    """Whether Slack's native streaming works here, and the workspaces' budget of Web API
    calls; shared by every sink of one app."""

    native: bool = True
    budget: SlackBudget = field(default_factory=SlackBudget)


class SlackReplySink:
    """Streams one reply into a channel thread or a DM, splitting long answers."""

    def __init__(
        self,
        *,
        client: AsyncWebClient,
        channel: str,
        thread_ts: str | None,
        team_id: str,
        user_id: str,
        streaming: StreamingSupport,
        limit: int = MESSAGE_LIMIT,
        on_posted: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._client = client
        self._channel = channel
        self._thread_ts = thread_ts
        self._team_id = team_id
        self._user_id = user_id
        self._streaming = streaming
        self._limit = limit
        self._on_posted = on_posted
        self._pending = ""
        self._current = ""  # markdown of the message being written
        self._ts: str | None = None
        self._native = False  # the current message is a native stream
        self._sources: list[dict[str, Any]] = []  # context blocks shown under the answer
        self._sources_text = ""  # the same as text, for notifications and screen readers
        self._budget = streaming.budget
        self._counted = False  # counted among the workspace's answers streaming at once
        self._held = False  # no stream slot was free: the answer is posted whole at the end
        self._reserved: str | None = None  # the method whose slot this sink already holds
        self._calls = 0  # calls made into the current message
        self._tail = ""  # the last text, sent with chat.stopStream
        # The stream's slot is asked for while the model starts, off the first text's path.
        self._opening: asyncio.Task[bool] | None = None
        if streaming.native and thread_ts is not None:
            self._opening = asyncio.get_running_loop().create_task(
                self._budget.slot("chat.startStream", team=team_id, max_wait=0)
            )
        self._loop = SendLoop(
            flush=self._flush,
            pending=lambda: bool(self._pending),
            finish=self._finish,
            interval=self._interval,
        )
        self._status_ts: str | None = None  # a placeholder shown until the answer starts
        self._status_at = 0.0
        self._status_interval = STATUS_INTERVAL
        self._status_lock = asyncio.Lock()
        # The thread's status line (assistant.threads.setStatus), which Slack clears when
        # the answer is posted: "thinking" while the model has not answered, or the place in
        # line. A thread only: Slack has no status for a top-level message.
        self._thread_status = thread_ts is not None
        self._status_shown = False
        self._thinking: asyncio.Task[None] | None = None
        if self._thread_status:
            self._thinking = asyncio.get_running_loop().create_task(self._think())

    async def status(self, text: str) -> None:
        """Show a passing status (a queue position) until the answer's first text: in the
        thread's status line, else in a placeholder message the answer replaces."""
        async with self._status_lock:
            if self._loop.started:
                return  # the answer is already on its way
            now = asyncio.get_running_loop().time()
            shown_before = self._status_ts is not None or self._status_at > 0
            if shown_before and now - self._status_at < self._status_interval:
                return  # the line moves fast when it is long: spare Slack's rate limits
            if shown_before:
                self._status_interval = min(self._status_interval * 2, MAX_STATUS_INTERVAL)
            self._status_at = now
            if self._thread_status and await self._set_status(WAITING, [text]):
                return
            shown = to_mrkdwn(f"_{text}_")
            try:
                if self._status_ts is None:
                    response = await self._client.chat_postMessage(
                        channel=self._channel, thread_ts=self._thread_ts, text=shown
                    )
                    self._status_ts = str(response["ts"])
                    await self._posted(self._status_ts)
                else:
                    await self._client.chat_update(
                        channel=self._channel, ts=self._status_ts, text=shown
                    )
            except SlackApiError as exc:
                log.warning("could not show a status in Slack (%s)", _err(exc))

    async def _think(self) -> None:
        """Show "thinking" in the thread if the answer has not started after a moment."""
        await asyncio.sleep(THINKING_DELAY)
        async with self._status_lock:
            if not (self._loop.started or self._status_shown or self._status_ts):
                await self._set_status(THINKING, list(LOADING_MESSAGES))

    async def _set_status(self, status: str, loading: list[str] | None = None) -> bool:
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
            log.info("no thread status in Slack (%s); using messages", _err(exc))
            self._thread_status = False
            return False
        self._status_shown = bool(status)
        return True

    async def write(self, text: str) -> None:
        """Queue text; the first piece is sent at once, the rest at a Slack-friendly pace."""
        if not text:
            return
        self._pending += text
        self._loop.poke()

    async def fail(self, error: UserFacingError) -> None:
        """No answer: the reason is shown like any other text."""
        await self.write(error.text)

    async def cite(self, citations: Sequence[Citation], *, searched: bool, answer_id: str) -> None:
        """List the sources under the answer's last message, in a context block, and the
        feedback buttons under them."""
        self._sources = [*sources_blocks(citations, searched=searched), feedback_block(answer_id)]
        self._sources_text = sources_text(citations, searched=searched)

    async def close(self) -> None:
        """Send what is left and end the stream; an answer cut short by the bot stopping
        (cancelled past the shutdown grace) ends with a note saying so."""
        task = asyncio.current_task()
        if task is not None and task.cancelling() and self._loop.started:
            self._pending += CUT_OFF
        if self._thinking is not None:
            self._thinking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._thinking
        try:
            await self._loop.close()
        finally:
            if self._opening is not None:  # nothing was written: the slot goes unused
                self._opening.cancel()
                self._opening = None
            if self._counted:
                self._budget.end(self._team_id)
                self._counted = False
        if not self._loop.started and self._sources:
            await self._post_sources_alone()
        elif self._status_shown:
            async with self._status_lock:  # no answer came: take the status away
                await self._set_status("")

    def _interval(self) -> float:
        """Seconds until the next call: growing as the message gets longer (fewer calls per
        answer), and wider as more answers stream at once in the workspace."""
        if self._native:
            base = min(STREAM_INTERVAL * (1 + self._calls), MAX_STREAM_INTERVAL)
            return self._budget.interval("chat.appendStream", team=self._team_id, base=base)
        return self._budget.interval("chat.update", team=self._team_id, base=UPDATE_INTERVAL)

    async def _take_turn(self) -> bool:
        """Take a free slot for the next call now, or say the text has to wait (it is sent
        with what follows, in one call)."""
        if self._ts is None:
            if not (self._streaming.native and self._thread_ts is not None):
                return True  # chat.postMessage: waits for its slot, the answer needs it
            if await self._stream_slot():
                self._reserved = "chat.startStream"
                return True
            # More answers stream in this workspace than its budget of streams allows:
            # this one is posted whole when it ends (the thread shows "thinking" meanwhile).
            self._held = True
            return False
        method = "chat.appendStream" if self._native else "chat.update"
        if await self._budget.slot(method, team=self._team_id, max_wait=0):
            self._reserved = method
            return True
        return False

    async def _stream_slot(self) -> bool:
        """Whether a new stream may start now (its slot taken: the one asked for when the
        answer began, else a new one)."""
        if self._reserved == "chat.startStream":
            return True
        opening, self._opening = self._opening, None
        if opening is not None:
            return await opening
        return await self._budget.slot("chat.startStream", team=self._team_id, max_wait=0)

    async def _slot(self, method: str) -> None:
        """Wait for a slot of ``method`` unless this sink already took one."""
        if self._reserved == method:
            self._reserved = None
            return
        if method == "chat.stopStream":
            return  # one per stream, and streams start at the pace of the same tier
        await self._budget.slot(method, team=self._team_id, channel=self._channel)

    async def _call(self, method: str, send: Callable[[], Awaitable[Any]]) -> Any:
        """One Web API call in its slot. A 429 is retried once place only: slack_sdk's
        rate-limit handler on the client (``adapters.wiring.build_slack_client``) waits the
        Retry-After and makes the call again; text written meanwhile waits in the buffer and
        goes in the next call."""
        await self._slot(method)
        return await send()

    async def _flush(self) -> bool:
        if not self._pending:
            return True
        if not self._counted:
            self._budget.begin(self._team_id)
            self._counted = True
        if not self._loop.closing and (self._held or not await self._take_turn()):
            return True
        text, self._pending = self._pending, ""
        if not self._loop.closing and len(self._current) + len(text) > self._limit // 2:
            # Near the end of a message, send whole words only: the message may have to end
            # after this piece, and text already streamed cannot be taken back.
            boundary = max(text.rfind(" "), text.rfind("\n")) + 1
            if boundary:
                text, self._pending = text[:boundary], text[boundary:]
        while text:
            room = self._limit - len(self._current)
            if len(text) <= room:
                await self._send(text)
                return True
            head, text = cut_for_limit(self._current, text, room)
            if head:
                await self._send(head)
            await self._end_message()
        return True

    async def _finish(self) -> None:
        await self._end_message(last=True)

    async def _send(self, piece: str) -> None:
        if self._ts is None:
            await self._start(piece)  # the new message holds the piece
            return
        if self._native and self._loop.closing:
            self._tail += piece  # the last text goes with chat.stopStream: one call fewer
        elif self._native:
            ts = self._ts
            try:
                await self._call(
                    "chat.appendStream",
                    lambda: self._client.chat_appendStream(
                        channel=self._channel, ts=ts, markdown_text=piece
                    ),
                )
            except SlackApiError as exc:
                # The stream expired or was stopped: carry on in a new, ordinary message.
                log.warning(
                    "chat.appendStream failed (%s); continuing without streaming", _err(exc)
                )
                self._ts, self._current, self._native = None, "", False
                await self._start(piece, allow_native=False)
                return
        else:
            ts, shown = self._ts, to_mrkdwn(self._current + piece)
            await self._call(
                "chat.update",
                lambda: self._client.chat_update(channel=self._channel, ts=ts, text=shown),
            )
        self._current += piece
        self._calls += 1

    async def _start(self, piece: str, *, allow_native: bool = True) -> None:
        async with self._status_lock:
            await self._start_message(piece, allow_native=allow_native)

    async def _start_message(self, piece: str, *, allow_native: bool) -> None:
        status_ts, self._status_ts = self._status_ts, None
        self._status_shown = False  # Slack clears the thread's status when the answer posts
        thread_ts = self._thread_ts
        if (
            allow_native
            and not self._held  # posted whole, in one call
            and self._streaming.native
            and thread_ts is not None
            and await self._stream_slot()
        ):
            self._reserved = "chat.startStream"
            try:
                response = await self._call(
                    "chat.startStream",
                    lambda: self._client.chat_startStream(
                        channel=self._channel,
                        thread_ts=thread_ts,
                        recipient_team_id=self._team_id or None,
                        recipient_user_id=self._user_id or None,
                        markdown_text=piece,
                    ),
                )
                self._ts, self._native, self._current = str(response["ts"]), True, piece
                self._calls = 1
                await self._posted(self._ts)
                if status_ts is not None:
                    await self._delete(status_ts)
                return
            except SlackApiError as exc:
                error = _err(exc)
                if error in _STREAMING_REFUSED:
                    log.info("Slack refused native streaming (%s); using chat.update", error)
                    self._streaming.native = False
                else:
                    log.warning("chat.startStream failed (%s); using chat.update", error)
        if status_ts is not None:
            # The placeholder becomes the answer: one message, no flicker.
            await self._call(
                "chat.update",
                lambda: self._client.chat_update(
                    channel=self._channel, ts=status_ts, text=to_mrkdwn(piece)
                ),
            )
            self._ts = status_ts
        else:
            response = await self._call(
                "chat.postMessage",
                lambda: self._client.chat_postMessage(
                    channel=self._channel,
                    thread_ts=self._thread_ts,
                    text=to_mrkdwn(piece),
                    unfurl_links=False,
                    unfurl_media=False,
                ),
            )
            self._ts = str(response["ts"])
            await self._posted(self._ts)
        self._native, self._current, self._calls = False, piece, 1

    async def _posted(self, ts: str) -> None:
        if self._on_posted is not None:
            await self._on_posted(ts)

    async def _delete(self, ts: str) -> None:
        try:
            await self._client.chat_delete(channel=self._channel, ts=ts)
        except SlackApiError as exc:
            log.warning("could not remove the status message (%s)", _err(exc))

    async def _end_message(self, *, last: bool = False) -> None:
        sources = self._sources if last else []
        tail, self._tail = self._tail, ""
        if self._ts is not None and self._native:
            ts = self._ts
            extra: dict[str, Any] = {"markdown_text": tail} if tail else {}
            if sources:
                extra["blocks"] = sources
            try:
                await self._call(
                    "chat.stopStream",
                    lambda: self._client.chat_stopStream(channel=self._channel, ts=ts, **extra),
                )
            except SlackApiError as exc:
                log.warning("chat.stopStream failed (%s)", _err(exc))
                if tail:  # the stream is gone: the last text goes in a message of its own
                    self._ts, self._native, self._current = None, False, ""
                    await self._start(tail, allow_native=False)
        elif self._ts is not None and sources:
            # Blocks replace the text on screen: the answer goes in sections above the
            # sources, and stays in ``text`` for notifications.
            shown = to_mrkdwn(self._current)
            sections = [
                {"type": "section", "text": {"type": "mrkdwn", "text": part}}
                for part in split_message(shown, SECTION_LIMIT)
            ]
            try:
                await self._client.chat_update(
                    channel=self._channel, ts=self._ts, text=shown, blocks=sections + sources
                )
            except SlackApiError as exc:
                log.warning("could not add the sources in Slack (%s)", _err(exc))
        self._ts, self._current, self._native = None, "", False

    async def _post_sources_alone(self) -> None:
        """Sources of an answer that wrote no text (the status, if any, becomes them)."""
        async with self._status_lock:
            status_ts, self._status_ts = self._status_ts, None
            self._status_shown = False  # a reply clears the thread's status
            try:
                if status_ts is not None:
                    await self._client.chat_update(
                        channel=self._channel,
                        ts=status_ts,
                        text=self._sources_text,
                        blocks=self._sources,
                    )
                else:
                    response = await self._client.chat_postMessage(
                        channel=self._channel,
                        thread_ts=self._thread_ts,
                        text=self._sources_text,
                        blocks=self._sources,
                        unfurl_links=False,
                        unfurl_media=False,
                    )
                    await self._posted(str(response["ts"]))
            except SlackApiError as exc:
                log.warning("could not show the sources in Slack (%s)", _err(exc))


def _err(exc: SlackApiError) -> str:
    try:
        return str(exc.response.get("error", "unknown"))
    except Exception:
        return "unknown"


class EphemeralSink:
    """A reply only the user sees, through a slash command's response_url."""

    def __init__(self, *, respond: Callable[..., Awaitable[Any]]) -> None:
        self._respond = respond
        self._parts: list[str] = []
        self._sources = ""

    async def status(self, text: str) -> None:
        """Nothing to show: the response is sent once, on close."""

    async def write(self, text: str) -> None:
        """Collect text; it is sent on close."""
        self._parts.append(text)

    async def fail(self, error: UserFacingError) -> None:
        """No answer: the reason is shown like any other text."""
        await self.write(error.text)

    async def cite(self, citations: Sequence[Citation], *, searched: bool, answer_id: str) -> None:
        """List the sources as lines under the answer (an ephemeral response takes no
        feedback: it is not kept in the channel)."""
        if citations:
            self._sources = sources_text(citations, searched=searched)

    async def close(self) -> None:
        """Send the collected text as an ephemeral response."""
        text = to_mrkdwn("".join(self._parts).strip())
        if self._sources:
            text = f"{text}\n\n{self._sources}" if text else self._sources
        if text:
            await self._respond(text=text, response_type="ephemeral")
