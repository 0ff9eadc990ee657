"""Slack wiring: the bolt AsyncApp's listeners, and `POST /slack/events` through bolt's own
aiohttp converters behind a check of the signature before the body is parsed."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.reply.links import LinkSafeSink
from adapters.slack.commands import SLASH_COMMANDS, SlashCommand, SlashCommands, responder
from adapters.slack.events import PLATFORM, MalformedRequest, SlackInbound, check_body, to_inbound
from adapters.slack.feedback import ACTION_ID, FeedbackClick, to_feedback_click
from adapters.slack.sink import SlackReplySink, StreamingSupport
from adapters.slack.thread import ThreadReader
from bot.assistant import Assistant
from bot.dispatch import Dispatcher
from bot.errors import StateUnavailable
from bot.jobs import ReplyTo, SlackCommand, SlackEvent, Work
from bot.suggestions import suggestions
from bot.tasks import TaskTracker
from bot.votes import Vote
from bot.workqueue import Job, JobProgress

log = logging.getLogger(__name__)

MAX_CLOCK_SKEW_SECONDS = 5 * 60  # as Slack's own verifiers
# What the app listens to; the Slack app manifests (slack/manifest.*.yml) declare exactly
# these (tests/project/test_deploy.py). A `message.*` subscription is the `message` event from one
# kind of conversation: DMs, public channels, private channels, group DMs. `app_home_opened`:
# someone opened the bot's DM (its messages tab), where it offers suggested prompts.
MESSAGE_EVENTS = (
    "app_mention",
    "message.im",
    "message.channels",
    "message.groups",
    "message.mpim",
)
BOT_EVENTS = (*MESSAGE_EVENTS, "app_home_opened")
SUGGESTIONS_TITLE = "Try asking"
__all__ = ["BOT_EVENTS", "SLASH_COMMANDS", "SlackBot", "SlackHttpEndpoint"]


class _DropTokenUnused(logging.Filter):
    """bolt warns "token will be unused" when SLACK_BOT_TOKEN is in the environment and a
    client is given, which is how the bot always builds it: not news to anyone."""

    _MESSAGE = warning_client_prioritized_and_token_skipped()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != self._MESSAGE


_BOLT_LOG = logging.getLogger("slack_bolt")
_BOLT_LOG.addFilter(_DropTokenUnused())


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
        suggested_prompts: Sequence[str] | None = None,
    ) -> None:
        self.client = client
        self._assistant = assistant
        self._dispatcher = dispatcher
        self._tracker = tracker
        self._streaming = streaming or StreamingSupport()
        self._suggested = suggested_prompts
        self._reader = ThreadReader(client=client)
        self.app = AsyncApp(
            # Named: without a name bolt inspects the call stack for its caller's file name
            # (0.1 s of start-up in every process).
            name="chatbot",
            client=client,
            # The HTTP route (SlackHttpEndpoint) checks signatures before
            # anything is parsed, once; Socket Mode needs none.
            request_verification_enabled=False,
            # Queue first, then acknowledge: an acknowledged event is never lost.
            process_before_response=True,
            logger=_BOLT_LOG,
        )
        self._commands = SlashCommands(client=client, assistant=assistant, sink=self._sink)
        for event_type in dict.fromkeys(event.split(".")[0] for event in MESSAGE_EVENTS):
            self.app.event(event_type)(self._on_event)
        self.app.event("app_home_opened")(self._on_home_opened)
        for command in SLASH_COMMANDS:
            self.app.command(command)(self._on_command)
        self.app.action(ACTION_ID)(self._on_feedback)

    async def _on_event(self, body: dict[str, Any], event: dict[str, Any], context: Any) -> None:
        team = str(body.get("team_id") or context.team_id or "")
        bot_user_id = str(context.bot_user_id or "")
        inbound = to_inbound(event, team_id=team, bot_user_id=bot_user_id)
        if inbound is None:
            return
        work = SlackEvent(
            event=event,
            team_id=team,
            bot_user_id=bot_user_id,
            reply_to=ReplyTo(
                PLATFORM, channel=inbound.channel, thread=inbound.reply_thread_ts or ""
            ),
        )
        await self._submit(f"slack:{inbound.message.message_id}", work)

    async def _on_home_opened(self, event: dict[str, Any]) -> None:
        """Someone opened the bot's DM: offer the suggested prompts there (in the
        background: Slack wants its acknowledgement at once)."""
        channel = event.get("channel")
        if event.get("tab") != "messages" or not isinstance(channel, str) or not channel:
            return
        self._tracker.spawn(self._suggest(channel))

    async def _suggest(self, channel: str) -> None:
        prompts = suggestions(self._suggested, knowledge=self._assistant.searches_knowledge)
        if not prompts:
            return
        try:
            # No thread_ts: the prompts belong to the DM's messages tab (Slack's agent
            # experience ignores a call that names a thread there).
            await self.client.assistant_threads_setSuggestedPrompts(
                channel_id=channel,
                title=SUGGESTIONS_TITLE,
                prompts=[{"title": p.title, "message": p.message} for p in prompts],
            )
        except SlackApiError as exc:
            log.info("could not set suggested prompts (%s)", exc.response.get("error"))

    async def _on_feedback(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        """A click on an answer's feedback buttons: recorded, and acknowledged to the
        voter alone (in the background: Slack wants its acknowledgement at once)."""
        await ack()
        click = to_feedback_click(body, action)
        if click is None:
            log.info("ignored a feedback click of an unknown shape")
            return
        self._tracker.spawn(self._vote(click, str(body.get("response_url") or "")))

    async def _vote(self, click: FeedbackClick, response_url: str) -> None:
        vote = Vote(
            answer_id=click.answer_id,
            platform=PLATFORM,
            workspace=click.team,
            user=click.user,
            value=click.vote,
            created_at=datetime.now(UTC),
        )
        text = await self._assistant.feedback.record_vote(vote)
        try:
            await self.client.chat_postEphemeral(
                channel=click.channel, user=click.user, thread_ts=click.thread_ts, text=text
            )
        except SlackApiError as exc:
            log.info("feedback thanks not shown (%s)", exc.response.get("error"))
            await responder(response_url)(
                text=text, response_type="ephemeral", replace_original=False
            )

    async def _on_command(self, ack: Any, command: dict[str, Any], context: Any) -> None:
        work = SlackCommand(
            command=command,
            bot_user_id=str(context.bot_user_id or ""),
            reply_to=ReplyTo(
                PLATFORM,
                channel=str(command.get("channel_id") or ""),
                response_url=str(command.get("response_url") or ""),
            ),
        )
        await self._submit(f"slack:cmd:{command.get('trigger_id') or uuid.uuid4().hex}", work)
        await ack()

    async def _submit(self, dedupe_id: str, work: Work) -> None:
        try:
            await self._dispatcher.submit(dedupe_id, work)
        except StateUnavailable:
            # Redis is down: answer from this process rather than not at all.
            log.warning("work queue unavailable; answering without crash safety")
            job = Job(uuid.uuid4().hex, work)
            self._tracker.spawn(self.handle_job(job, JobProgress(None, job.id)))

    async def handle_job(self, job: Job, progress: JobProgress) -> None:
        """Answer one queued Slack event or slash command."""
        if job.reclaimed:
            # Another replica died mid-answer: remove what it showed, then answer afresh.
            await self._remove(job.posted)
            progress.posted.clear()
        work = job.work
        if isinstance(work, SlackEvent):
            inbound = to_inbound(work.event, team_id=work.team_id, bot_user_id=work.bot_user_id)
            if inbound is not None:
                await self._answer(inbound, progress, work.bot_user_id)
        elif isinstance(work, SlackCommand):
            respond = responder(str(work.command.get("response_url") or ""))
            parsed = SlashCommand.from_payload(work.command, work.bot_user_id)
            await self._commands.handle(parsed, respond, progress)

    async def tell(self, reply_to: ReplyTo, text: str) -> None:
        """Write a note of the bot's own in the asker's conversation (a job set aside):
        a slash command's asker alone, a message's asker in its thread."""
        if reply_to.response_url:
            await responder(reply_to.response_url)(
                text=text, response_type="ephemeral", replace_original=False
            )
            return
        await self.client.chat_postMessage(
            channel=reply_to.channel, thread_ts=reply_to.thread or None, text=text
        )

    async def _remove(self, posted: tuple[str, ...]) -> None:
        for item in posted:
            channel, _, ts = item.partition(":")
            try:
                await self.client.chat_delete(channel=channel, ts=ts)
            except SlackApiError as exc:
                log.warning("could not remove a partial answer: %s", exc.response.get("error"))

    def _sink(
        self, channel: str, thread_ts: str | None, team: str, user: str, progress: JobProgress
    ) -> LinkSafeSink:
        async def shown(ts: str) -> None:
            await progress.shown(f"{channel}:{ts}")

        # Native streams carry the answer's Markdown to Slack as written: its links are
        # made safe on the way (mrkdwn messages get the same from the renderer).
        return LinkSafeSink(
            SlackReplySink(
                client=self.client,
                channel=channel,
                thread_ts=thread_ts,
                team_id=team,
                user_id=user,
                streaming=self._streaming,
                on_posted=shown,
            )
        )

    async def _answer(
        self, inbound: SlackInbound, progress: JobProgress, bot_user_id: str = ""
    ) -> None:
        if inbound.kind == "thread_reply" and not await self._assistant.is_engaged(inbound.key):
            return
        if inbound.starts_thread:
            await self._assistant.engage(inbound.key)
        elif inbound.kind == "mention" and not await self._assistant.is_engaged(inbound.key):
            # Called into someone else's thread: read what was said there first.
            inbound = await self._with_thread(inbound, bot_user_id)
        sink = self._sink(
            inbound.channel,
            inbound.reply_thread_ts,
            inbound.key.workspace,
            inbound.message.sender,
            progress,
        )
        await self._assistant.handle(inbound.message, sink)

    async def _with_thread(self, inbound: SlackInbound, bot_user_id: str) -> SlackInbound:
        message = inbound.message
        root = inbound.key.thread
        mention_ts = message.message_id.rpartition(":")[2]
        context = await self._reader.read(
            channel=inbound.channel,
            root_ts=root,
            before_ts=mention_ts,
            bot_user_id=bot_user_id,
        )
        if not context:
            return inbound
        return dataclasses.replace(inbound, message=dataclasses.replace(message, context=context))


class SlackHttpEndpoint:
    """`POST /slack/events`: refuses unsigned and malformed requests before anything is
    parsed and hands the rest to bolt."""

    def __init__(self, *, app: AsyncApp, signing_secret: str | None) -> None:
        self._app = app
        self._secret = signing_secret.encode() if signing_secret else None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Signature first (401), then the body's shape (400), before anything is parsed;
        then bolt, with bolt's own converters, dispatches the request."""
        body = await request.read()  # over the server's size limit: 413
        if not self._verified(body, request.headers):
            return web.json_response({"error": "invalid signature"}, status=401)
        try:
            check_body(body, request.content_type)
        except MalformedRequest as exc:
            log.info("refused a malformed Slack request: %s", exc)
            return web.json_response({"error": f"malformed request body: {exc}"}, status=400)
        return await to_aiohttp_response(
            await self._app.async_dispatch(await to_bolt_request(request))
        )

    def _verified(self, body: bytes, headers: Any) -> bool:
        """Slack's v0 signature over the raw bytes (slack_sdk's verifier wants UTF-8 text,
        which would make a signed but malformed body look forged)."""
        timestamp = headers.get("X-Slack-Request-Timestamp", "")
        signature = headers.get("X-Slack-Signature", "")
        if self._secret is None or not timestamp.isdigit() or not signature:
            return False
        if abs(time.time() - int(timestamp)) > MAX_CLOCK_SKEW_SECONDS:
            return False  # a replayed request
        base = b"v0:" + timestamp.encode() + b":" + body
        expected = "v0=" + hmac.new(self._secret, base, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature)
