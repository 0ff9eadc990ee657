"""The two ways one message of an answer is written in Slack, piece by piece: a native
stream (chat.startStream, chat.appendStream, chat.stopStream), or an ordinary message
updated in place (chat.postMessage or a placeholder taken over, then chat.update).

A writer holds one message; the reply sink (``adapters.slack.sink``) decides which way
to write, when (each call in its slot, ``adapters.slack.call_slots``), and starts a new
message when one is full.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.reply.text_split import split_message
from adapters.slack.render import to_mrkdwn

log = logging.getLogger(__name__)

UPDATE_INTERVAL = 1.0  # chat.update is rate limited (Tier 3): about once a second per message
STREAM_INTERVAL = 0.5  # the first append; later ones further apart, up to:
MAX_STREAM_INTERVAL = 2.0
SECTION_LIMIT = 3000  # characters of mrkdwn in one section block

# One Web API call, made when its slot comes: the method, and the call.
Call = Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]]
Blocks = list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Where:
    """Where an answer is written, and who asked."""

    client: AsyncWebClient
    channel: str
    thread_ts: str | None
    team_id: str
    user_id: str


def slack_error(exc: SlackApiError) -> str:
    """The error code Slack gave (for the logs)."""
    try:
        return str(exc.response.get("error", "unknown"))
    except Exception:
        return "unknown"


class StreamWriter:
    """One message written as a native stream; its last text goes with chat.stopStream."""

    method = "chat.appendStream"  # the call of each piece after the first

    def __init__(self, where: Where, call: Call) -> None:
        self._where = where
        self._call = call
        self.ts = ""
        self.text = ""  # markdown written into the message
        self.calls = 0
        self._tail = ""  # the last text, sent with chat.stopStream

    def pace(self) -> float:
        """Seconds between appends: growing as the message gets longer (fewer calls)."""
        return min(STREAM_INTERVAL * (1 + self.calls), MAX_STREAM_INTERVAL)

    async def start(self, piece: str) -> None:
        """Start the stream with ``piece`` (SlackApiError when Slack refuses it)."""
        w = self._where
        thread_ts = w.thread_ts
        assert thread_ts is not None, "a stream is written in a thread"
        response = await self._call(
            "chat.startStream",
            lambda: w.client.chat_startStream(
                channel=w.channel,
                thread_ts=thread_ts,
                recipient_team_id=w.team_id or None,
                recipient_user_id=w.user_id or None,
                markdown_text=piece,
            ),
        )
        self.ts, self.text, self.calls = str(response["ts"]), piece, 1

    async def add(self, piece: str, *, closing: bool) -> bool:
        """Append ``piece`` (held for chat.stopStream while the answer is closing: one call
        fewer); False when the stream is gone (expired or stopped) and nothing was added."""
        if closing:
            self._tail += piece
        else:
            w, ts = self._where, self.ts
            try:
                await self._call(
                    "chat.appendStream",
                    lambda: w.client.chat_appendStream(
                        channel=w.channel, ts=ts, markdown_text=piece
                    ),
                )
            except SlackApiError as exc:
                log.warning(
                    "chat.appendStream failed (%s); continuing without streaming",
                    slack_error(exc),
                )
                return False
        self.text += piece
        self.calls += 1
        return True

    async def end(self, sources: Blocks) -> str:
        """Stop the stream with the last text and ``sources`` under it: the text not
        shown ("" unless the stream was gone)."""
        w, ts = self._where, self.ts
        tail, self._tail = self._tail, ""
        extra: dict[str, Any] = {"markdown_text": tail} if tail else {}
        if sources:
            extra["blocks"] = sources
        try:
            await self._call(
                "chat.stopStream",
                lambda: w.client.chat_stopStream(channel=w.channel, ts=ts, **extra),
            )
        except SlackApiError as exc:
            log.warning("chat.stopStream failed (%s)", slack_error(exc))
            return tail
        return ""


class UpdatedMessage:
    """One ordinary message, updated with the whole text so far at each piece; sources
    are added as blocks at the end."""

    method = "chat.update"  # the call of each piece after the first

    def __init__(self, where: Where, call: Call) -> None:
        self._where = where
        self._call = call
        self.ts = ""
        self.text = ""  # markdown written into the message
        self.calls = 0

    def pace(self) -> float:
        """Seconds between updates of the message."""
        return UPDATE_INTERVAL

    async def start(self, piece: str, *, placeholder: str | None) -> None:
        """Post the message with ``piece``, or turn the ``placeholder`` message (a status)
        into it: one message, no flicker."""
        w = self._where
        if placeholder is not None:
            await self._call(
                "chat.update",
                lambda: w.client.chat_update(
                    channel=w.channel, ts=placeholder, text=to_mrkdwn(piece)
                ),
            )
            self.ts = placeholder
        else:
            response = await self._call(
                "chat.postMessage",
                lambda: w.client.chat_postMessage(
                    channel=w.channel,
                    thread_ts=w.thread_ts,
                    text=to_mrkdwn(piece),
                    unfurl_links=False,
                    unfurl_media=False,
                ),
            )
            self.ts = str(response["ts"])
        self.text, self.calls = piece, 1

    async def add(self, piece: str, *, closing: bool) -> bool:
        """Show ``piece`` after the text so far (always True: the message is there)."""
        w, ts, shown = self._where, self.ts, to_mrkdwn(self.text + piece)
        await self._call(
            "chat.update", lambda: w.client.chat_update(channel=w.channel, ts=ts, text=shown)
        )
        self.text += piece
        self.calls += 1
        return True

    async def end(self, sources: Blocks) -> str:
        """Add ``sources`` under the text: blocks replace the text on screen, so the answer
        goes in sections above them, and stays in ``text`` for notifications."""
        if not sources:
            return ""
        w = self._where
        shown = to_mrkdwn(self.text)
        sections = [
            {"type": "section", "text": {"type": "mrkdwn", "text": part}}
            for part in split_message(shown, SECTION_LIMIT)
        ]
        try:
            await w.client.chat_update(
                channel=w.channel, ts=self.ts, text=shown, blocks=sections + sources
            )
        except SlackApiError as exc:
            log.warning("could not add the sources in Slack (%s)", slack_error(exc))
        return ""


Writer = StreamWriter | UpdatedMessage
