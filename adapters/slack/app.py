"""Slack wiring: the bolt AsyncApp's listeners and the signed HTTP endpoint."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from adapters.slack.events import PLATFORM, SlackInbound, to_inbound, to_question_text
from adapters.slack.sink import EphemeralSink, SlackReplySink, StreamingSupport
from bot.assistant import Assistant
from bot.conversation import ConversationKey, IncomingMessage
from bot.dispatch import Dispatcher
from bot.errors import StateUnavailable
from bot.tasks import TaskTracker
from bot.workqueue import Job, JobProgress

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
# What the app listens to; the Slack app manifests (slack/manifest.*.yml) declare exactly
# these (tests/test_deploy.py). A `message.*` subscription is the `message` event from one
# kind of conversation: DMs, public channels, private channels, group DMs.
SLASH_COMMANDS = ("/ask", "/premium", "/reset", "/help")
BOT_EVENTS = ("app_mention", "message.im", "message.channels", "message.groups", "message.mpim")


class SlackBot:
    """Turns Slack events and slash commands into work for the core.

    A listener only queues the payload (one Redis call) and returns, so Slack gets its
    acknowledgement at once and an accepted event survives a crash of this process; the
    answer is built by whichever replica takes the job (`handle_job`).
    """

    def __init__(
        self,
        *,
        client: AsyncWebClient,
        assistant: Assistant,
        dispatcher: Dispatcher,
        tracker: TaskTracker,
        streaming: StreamingSupport | None = None,
    ) -> None:
        self.client = client
        self._assistant = assistant
        self._dispatcher = dispatcher
        self._tracker = tracker
        self._streaming = streaming or StreamingSupport()
        self.app = AsyncApp(
            client=client,
            # The HTTP endpoint verifies signatures before bolt sees a request; Socket Mode
            # needs none.
            request_verification_enabled=False,
            # Queue first, then acknowledge: an acknowledged event is never lost.
            process_before_response=True,
            logger=logging.getLogger("slack_bolt"),
        )
        for event_type in dict.fromkeys(event.split(".")[0] for event in BOT_EVENTS):
            self.app.event(event_type)(self._on_event)
        for command in SLASH_COMMANDS:
            self.app.command(command)(self._on_command)

    async def _on_event(self, body: dict[str, Any], event: dict[str, Any], context: Any) -> None:
        team = str(body.get("team_id") or context.team_id or "")
        bot_user_id = str(context.bot_user_id or "")
        inbound = to_inbound(event, team_id=team, bot_user_id=bot_user_id)
        if inbound is None:
            return
        payload = {
            "platform": PLATFORM,
            "type": "event",
            "event": event,
            "team_id": team,
            "bot_user_id": bot_user_id,
        }
        await self._submit(f"slack:{inbound.message.message_id}", payload)

    async def _on_command(self, ack: Any, command: dict[str, Any], context: Any) -> None:
        payload = {
            "platform": PLATFORM,
            "type": "command",
            "command": command,
            "bot_user_id": str(context.bot_user_id or ""),
        }
        await self._submit(f"slack:cmd:{command.get('trigger_id') or uuid.uuid4().hex}", payload)
        await ack()

    async def _submit(self, dedupe_id: str, payload: dict[str, Any]) -> None:
        try:
            await self._dispatcher.submit(dedupe_id, payload)
        except StateUnavailable:
            # Redis is down: answer from this process rather than not at all.
            log.warning("work queue unavailable; answering without crash safety")
            job = Job(uuid.uuid4().hex, payload)
            self._tracker.spawn(self.handle_job(job, JobProgress(None, job.id)))

    async def handle_job(self, job: Job, progress: JobProgress) -> None:
        """Answer one queued Slack event or slash command."""
        payload = job.payload
        if job.reclaimed:
            # Another replica died mid-answer: remove what it showed, then answer afresh.
            await self._remove(job.posted)
            progress.posted.clear()
        if payload.get("type") == "event":
            inbound = to_inbound(
                payload["event"],
                team_id=str(payload.get("team_id") or ""),
                bot_user_id=str(payload.get("bot_user_id") or ""),
            )
            if inbound is not None:
                await self._answer(inbound, progress)
        elif payload.get("type") == "command":
            command = payload["command"]
            respond = _responder(str(command.get("response_url") or ""))
            await self._command(command, str(payload.get("bot_user_id") or ""), respond, progress)

    async def _remove(self, posted: tuple[str, ...]) -> None:
        for item in posted:
            channel, _, ts = item.partition(":")
            try:
                await self.client.chat_delete(channel=channel, ts=ts)
            except SlackApiError as exc:
                log.warning("could not remove a partial answer: %s", exc.response.get("error"))

    def _sink(
        self, channel: str, thread_ts: str | None, team: str, user: str, progress: JobProgress
    ) -> SlackReplySink:
        async def shown(ts: str) -> None:
            await progress.shown(f"{channel}:{ts}")

        return SlackReplySink(
            client=self.client,
            channel=channel,
            thread_ts=thread_ts,
            team_id=team,
            user_id=user,
            streaming=self._streaming,
            on_posted=shown,
        )

    async def _answer(self, inbound: SlackInbound, progress: JobProgress) -> None:
        if inbound.kind == "thread_reply" and not await self._assistant.is_engaged(inbound.key):
            return
        if inbound.starts_thread:
            await self._assistant.engage(inbound.key)
        sink = self._sink(
            inbound.channel,
            inbound.reply_thread_ts,
            inbound.key.workspace,
            inbound.message.sender,
            progress,
        )
        await self._assistant.handle(inbound.message, sink)

    async def _command(
        self, command: dict[str, Any], bot_user_id: str, respond: Any, progress: JobProgress
    ) -> None:
        name = str(command.get("command", "")).lstrip("/").lower()
        raw_text = str(command.get("text") or "")
        team = str(command.get("team_id") or "")
        channel = str(command.get("channel_id") or "")
        user = str(command.get("user_id") or "")
        is_dm = channel.startswith("D") or command.get("channel_name") == "directmessage"
        message_id = f"cmd:{command.get('trigger_id') or uuid.uuid4().hex}"
        bot = f"<@{bot_user_id}>" if bot_user_id else "bot"
        rolling = ConversationKey(PLATFORM, team, channel, "")

        if name in ("ask", "premium"):
            question = to_question_text(raw_text, bot_user_id)
            if not question:
                await respond(text=USAGE.format(command=name), response_type="ephemeral")
                return
            await self._ask(
                name, question, raw_text, team, channel, user, message_id, respond, bot, progress
            )
            return
        if name == "reset" and not is_dm:
            await respond(text=RESET_IN_CHANNEL.format(bot=bot), response_type="ephemeral")
            return
        # /help, and /reset in a DM: the core answers them as inline commands.
        text = f"/{name} {to_question_text(raw_text, bot_user_id)}".strip()
        message = IncomingMessage(rolling, message_id, user, text, is_dm)
        await self._assistant.handle(message, EphemeralSink(respond=respond))

    async def _ask(
        self,
        name: str,
        question: str,
        raw_text: str,
        team: str,
        channel: str,
        user: str,
        message_id: str,
        respond: Any,
        bot: str,
        progress: JobProgress,
    ) -> None:
        # Slash commands can't be used in threads: post the question, answer in its thread.
        shown = raw_text if len(raw_text) <= DISPLAY_LIMIT else raw_text[:DISPLAY_LIMIT] + "…"
        quoted = "\n".join(f">{line}" for line in shown.splitlines() or [""])
        label = " (premium)" if name == "premium" else ""
        try:
            posted = await self.client.chat_postMessage(
                channel=channel, text=f"<@{user}> asked{label}:\n{quoted}"
            )
        except SlackApiError as exc:
            log.warning("cannot post a slash command's question: %s", exc.response.get("error"))
            await respond(text=CANNOT_POST.format(bot=bot), response_type="ephemeral")
            return
        root = str(posted["ts"])
        await progress.shown(f"{channel}:{root}")
        key = ConversationKey(PLATFORM, team, channel, root)
        await self._assistant.engage(key)
        text = f"/premium {question}" if name == "premium" else question
        sink = self._sink(channel, root, team, user, progress)
        await self._assistant.handle(IncomingMessage(key, message_id, user, text), sink)


def _responder(response_url: str) -> Callable[..., Awaitable[Any]]:
    """Answers through a slash command's response_url (valid 30 minutes, 5 uses)."""

    async def respond(**kwargs: Any) -> None:
        if not response_url:
            return
        response = await AsyncWebhookClient(response_url, timeout=10).send(**kwargs)
        if response.status_code >= 300:
            log.warning("response_url refused the reply (HTTP %s)", response.status_code)

    return respond


class SlackHttpEndpoint:
    """`POST /slack/events`: signature checked before anything is parsed, then bolt."""

    def __init__(self, *, app: AsyncApp, signing_secret: str | None) -> None:
        self._app = app
        self._verifier = SignatureVerifier(signing_secret) if signing_secret else None

    async def handle(self, request: web.Request) -> web.Response:
        """Verify, validate and dispatch one request from Slack."""
        body = await request.read()
        if not self._verified(body, request.headers):
            return web.json_response({"error": "invalid signature"}, status=401)
        try:
            text = body.decode("utf-8")
            _validate(text, request.content_type)
        except (UnicodeDecodeError, ValueError):
            return web.json_response({"error": "malformed request body"}, status=400)
        bolt_response = await self._app.async_dispatch(
            AsyncBoltRequest(
                body=text,
                query=request.query_string,
                headers={k.lower(): v for k, v in request.headers.items()},
            )
        )
        headers = bolt_response.first_headers_without_set_cookie()
        headers.pop("content-type", None)
        body_out = bolt_response.body or ""
        return web.Response(
            status=bolt_response.status,
            text=body_out,
            headers=headers,
            content_type="application/json" if body_out.startswith("{") else "text/plain",
        )

    def _verified(self, body: bytes, headers: Mapping[str, str]) -> bool:
        timestamp = headers.get("X-Slack-Request-Timestamp", "")
        signature = headers.get("X-Slack-Signature", "")
        if self._verifier is None or not timestamp.isdigit() or not signature:
            return False
        try:
            return self._verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
        except ValueError:
            return False


def _validate(text: str, content_type: str) -> None:
    """Raise ValueError unless the body is a JSON object or a form Slack would send."""
    if content_type == "application/json" or text.lstrip().startswith("{"):
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise ValueError("not a Slack event payload")
        return
    form = parse_qs(text, strict_parsing=True)
    if "payload" in form:
        if not isinstance(json.loads(form["payload"][0]), dict):
            raise ValueError("payload is not an object")
    elif "command" not in form:
        raise ValueError("not a Slack form payload")
