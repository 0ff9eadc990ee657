"""The core: one inbound message in, one reply out, whatever happens in between.

A question goes through named steps (DESIGN.md, "Flow of one message"):
admit -> recall (lock + history) -> retrieve -> build the prompt -> redact (premium) ->
generate -> cite -> remember -> record. Commands (`/help`, `/reset`, `/model`, `/search`,
`/premium`, `/ask`) are answered by ``_commands``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from bot import replies
from bot.admission import Admission
from bot.citations import MarkerFilter, searched, to_citations
from bot.commands import Command, command_list, help_text, parse_command
from bot.conversation import ConversationKey, IncomingMessage, ReplySink
from bot.database import DatabaseError
from bot.errors import ConversationBusy, ReplyCancelled, StateUnavailable, UserFacingError
from bot.feedback import Feedback
from bot.generation import Generation, generate
from bot.ledger import Ledger
from bot.memory import HeldConversation
from bot.outages import log_outage
from bot.outcome import Outcome
from bot.premium import Premium, PremiumAccount
from bot.prompt import Prompt, build_prompt, prompt_budget
from bot.ratelimit import RateCharge, RateLimited, RateLimiter
from bot.redact import describe_kinds, redact_turns
from bot.replies import GENERIC_NAMES, ProviderNames
from bot.retrieval import NOT_CONFIGURED, Retrieved, Retriever
from bot.search import search_reply
from bot.state import ConversationState
from bot.telemetry import NullTelemetry, Telemetry, request_scope
from bot.usage import UsageRecord
from bot.usage_writer import UsageWriter
from inference.base import ChatModel, Turn

__all__ = ["Assistant", "Premium"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Route:
    """Where a question is answered: the local model, or the premium one."""

    name: str  # "local" or "premium"
    model: ChatModel
    premium: Premium | None = None
    account: PremiumAccount | None = None


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
        names: ProviderNames = GENERIC_NAMES,
        terminals: frozenset[str] = frozenset(),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``names``: how replies name the providers and their settings (the core knows
        no provider; the composition root does). ``terminals``: the platforms that are a
        terminal (help names `/quit`, not channels)."""
        self._state = state
        self._terminals = terminals
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
        self._premium_name = premium_model_name
        self._names = names
        self._ledger = ledger
        self._system_prompt = system_prompt
        self._usage = usage_writer
        self._telemetry: Telemetry = telemetry or NullTelemetry()
        self._admission = Admission(
            max_input_chars=max_input_chars,
            rate_limiter=rate_limiter,
            telemetry=self._telemetry,
            now=now,
        )
        self._retriever = retriever
        self.feedback = Feedback(ledger=ledger, telemetry=self._telemetry, now=now)
        self._now = now
        # Conversations already told that memory is down (until it is back).
        self._told_memory_down: set[str] = set()
        self._commands: dict[
            str, Callable[[IncomingMessage, Command, ReplySink], Awaitable[UsageRecord | None]]
        ] = {
            "ask": self._ask,
            "premium": self._ask_premium,
            "help": self._help,
            "reset": self._reset,
            "model": self._model_info,
            "search": self._search,
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
            await self._handle(message, sink)

    async def _handle(self, message: IncomingMessage, sink: ReplySink) -> None:
        record: UsageRecord | None = None
        outcome = Outcome.COMMAND
        try:
            record = await self._respond(message, sink)
        except UserFacingError as exc:
            outcome = Outcome.REFUSED
            await _try(sink.write(exc.text))
        except ConversationBusy:
            outcome = Outcome.REFUSED
            await _try(sink.write(replies.BUSY))
        except StateUnavailable:
            outcome = Outcome.STORE_UNAVAILABLE
            log.warning("state store unavailable while answering")
            await _try(sink.write(replies.STORE_UNAVAILABLE))
        except Exception:
            outcome = Outcome.ERROR
            log.exception("unexpected error while answering")
            await _try(sink.write(replies.INTERNAL_ERROR))
        finally:
            await _try(sink.close())
        await self._report(message, record, outcome)

    async def _report(
        self, message: IncomingMessage, record: UsageRecord | None, outcome: Outcome
    ) -> None:
        """Log, count and record (in the usage ledger) how the message ended."""
        _log_handled(message, record, outcome)
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
            return await self._answer(message, message.text, self._local, sink)
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
        return await self._answer(message, command.argument, self._local, sink)

    async def _ask_premium(
        self, message: IncomingMessage, command: Command, sink: ReplySink
    ) -> UsageRecord:
        return await self._answer(
            message, command.argument, self._route(message, premium=True), sink
        )

    def _route(self, message: IncomingMessage, *, premium: bool) -> Route:
        """The route a question takes; a premium one the sender may not use is refused."""
        if not premium:
            return self._local
        route = self._premium
        if route is None or route.premium is None:
            raise UserFacingError(
                self._names.fill(replies.PREMIUM_OFF, local_model=self._local.model.name)
            )
        if not route.premium.allows(message.sender):
            raise UserFacingError(
                self._names.fill(replies.PREMIUM_NOT_ALLOWED, local_model=self._local.model.name)
            )
        return route

    async def _help(self, message: IncomingMessage, command: Command, sink: ReplySink) -> None:
        await sink.write(
            help_text(
                terminal=message.key.platform in self._terminals,
                local_model=self._local.model.name,
                premium_model=self._premium_name if self._premium is not None else None,
            )
        )

    async def _reset(self, message: IncomingMessage, command: Command, sink: ReplySink) -> None:
        await self._state.memory.forget(message.key)
        await sink.write(replies.RESET_DONE)

    async def _model_info(
        self, message: IncomingMessage, command: Command, sink: ReplySink
    ) -> None:
        """`/model`: the models here, and the sender's premium spend and budget this month."""
        route = self._premium
        line = (
            f"`{self._premium_name}` ({self._names.premium}; use `/premium <question>`)"
            if route is not None
            else "not configured on this bot"
        )
        lines = [
            self._names.fill(replies.MODEL_INFO, local_model=self._local.model.name, premium=line)
        ]
        if route is not None and route.account is not None:
            lines += await route.account.spend_lines(message, self._now())
        await sink.write("\n".join(lines))

    async def _search(self, message: IncomingMessage, command: Command, sink: ReplySink) -> None:
        """`/search <words>`: the best-matching indexed documents, without asking a model."""
        words = self._admission.check_text(command.argument)
        knowledge = self._retriever.knowledge if self._retriever is not None else None
        await sink.write(await search_reply(knowledge, message.key, words))

    # -- the answer path ----------------------------------------------------------------

    async def _answer(
        self, message: IncomingMessage, question: str, route: Route, sink: ReplySink
    ) -> UsageRecord:
        """A model's answer to ``question``, step by step."""
        admitted = await self._admission.admit(message, question, premium=route.account)
        question = admitted.question
        answer_id = uuid.uuid4().hex  # names the answer to feedback and in the ledger
        async with self._recall(message, admitted.charge) as recalled:
            recalled.down |= admitted.limits_down
            retrieved = await self._retrieve(message.key, question, recalled.history)
            prompt = build_prompt(
                system_prompt=self._system_prompt,
                history=recalled.history,
                question=question,
                budget_tokens=prompt_budget(route.model.context_tokens),
                passages=retrieved.passages,
                context=message.context,
            )
            turns = await self._redact(route, prompt.turns, sink)
            markers = MarkerFilter(range(1, len(prompt.passages) + 1))
            generation = await generate(
                model=route.model,
                turns=turns,
                sink=sink,
                premium=route.premium is not None,
                local_model=self._local.model.name,
                names=self._names,
                now=self._now,
                # Without passages a bracketed number is the model's own text, left alone.
                text_filter=markers if prompt.passages else None,
            )
            await self._finish(route, generation, retrieved, prompt, markers, sink, answer_id)
            if not await self._remember(recalled, question, generation):
                recalled.down = True
        await self._note_memory_down(message.key, recalled.down, generation, sink)
        return self._record(message, route, generation, retrieved, len(prompt.passages), answer_id)

    @asynccontextmanager
    async def _recall(
        self, message: IncomingMessage, charge: RateCharge | None
    ) -> AsyncIterator[HeldConversation]:
        """Hold the conversation (taken before history is read) and read its history, the
        question's rate limit ``charge`` counted in the same step; with Redis down, answer
        without memory (or limits)."""
        key = message.key
        recalled = HeldConversation()
        async with AsyncExitStack() as stack:
            try:
                held = await stack.enter_async_context(self._state.memory.hold(key, charge=charge))
                recalled.history, recalled.remember = held.history, held.remember
            except StateUnavailable:
                recalled.down = True
            except RateLimited as exc:
                raise self._admission.refusal(exc.decision, message) from None
            yield recalled

    async def _retrieve(
        self, key: ConversationKey, question: str, history: list[Turn]
    ) -> Retrieved:
        if self._retriever is None:
            return NOT_CONFIGURED
        return await self._retriever.retrieve(key, question, history)

    async def _redact(self, route: Route, turns: list[Turn], sink: ReplySink) -> list[Turn]:
        """Text leaves the company on the premium route: secrets are replaced in what is sent
        (passages included; only the turns that fit the prompt are scanned). Memory keeps the
        original and the local model sees it unchanged."""
        if route.premium is None:
            return turns
        sent, kinds = redact_turns(turns)
        if kinds:
            log.info("redacted %s before a premium call", ", ".join(kinds))
            await sink.write(
                self._names.fill(replies.PREMIUM_REDACTED, kinds=describe_kinds(kinds))
            )
        return sent

    async def _finish(
        self,
        route: Route,
        generation: Generation,
        retrieved: Retrieved,
        prompt: Prompt,
        markers: MarkerFilter,
        sink: ReplySink,
        answer_id: str,
    ) -> None:
        """After the answer's text: the knowledge note, the premium signature, the sources
        (and with them the answer's id, for feedback)."""
        if generation.outcome is not Outcome.OK:
            return
        if retrieved.unavailable:
            await sink.write("\n\n" + replies.KNOWLEDGE_UNAVAILABLE)
        elif retrieved.elapsed_ms is not None and not prompt.passages:
            await sink.write("\n\n" + replies.NO_SOURCE_MATCHED)
        if route.premium is not None:
            await sink.write(replies.PREMIUM_SIGNATURE.format(model=route.model.name))
        if markers.cited:
            cited = to_citations(prompt.passages, markers.cited)
            await sink.cite(cited, searched=False, answer_id=answer_id)
        elif prompt.passages:
            await sink.cite(searched(prompt.passages), searched=True, answer_id=answer_id)
        else:  # a model answer without sources
            await sink.cite([], searched=False, answer_id=answer_id)

    async def _remember(
        self, recalled: HeldConversation, question: str, generation: Generation
    ) -> bool:
        """Append the question and the answer (with its markers, not the passages) to
        memory; a stopped answer is remembered as far as it went. False: memory is down."""
        outcome = generation.outcome
        if not (
            outcome is Outcome.OK or (outcome is Outcome.CANCELLED and generation.text.strip())
        ):
            return True
        try:
            await recalled.remember([Turn("user", question), Turn("assistant", generation.text)])
        except StateUnavailable:
            return False
        return True

    async def _note_memory_down(
        self, key: ConversationKey, down: bool, generation: Generation, sink: ReplySink
    ) -> None:
        """Tell a conversation once that it was answered without memory."""
        if not down:
            self._told_memory_down.clear()
            return
        log.warning("conversation memory unavailable; answered without it")
        if generation.outcome is not Outcome.OK or key.as_id() in self._told_memory_down:
            return
        self._told_memory_down.add(key.as_id())
        try:
            await sink.write("\n\n" + replies.MEMORY_DOWN)
        except ReplyCancelled:
            pass

    def _record(
        self,
        message: IncomingMessage,
        route: Route,
        generation: Generation,
        retrieved: Retrieved,
        passages: int,
        answer_id: str,
    ) -> UsageRecord:
        key = message.key
        done = self._now()
        first = generation.first_token_at
        price = route.premium.price if route.premium is not None else None
        return UsageRecord(
            platform=key.platform,
            workspace=key.workspace,
            user=message.sender,
            conversation=key.as_id(),
            route=route.name,
            model=route.model.name,
            prompt_tokens=generation.usage.prompt_tokens,
            completion_tokens=generation.usage.completion_tokens,
            latency_ms=_ms(message.received_at, done),
            first_token_ms=_ms(message.received_at, first) if first else None,
            outcome=generation.outcome,
            created_at=done,
            cost_usd=price.cost(generation.usage) if price is not None else 0.0,
            passages=passages,
            retrieval_ms=retrieved.elapsed_ms,
            answer_id=answer_id,
        )


def _log_handled(message: IncomingMessage, record: UsageRecord | None, outcome: Outcome) -> None:
    """One INFO line per handled message: what happened, never what was said."""
    if record is None:
        log.info("handled %s message %s: %s", message.key.platform, message.message_id, outcome)
        return
    log.info(
        "answered %s message %s: route=%s model=%s outcome=%s latency_ms=%d "
        "first_token_ms=%s prompt_tokens=%d completion_tokens=%d passages=%d retrieval_ms=%s",
        record.platform,
        message.message_id,
        record.route,
        record.model,
        record.outcome,
        record.latency_ms,
        record.first_token_ms,
        record.prompt_tokens,
        record.completion_tokens,
        record.passages,
        record.retrieval_ms,
    )


def _ms(start: datetime, end: datetime) -> int:
    return max(0, int((end - start).total_seconds() * 1000))


async def _try(awaitable: Awaitable[object]) -> None:
    """Await a sink call whose failure must not stop the others (it is logged)."""
    try:
        await awaitable
    except Exception:
        log.exception("reply sink failed")
