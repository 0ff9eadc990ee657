"""The core: one inbound message in, one reply out, whatever happens in between.

A question goes through named steps (DESIGN.md, "Flow of one message"): admit -> hold the
conversation (lock + history) -> retrieve -> build the prompt -> redact (premium) ->
generate -> cite -> remember -> record (the steps in ``bot.answer``). Commands (`/help`,
`/reset`, `/model`, `/search`, `/premium`, `/ask`) are answered by ``_commands``
(``bot.commands`` holds most of them).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from bot import replies
from bot.admin import AdminSignIn
from bot.admission import Admission
from bot.answer import Answerer, Route
from bot.commands import Command, CommandReplies, command_list, parse_command
from bot.conversation import ConversationKey, IncomingMessage, ReplySink
from bot.database import DatabaseError
from bot.errors import ConversationBusy, ReplyCancelled, StateUnavailable, UserFacingError
from bot.feedback import Feedback
from bot.ledger import Ledger
from bot.outages import log_outage
from bot.outcome import Outcome
from bot.premium import Premium, PremiumAccount
from bot.ratelimit import RateLimiter
from bot.replies import GENERIC_NAMES, ProviderNames
from bot.retrieval import Retriever
from bot.state import ConversationState
from bot.telemetry import NullTelemetry, Telemetry, request_scope
from bot.tokens import TokenCommand
from bot.usage import UsageRecord, log_handled
from bot.usage_writer import UsageWriter
from inference.base import ChatModel

log = logging.getLogger(__name__)


class Assistant:
    """Answers messages: commands, or a model answer streamed into the reply sink."""

    def __init__(
        self,
        *,
        state: ConversationState,
        local_model: ChatModel,
        premium: Premium | None,
        premium_model_name: str,
        ledger: Ledger | None,
        system_prompt: str,
        max_input_chars: int,
        rate_limiter: RateLimiter | None = None,
        usage_writer: UsageWriter | None = None,
        telemetry: Telemetry | None = None,
        retriever: Retriever | None = None,
        tokens: TokenCommand | None = None,
        names: ProviderNames = GENERIC_NAMES,
        terminals: frozenset[str] = frozenset(),
        admin: AdminSignIn | None = None,
        record_questions: bool = False,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``names``: how replies name the providers and their settings (the core knows
        no provider; the composition root does). ``terminals``: the platforms that are a
        terminal (help names `/quit`, not channels). ``admin``: the analytics page's
        sign-in (`/admin`), None when it is not set up. ``record_questions``: the ledger
        keeps each question's text, redacted, for the analytics page."""
        self._state = state
        self._local = Route("local", local_model)
        self._premium = (
            None
            if premium is None
            else Route(
                "premium",
                premium.model,
                premium,
                PremiumAccount(
                    premium=premium, ledger=ledger, local_model=local_model.name, names=names
                ),
            )
        )
        self._names = names
        self._ledger = ledger
        self._usage = usage_writer
        self._telemetry: Telemetry = telemetry or NullTelemetry()
        self._admission = Admission(
            max_input_chars=max_input_chars,
            rate_limiter=rate_limiter,
            telemetry=self._telemetry,
            now=now,
        )
        self._retriever = retriever
        self._answerer = Answerer(
            state=state,
            admission=self._admission,
            retriever=retriever,
            system_prompt=system_prompt,
            names=names,
            local_model=local_model.name,
            record_questions=record_questions,
            now=now,
        )
        self.feedback = Feedback(ledger=ledger, telemetry=self._telemetry, now=now)
        self._replies = CommandReplies(
            state=state,
            names=names,
            local_model=local_model.name,
            premium_model=premium_model_name if self._premium is not None else None,
            premium_account=self._premium.account if self._premium is not None else None,
            admission=self._admission,
            retriever=retriever,
            tokens=tokens,
            admin=admin,
            terminals=terminals,
            now=now,
        )
        self._commands: dict[
            str, Callable[[IncomingMessage, Command, ReplySink], Awaitable[UsageRecord | None]]
        ] = {
            "ask": self._ask,
            "premium": self._ask_premium,
            "help": self._replies.help,
            "reset": self._replies.reset,
            "model": self._replies.model_info,
            "search": self._replies.search,
            "token": self._replies.token,
            "admin": self._replies.admin_link,
        }

    @property
    def searches_knowledge(self) -> bool:
        """Whether answers draw on indexed team knowledge (and `/search` finds anything)."""
        return self._retriever is not None

    async def is_engaged(self, key: ConversationKey) -> bool:
        """Whether replies in this thread reach the bot without a mention."""
        try:
            return await self._state.engagement.is_engaged(key)
        except StateUnavailable:
            log.warning("state store unavailable; treating thread as not engaged")
            return False

    async def remembered(self, key: ConversationKey) -> int:
        """How many turns of ``key``'s conversation memory holds (0 when it cannot tell)."""
        try:
            return len(await self._state.memory.history(key))
        except StateUnavailable:
            return 0

    async def engage(self, key: ConversationKey) -> None:
        """Make the bot own a thread it started or was mentioned at the top of."""
        try:
            await self._state.engagement.engage(key)
        except StateUnavailable:
            log.warning("state store unavailable; thread not marked engaged")

    async def precheck(self, message: IncomingMessage) -> str | None:
        """Whether a question would be refused before any model is asked (empty, too long,
        premium not configured or not allowed, over budget, rate limited): the refusal's
        text, or None when it may go ahead. For an adapter that must refuse privately
        before it shows the question (Slack's slash commands). A question that passes is
        counted against the sender's rate limit now; its answer (``handle`` with the same
        message id, in this process) is not counted again."""
        command = parse_command(message.text)
        if command is not None and command.name not in ("ask", "premium"):
            return None  # commands are never refused by admission
        question = command.argument if command is not None else message.text
        try:
            route = self._route(message, premium=command is not None and command.name == "premium")
            await self._admission.admit(message, question, premium=route.account, ahead=True)
        except UserFacingError as exc:
            log.info(
                "refused %s message %s before posting it", message.key.platform, message.message_id
            )
            self._telemetry.event(Outcome.REFUSED, message.key.platform)
            return exc.text
        return None

    async def handle(self, message: IncomingMessage, sink: ReplySink) -> None:
        """Answer ``message``; always writes something. Dedupe happens where work is
        submitted (``bot.dispatch``), before this. Every log line written meanwhile
        carries one request id (``bot.telemetry``)."""
        with request_scope():
            await self._handle(message, sink, self._respond)

    async def answer(
        self, message: IncomingMessage, sink: ReplySink, *, premium: bool = False
    ) -> UsageRecord | None:
        """Answer ``message.text`` as a question, never as a command (a door whose people
        ask in their own words: the team API, MCP), with the local or the premium model.
        The same steps, refusals and records as ``handle``; the usage record, or None when
        the question was refused before a model was asked."""
        with request_scope():

            async def respond(message: IncomingMessage, sink: ReplySink) -> UsageRecord:
                route = self._route(message, premium=premium)
                return await self._answerer.answer(message, message.text, route, sink)

            return await self._handle(message, sink, respond)

    async def _handle(
        self,
        message: IncomingMessage,
        sink: ReplySink,
        respond: Callable[[IncomingMessage, ReplySink], Awaitable[UsageRecord | None]],
    ) -> UsageRecord | None:
        """The one top-level catch per message: whatever happens, the sink gets an answer
        or the reason there is none, and the outcome is logged, counted and recorded."""
        record: UsageRecord | None = None
        outcome = Outcome.COMMAND
        try:
            record = await respond(message, sink)
        except UserFacingError as exc:
            outcome = Outcome.REFUSED
            await _try(sink.fail(exc))
        except ReplyCancelled:  # the person left before the answer began (a closed stream)
            outcome = Outcome.CANCELLED
        except ConversationBusy:
            outcome = Outcome.REFUSED
            await _try(sink.fail(UserFacingError(replies.BUSY, reason="busy")))
        except StateUnavailable:
            outcome = Outcome.STORE_UNAVAILABLE
            log.warning("state store unavailable while answering")
            await _try(sink.fail(UserFacingError(replies.STORE_UNAVAILABLE, reason="unavailable")))
        except Exception:
            outcome = Outcome.ERROR
            log.exception("unexpected error while answering")
            await _try(sink.fail(UserFacingError(replies.INTERNAL_ERROR, reason="error")))
        finally:
            await _try(sink.close())
        await self._report(message, record, outcome)
        return record

    async def _report(
        self, message: IncomingMessage, record: UsageRecord | None, outcome: Outcome
    ) -> None:
        """Log, count and record (in the usage ledger) how the message ended."""
        log_handled(message, record, outcome)
        if record is None:
            self._telemetry.event(outcome, message.key.platform)
            return
        self._telemetry.usage(record)
        if self._usage is not None:
            self._usage.add(record)
        elif self._ledger is not None:
            try:
                await self._ledger.record(record)
            except DatabaseError as exc:
                log_outage(log, "usage ledger unavailable; request not recorded", exc)

    async def _respond(self, message: IncomingMessage, sink: ReplySink) -> UsageRecord | None:
        command = parse_command(message.text)
        if command is None:
            return await self._answerer.answer(message, message.text, self._local, sink)
        handler = self._commands.get(command.name)
        if handler is None:
            commands = command_list(premium=self._premium is not None)
            await sink.write(replies.UNKNOWN_COMMAND.format(word=command.word, commands=commands))
            return None
        return await handler(message, command, sink)

    # -- commands ---------------------------------------------------------------------

    async def _ask(
        self, message: IncomingMessage, command: Command, sink: ReplySink
    ) -> UsageRecord:
        return await self._answerer.answer(message, command.argument, self._local, sink)

    async def _ask_premium(
        self, message: IncomingMessage, command: Command, sink: ReplySink
    ) -> UsageRecord:
        return await self._answerer.answer(
            message, command.argument, self._route(message, premium=True), sink
        )

    def _route(self, message: IncomingMessage, *, premium: bool) -> Route:
        """The route a question takes; a premium one the sender may not use is refused."""
        if not premium:
            return self._local
        route = self._premium
        if route is None or route.premium is None:
            raise UserFacingError(
                self._names.fill(replies.PREMIUM_OFF, local_model=self._local.model.name),
                reason="forbidden",
            )
        if not route.premium.allows(message.sender):
            raise UserFacingError(
                self._names.fill(replies.PREMIUM_NOT_ALLOWED, local_model=self._local.model.name),
                reason="forbidden",
            )
        return route


async def _try(awaitable: Awaitable[object]) -> None:
    """Await a sink call whose failure must not stop the others (it is logged)."""
    try:
        await awaitable
    except Exception:
        log.exception("reply sink failed")
