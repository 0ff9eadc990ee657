"""How one reply appears in Slack: its text buffered and sent at a pace Slack allows, cut
into messages, each written by one of two writers (``adapters.slack.writers``: a native
stream, or a message updated about once a second), with the thread's status shown until it
starts (``adapters.slack.thread_status``) and its sources under the last message."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.reply.send_loop import SendLoop
from adapters.reply.text_split import cut_for_limit
from adapters.slack.call_slots import SlackCallSlots
from adapters.slack.feedback import feedback_block
from adapters.slack.render import sources_blocks, sources_text
from adapters.slack.thread_status import ThreadStatus
from adapters.slack.writers import (
    UPDATE_INTERVAL,
    Blocks,
    StreamWriter,
    UpdatedMessage,
    Where,
    Writer,
    slack_error,
)
from bot.conversation import Citation
from bot.errors import UserFacingError

log = logging.getLogger(__name__)

# Slack renders about 4,000 characters of a message well; leave room for mrkdwn escaping.
MESSAGE_LIMIT = 3500
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
    """Whether Slack's native streaming works here, and the slots for Web API calls the
    workspaces' answers share; shared by every sink of one app."""

    native: bool = True
    slots: SlackCallSlots = field(default_factory=SlackCallSlots)


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
        self._where = Where(client, channel, thread_ts, team_id, user_id)
        self._streaming = streaming
        self._limit = limit
        self._on_posted = on_posted
        self._pending = ""
        self._writer: Writer | None = None  # the message being written
        self._sources: Blocks = []  # context blocks shown under the answer
        self._sources_text = ""  # the same as text, for notifications and screen readers
        self._slots = streaming.slots
        self._counted = False  # counted among the workspace's answers streaming at once
        self._held = False  # no stream slot was free: the answer is posted whole at the end
        self._reserved: str | None = None  # the method whose slot this sink already holds
        # The stream's slot is asked for while the model starts, off the first text's path.
        self._opening: asyncio.Task[bool] | None = None
        if streaming.native and thread_ts is not None:
            self._opening = asyncio.get_running_loop().create_task(
                self._slots.slot("chat.startStream", team=team_id, max_wait=0)
            )
        self._loop = SendLoop(
            flush=self._flush,
            pending=lambda: bool(self._pending),
            finish=self._finish,
            interval=self._interval,
        )
        self._status = ThreadStatus(
            client=client,
            channel=channel,
            thread_ts=thread_ts,
            started=lambda: self._loop.started,
            posted=self._posted,
        )

    async def status(self, text: str) -> None:
        """Show a passing status (a queue position) until the answer's first text."""
        await self._status.show(text)

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
        await self._status.stop_thinking()
        try:
            await self._loop.close()
        finally:
            if self._opening is not None:  # nothing was written: the slot goes unused
                self._opening.cancel()
                self._opening = None
            if self._counted:
                self._slots.end(self._where.team_id)
                self._counted = False
        if not self._loop.started and self._sources:
            await self._post_sources_alone()
        else:  # no answer came: take the status away
            await self._status.clear()

    def _interval(self) -> float:
        """Seconds until the next call: the writer's pace, wider as more answers stream at
        once in the workspace."""
        team, writer = self._where.team_id, self._writer
        if writer is None:
            return self._slots.interval("chat.update", team=team, base=UPDATE_INTERVAL)
        return self._slots.interval(writer.method, team=team, base=writer.pace())

    async def _take_turn(self) -> bool:
        """Take a free slot for the next call now, or say the text has to wait (it is sent
        with what follows, in one call)."""
        if self._writer is None:
            if not (self._streaming.native and self._where.thread_ts is not None):
                return True  # chat.postMessage: waits for its slot, the answer needs it
            if await self._stream_slot():
                self._reserved = "chat.startStream"
                return True
            # More answers stream in this workspace than its slots for streams allow:
            # this one is posted whole when it ends (the thread shows "thinking" meanwhile).
            self._held = True
            return False
        method = self._writer.method
        if await self._slots.slot(method, team=self._where.team_id, max_wait=0):
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
        return await self._slots.slot("chat.startStream", team=self._where.team_id, max_wait=0)

    async def _slot(self, method: str) -> None:
        """Wait for a slot of ``method`` unless this sink already took one."""
        if self._reserved == method:
            self._reserved = None
            return
        if method == "chat.stopStream":
            return  # one per stream, and streams start at the pace of the same tier
        await self._slots.slot(method, team=self._where.team_id, channel=self._where.channel)

    async def _call(self, method: str, send: Callable[[], Awaitable[Any]]) -> Any:
        """One Web API call in its slot. A 429 is retried in one place only: slack_sdk's
        rate-limit handler on the client (``adapters.app.builders.build_slack_client``)
        waits the Retry-After and makes the call again; text written meanwhile waits in the
        buffer and goes in the next call."""
        await self._slot(method)
        return await send()

    async def _flush(self) -> bool:
        if not self._pending:
            return True
        if not self._counted:
            self._slots.begin(self._where.team_id)
            self._counted = True
        if not self._loop.closing and (self._held or not await self._take_turn()):
            return True
        text, self._pending = self._pending, ""
        current = self._writer.text if self._writer is not None else ""
        if not self._loop.closing and len(current) + len(text) > self._limit // 2:
            # Near the end of a message, send whole words only: the message may have to end
            # after this piece, and text already streamed cannot be taken back.
            boundary = max(text.rfind(" "), text.rfind("\n")) + 1
            if boundary:
                text, self._pending = text[:boundary], text[boundary:]
        while text:
            current = self._writer.text if self._writer is not None else ""
            room = self._limit - len(current)
            if len(text) <= room:
                await self._send(text)
                return True
            head, text = cut_for_limit(current, text, room)
            if head:
                await self._send(head)
            await self._end_message()
        return True

    async def _finish(self) -> None:
        await self._end_message(last=True)

    async def _send(self, piece: str) -> None:
        if self._writer is None:
            await self._start(piece)  # the new message holds the piece
        elif not await self._writer.add(piece, closing=self._loop.closing):
            # The stream expired or was stopped: carry on in a new, ordinary message.
            self._writer = None
            await self._start(piece, allow_native=False)

    async def _start(self, piece: str, *, allow_native: bool = True) -> None:
        """Start a message with ``piece``: a stream where it may, else an ordinary message
        (taking over the status placeholder, if one is shown)."""
        async with self._status.replaced() as placeholder:
            if (
                allow_native
                and not self._held  # posted whole, in one call
                and self._streaming.native
                and self._where.thread_ts is not None
                and await self._stream_slot()
            ):
                self._reserved = "chat.startStream"
                stream = StreamWriter(self._where, self._call)
                try:
                    await stream.start(piece)
                except SlackApiError as exc:
                    error = slack_error(exc)
                    if error in _STREAMING_REFUSED:
                        log.info("Slack refused native streaming (%s); using chat.update", error)
                        self._streaming.native = False
                    else:
                        log.warning("chat.startStream failed (%s); using chat.update", error)
                else:
                    self._writer = stream
                    await self._posted(stream.ts)
                    if placeholder is not None:
                        await self._status.delete(placeholder)
                    return
            message = UpdatedMessage(self._where, self._call)
            await message.start(piece, placeholder=placeholder)
            self._writer = message
            if placeholder is None:
                await self._posted(message.ts)

    async def _posted(self, ts: str) -> None:
        if self._on_posted is not None:
            await self._on_posted(ts)

    async def _end_message(self, *, last: bool = False) -> None:
        writer = self._writer
        if writer is None:
            return
        unshown = await writer.end(self._sources if last else [])
        self._writer = None
        if unshown:  # the stream is gone: the last text goes in a message of its own
            await self._start(unshown, allow_native=False)
            self._writer = None

    async def _post_sources_alone(self) -> None:
        """Sources of an answer that wrote no text (the status, if any, becomes them)."""
        w = self._where
        async with self._status.replaced() as placeholder:
            try:
                if placeholder is not None:
                    await w.client.chat_update(
                        channel=w.channel,
                        ts=placeholder,
                        text=self._sources_text,
                        blocks=self._sources,
                    )
                else:
                    response = await w.client.chat_postMessage(
                        channel=w.channel,
                        thread_ts=w.thread_ts,
                        text=self._sources_text,
                        blocks=self._sources,
                        unfurl_links=False,
                        unfurl_media=False,
                    )
                    await self._posted(str(response["ts"]))
            except SlackApiError as exc:
                log.warning("could not show the sources in Slack (%s)", slack_error(exc))
