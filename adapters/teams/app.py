"""Teams wiring: `POST /api/messages` through botbuilder's CloudAdapter, answered in the
background with proactive messages."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web
from botbuilder.core import TurnContext
from botbuilder.integration.aiohttp import (
    CloudAdapter,
    ConfigurationBotFrameworkAuthentication,
    ConfigurationServiceClientCredentialFactory,
)
from botbuilder.schema import Activity

from adapters.teams.auth import AsyncTokenCredentialFactory, install_signing_keys
from adapters.teams.config import TeamsCredentials
from adapters.teams.errors import CredentialsError, SigningKeysUnavailable
from adapters.teams.events import (
    PLATFORM,
    TeamsFeedback,
    TeamsInbound,
    answer_message_ref,
    to_feedback,
    to_inbound,
)
from adapters.teams.sink import Outbox, ReplyOptions, TeamsReplySink, tune_connector
from adapters.wire.jsonbody import json_object
from bot.assistant import Assistant
from bot.dispatch import Dispatcher
from bot.errors import StateUnavailable
from bot.jobs import ReplyTo, TeamsActivity
from bot.tasks import TaskTracker
from bot.workqueue import Job, JobProgress

log = logging.getLogger(__name__)

UNAUTHENTICATED_WARNING = (
    "TEAMS_ALLOW_UNAUTHENTICATED=true and no MICROSOFT_APP_ID: /api/messages accepts UNSIGNED "
    "activities and replies only to loopback service URLs. For local testing only."
)


@dataclass(frozen=True, slots=True)
class BotFrameworkConfig:
    """The configuration object botbuilder's Configuration* classes read."""

    APP_ID: str
    APP_PASSWORD: str
    APP_TYPE: str
    APP_TENANTID: str


def is_loopback(url: str | None) -> bool:
    """Whether a service URL points at this machine (127.0.0.0/8, ::1, localhost)."""
    try:
        host = urlsplit(url or "").hostname or ""
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# What a conversation reference is made of: kept with a queued job so that its asker can be
# told, whatever else the job holds.
_ADDRESS_FIELDS = ("id", "serviceUrl", "channelId", "conversation", "from", "recipient")


def _refused(reason: str, status: int = 401) -> web.Response:
    return web.json_response({"error": reason}, status=status)


class TeamsBot:
    """Authenticates Bot Framework activities and turns Teams messages into calls to the core."""

    def __init__(
        self,
        *,
        adapter: CloudAdapter,
        app_id: str,
        assistant: Assistant,
        tracker: TaskTracker,
        dispatcher: Dispatcher | None = None,
        options: ReplyOptions | None = None,
    ) -> None:
        self.adapter = adapter
        self.dispatcher = dispatcher
        self.options = options or ReplyOptions()
        self._auth = adapter.bot_framework_authentication
        self._app_id = app_id
        self._assistant = assistant
        self._tracker = tracker

    @property
    def authenticated(self) -> bool:
        """False only in the local-testing mode without an app id."""
        return bool(self._app_id)

    async def handle(self, request: web.Request) -> web.Response:
        """Authenticate, validate and acknowledge one activity; answer in the background."""
        header = request.headers.get("Authorization", "")
        if self.authenticated and not header:
            return _refused("missing bearer token")
        try:
            # The token is checked before the body is read: signature, issuer, audience
            # (this bot's app id) and expiry; the body-bound claims are checked below.
            await self._auth.authenticate_request(Activity(), header)
        except SigningKeysUnavailable:
            log.error("cannot check Teams requests: Bot Framework signing keys are unreachable")
            return _refused("signing keys unavailable", 503)
        except Exception as exc:  # botbuilder raises anything from PermissionError to IndexError
            log.info("refused a Teams request: %s", type(exc).__name__)
            return _refused("invalid bearer token")
        body = await request.read()  # over the server's size limit: 413
        try:
            data = json_object(body, "the activity")
            activity = Activity().deserialize(data)
            if not isinstance(activity.type, str) or not activity.type:
                raise ValueError("activity without a type")
        except Exception:
            return _refused("malformed activity", 400)
        try:
            # Again with the activity: its channel must be among the key's endorsements and
            # its serviceUrl must be the one the token was issued for.
            await self._auth.authenticate_request(activity, header)
        except Exception as exc:
            log.info("refused a Teams activity: %s", type(exc).__name__)
            return _refused("token does not match the activity")
        if not self.authenticated and not is_loopback(activity.service_url):
            log.warning("refused an unsigned activity whose serviceUrl is not on this machine")
            return _refused("unsigned activities may only come from loopback service URLs")
        feedback = to_feedback(activity)
        if feedback is not None:
            await self._vote(feedback)
            return web.Response(status=200)  # an invoke's answer: 200, no body
        inbound = to_inbound(activity)
        if inbound is None:
            return web.Response(status=200)
        # Queued (crash-safe, deduplicated across replicas) before Teams gets its 202.
        work = TeamsActivity(
            activity=data,
            reply_to=ReplyTo(
                PLATFORM, conversation={k: data[k] for k in _ADDRESS_FIELDS if k in data}
            ),
        )
        try:
            if self.dispatcher is None:
                raise StateUnavailable("no dispatcher")
            await self.dispatcher.submit(f"teams:{inbound.message.message_id}", work)
        except StateUnavailable:
            job = Job(inbound.message.message_id, work)
            self._tracker.spawn(self.handle_job(job, JobProgress(None, job.id)))
        return web.Response(status=202)

    async def _vote(self, feedback: TeamsFeedback) -> None:
        """Record a vote from Teams' feedback buttons (Teams thanks the voter itself)."""
        await self._assistant.feedback.record_message_vote(
            platform=PLATFORM,
            workspace=feedback.tenant,
            user=feedback.user,
            value=feedback.vote,
            message=feedback.message,
        )

    async def handle_job(self, job: Job, progress: JobProgress) -> None:
        """Answer one queued Teams activity (already authenticated when it was queued)."""
        if not isinstance(job.work, TeamsActivity):
            return
        inbound = to_inbound(Activity().deserialize(job.work.activity))
        if inbound is not None:
            await self._answer(inbound, progress, replace=job.posted if job.reclaimed else ())

    async def tell(self, reply_to: ReplyTo, text: str) -> None:
        """Write a note of the bot's own in the asker's conversation (a job set aside)."""
        activity = Activity().deserialize(reply_to.conversation)
        reference = TurnContext.get_conversation_reference(activity)

        async def turn(context: TurnContext) -> None:
            await context.send_activity(text)

        await self.adapter.continue_conversation(reference, turn, bot_app_id=self._app_id)

    async def _answer(
        self,
        inbound: TeamsInbound,
        progress: JobProgress | None = None,
        replace: tuple[str, ...] = (),
    ) -> None:
        async def turn(context: TurnContext) -> None:
            tune_connector(context.turn_state.get(self.adapter.BOT_CONNECTOR_CLIENT_KEY))
            for activity_id in replace:
                # Another replica died mid-answer: remove what it showed, answer afresh.
                try:
                    await context.delete_activity(activity_id)
                except Exception:
                    log.warning("could not remove a partial answer in Teams")
            if progress is not None:
                progress.posted.clear()
            # The continuation activity has a fresh id: reply to the message that asked.
            context.activity.id = inbound.activity_id
            sink = TeamsReplySink(
                outbox=Outbox(
                    context,
                    self.options,
                    on_posted=progress.shown if progress is not None else None,
                ),
                streaming=inbound.streams,
                options=self.options,
            )
            await sink.begin()
            try:
                # Deduplicated when queued (a replica taking over must answer).
                await self._assistant.handle(inbound.message, sink)
            finally:
                await sink.stop()
            if sink.answer_id is not None and sink.answer_messages:
                # Teams' feedback names the message voted on: remember whose answer it is.
                await self._assistant.feedback.link_answer_messages(
                    platform=PLATFORM,
                    messages=[
                        answer_message_ref(inbound.message.key, activity_id)
                        for activity_id in sink.answer_messages
                    ],
                    answer_id=sink.answer_id,
                )

        try:
            await self.adapter.continue_conversation(
                inbound.reference, turn, bot_app_id=self._app_id
            )
        except CredentialsError as exc:
            log.error("cannot answer in Teams: %s", exc)
        except Exception:
            log.exception("cannot answer in Teams")


def build_teams_bot(
    *,
    credentials: TeamsCredentials,
    allow_unauthenticated: bool,
    assistant: Assistant,
    tracker: TaskTracker,
    dispatcher: Dispatcher | None = None,
) -> TeamsBot | None:
    """The Teams adapter, or None when Teams is off (no app id and no local-testing flag)
    or misconfigured (logged); `/api/messages` then answers 401."""
    if not credentials.app_id and not allow_unauthenticated:
        return None
    problems = credentials.problems()
    for problem in problems:
        if problem.severity == "off":
            log.error("Teams is off: %s (fix: %s)", problem.what, problem.fix)
    if any(problem.severity == "off" for problem in problems):
        return None
    for problem in problems:
        log.warning("Teams: %s (fix: %s)", problem.what, problem.fix)
    if not credentials.app_id:
        log.warning(UNAUTHENTICATED_WARNING)
    config = BotFrameworkConfig(
        APP_ID=credentials.app_id,
        APP_PASSWORD=credentials.app_password or "",
        APP_TYPE=credentials.app_type,
        APP_TENANTID=credentials.tenant_id,
    )
    install_signing_keys()
    factory = AsyncTokenCredentialFactory(ConfigurationServiceClientCredentialFactory(config))
    auth = ConfigurationBotFrameworkAuthentication(config, credentials_factory=factory)
    return TeamsBot(
        adapter=CloudAdapter(auth),
        app_id=credentials.app_id,
        assistant=assistant,
        tracker=tracker,
        dispatcher=dispatcher,
    )
