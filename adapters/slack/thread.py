"""Reading a Slack thread the bot was mentioned in but does not own, so its answer can draw
on what was said (`conversations.replies`, bounded in pages, messages and characters)."""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.events import to_question_text
from inference.base import Turn

log = logging.getLogger(__name__)

PAGE_SIZE = 200  # messages per conversations.replies call (Slack allows up to 1000)
MAX_PAGES = 5  # a thread longer than this is read from its start only
MAX_MESSAGES = 40  # the newest messages before the mention are kept (and the first one)
MESSAGE_CHARS = 2000  # of one message
TOTAL_CHARS = 16_000  # of the whole thread (the prompt builder trims further, in tokens)
NAMES_CACHED = 2000


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, micros = ts.partition(".")
    try:
        return int(seconds), int(micros or 0)
    except ValueError:
        return 0, 0


class ThreadReader:
    """Reads a thread as context turns: people by name, other apps labelled as bots, this
    bot's own messages as its own. One per app (the names cache is shared)."""

    def __init__(self, *, client: AsyncWebClient) -> None:
        self._client = client
        self._names: OrderedDict[str, str] = OrderedDict()

    async def read(
        self, *, channel: str, root_ts: str, before_ts: str, bot_user_id: str
    ) -> tuple[Turn, ...]:
        """The thread's messages before ``before_ts`` (the mention), oldest first; () when
        Slack refuses (a missing scope is logged once per call, never shown)."""
        messages: dict[str, dict[str, Any]] = {}
        cursor: str | None = None
        try:
            for _ in range(MAX_PAGES):
                response = await self._client.conversations_replies(
                    channel=channel, ts=root_ts, limit=PAGE_SIZE, cursor=cursor
                )
                for message in response.get("messages") or []:
                    ts = message.get("ts") if isinstance(message, dict) else None
                    if isinstance(ts, str) and _ts_key(ts) < _ts_key(before_ts):
                        messages[ts] = message
                metadata = response.get("response_metadata") or {}
                cursor = metadata.get("next_cursor") if isinstance(metadata, dict) else None
                if not response.get("has_more") or not cursor:
                    break
        except SlackApiError as exc:
            log.warning(
                "could not read the Slack thread for context (%s)",
                exc.response.get("error", "unknown"),
            )
            return ()
        ordered = [messages[ts] for ts in sorted(messages, key=_ts_key)]
        if len(ordered) > MAX_MESSAGES:
            ordered = [ordered[0], *ordered[-(MAX_MESSAGES - 1) :]]  # the question it began with
        turns: list[Turn] = []
        used = 0
        for message in reversed(ordered):
            turn = await self._turn(message, bot_user_id)
            if turn is None:
                continue
            if used + len(turn.content) > TOTAL_CHARS:
                break
            turns.append(turn)
            used += len(turn.content)
        turns.reverse()
        return tuple(turns)

    async def _turn(self, message: dict[str, Any], bot_user_id: str) -> Turn | None:
        raw = message.get("text")
        text = to_question_text(raw if isinstance(raw, str) else "", bot_user_id)
        if not text or message.get("subtype") in ("channel_join", "channel_leave"):
            return None
        if len(text) > MESSAGE_CHARS:
            text = text[:MESSAGE_CHARS] + "…"
        user = message.get("user")
        if user == bot_user_id:
            return Turn("assistant", f"You (the assistant) wrote: {text}")
        if message.get("bot_id") or message.get("subtype") == "bot_message":
            profile = message.get("bot_profile")
            name = profile.get("name") if isinstance(profile, dict) else None
            name = name or message.get("username") or message.get("bot_id") or "a bot"
            return Turn("user", f"[bot] {name} (another app, not a person) wrote: {text}")
        name = await self._name(user) if isinstance(user, str) and user else "someone"
        return Turn("user", f"{name} wrote: {text}")

    async def _name(self, user: str) -> str:
        if user in self._names:
            self._names.move_to_end(user)
            return self._names[user]
        name = f"<@{user}>"
        try:
            info = (await self._client.users_info(user=user)).get("user") or {}
            profile = info.get("profile") or {}
            name = (
                profile.get("display_name")
                or profile.get("real_name")
                or info.get("real_name")
                or info.get("name")
                or name
            )
        except SlackApiError as exc:
            log.info("no name for a Slack user (%s)", exc.response.get("error", "unknown"))
        self._names[user] = name
        while len(self._names) > NAMES_CACHED:
            self._names.popitem(last=False)
        return name
