"""Slack slash commands: `/ask`, `/premium`, `/reset`, `/help`, `/admin`, answered from a
queued job.

Slash commands can't be used inside threads, so `/ask` and `/premium` post the question in
the channel and answer in its thread; `/help` and `/reset` answer privately through the
command's response_url. A question the core would refuse (empty, too long, premium not
allowed or over budget, rate limited) is refused privately the same way before anything is
posted, and no model is asked.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from adapters.slack.ephemeral import EphemeralSink
from adapters.slack.events import PLATFORM, to_question_text
from adapters.slack.render import to_mrkdwn
from bot.assistant import Assistant
from bot.conversation import ConversationKey, IncomingMessage, ReplySink
from bot.workqueue import JobProgress

log = logging.getLogger(__name__)

RESET_IN_CHANNEL = (
    "`/reset` here would not know which thread to forget (Slack slash commands can't be used "
    "inside threads). To reset a thread, write `@{bot} /reset` in it. "
    "In a DM with me, `/reset` forgets our conversation."
)
CANNOT_POST = (
    "I can't post in this conversation. Invite me with `/invite @{bot}`, "
    "or mention me in a channel I'm in."
)
USAGE = "Usage: `/{command} <your question>`"
DISPLAY_LIMIT = 3000
SLASH_COMMANDS = ("/ask", "/premium", "/reset", "/help", "/token", "/admin")

Respond = Callable[..., Awaitable[Any]]
SinkFactory = Callable[[str, str | None, str, str, JobProgress], ReplySink]


@dataclass(frozen=True, slots=True)
class SlashCommand:
    """One slash command as Slack sent it, with the bot it was sent to."""

    name: str  # without the slash, lower case
    raw_text: str
    team: str
    channel: str
    user: str
    message_id: str
    is_dm: bool
    bot_user_id: str

    @classmethod
    def from_payload(cls, command: dict[str, Any], bot_user_id: str) -> SlashCommand:
        """Read Slack's form fields (already checked to be there when the request came in)."""
        channel = str(command.get("channel_id") or "")
        return cls(
            name=str(command.get("command", "")).lstrip("/").lower(),
            raw_text=str(command.get("text") or ""),
            team=str(command.get("team_id") or ""),
            channel=channel,
            user=str(command.get("user_id") or ""),
            message_id=f"cmd:{command.get('trigger_id') or uuid.uuid4().hex}",
            is_dm=channel.startswith("D") or command.get("channel_name") == "directmessage",
            bot_user_id=bot_user_id,
        )

    @property
    def bot(self) -> str:
        """How to write the bot's name in a reply."""
        return f"<@{self.bot_user_id}>" if self.bot_user_id else "bot"

    @property
    def question(self) -> str:
        """The text a person meant, the bot's mentions removed."""
        return to_question_text(self.raw_text, self.bot_user_id)


def responder(response_url: str) -> Respond:
    """Answers through a slash command's response_url (valid 30 minutes, 5 uses)."""

    async def respond(**kwargs: Any) -> None:
        if not response_url:
            return
        response = await AsyncWebhookClient(response_url, timeout=10).send(**kwargs)
        if response.status_code >= 300:
            log.warning("response_url refused the reply (HTTP %s)", response.status_code)

    return respond


class SlashCommands:
    """Answers slash commands through the core."""

    def __init__(self, *, client: AsyncWebClient, assistant: Assistant, sink: SinkFactory) -> None:
        self._client = client
        self._assistant = assistant
        self._sink = sink

    async def handle(self, command: SlashCommand, respond: Respond, progress: JobProgress) -> None:
        """Answer one slash command."""
        if command.name in ("ask", "premium"):
            if not command.question:
                await respond(text=USAGE.format(command=command.name), response_type="ephemeral")
                return
            await self._ask(command, respond, progress)
            return
        if command.name == "reset" and not command.is_dm:
            await respond(text=RESET_IN_CHANNEL.format(bot=command.bot), response_type="ephemeral")
            return
        # /help, /token, /admin, and /reset in a DM: the core answers them as inline
        # commands, privately (/token and /admin only in the DM: is_dm says where it was used).
        rolling = ConversationKey(PLATFORM, command.team, command.channel, "")
        text = f"/{command.name} {command.question}".strip()
        message = IncomingMessage(rolling, command.message_id, command.user, text, command.is_dm)
        await self._assistant.handle(message, EphemeralSink(respond=respond))

    async def _ask(self, command: SlashCommand, respond: Respond, progress: JobProgress) -> None:
        text = f"/premium {command.question}" if command.name == "premium" else command.question
        # Admission first: a refused question is answered to the asker alone and never
        # shown in the channel. A question that passes is counted against the rate limit
        # here, and not again when it is answered below.
        unposted = ConversationKey(PLATFORM, command.team, command.channel, "")
        refusal = await self._assistant.precheck(
            IncomingMessage(unposted, command.message_id, command.user, text)
        )
        if refusal is not None:
            await respond(text=to_mrkdwn(refusal), response_type="ephemeral")
            return
        raw = command.raw_text
        shown = raw if len(raw) <= DISPLAY_LIMIT else raw[:DISPLAY_LIMIT] + "…"
        quoted = "\n".join(f">{line}" for line in shown.splitlines() or [""])
        label = " (premium)" if command.name == "premium" else ""
        try:
            posted = await self._client.chat_postMessage(
                channel=command.channel,
                text=f"<@{command.user}> asked{label}:\n{quoted}",
                unfurl_links=False,
                unfurl_media=False,
            )
        except SlackApiError as exc:
            log.warning("cannot post a slash command's question: %s", exc.response.get("error"))
            await respond(text=CANNOT_POST.format(bot=command.bot), response_type="ephemeral")
            return
        root = str(posted["ts"])
        await progress.shown(f"{command.channel}:{root}")
        key = ConversationKey(PLATFORM, command.team, command.channel, root)
        await self._assistant.engage(key)
        sink = self._sink(command.channel, root, command.team, command.user, progress)
        message = IncomingMessage(key, command.message_id, command.user, text)
        await self._assistant.handle(message, sink)
