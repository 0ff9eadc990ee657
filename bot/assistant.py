"""The core: one inbound message in, one reply out, whatever happens in between."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime

from bot import replies
from bot.budget import (
    FREE,
    NO_BUDGETS,
    Budgets,
    Price,
    Spend,
    format_usd,
    month_start,
    next_month_start,
    over_budget,
)
from bot.commands import HELP_TEXT, parse_command
from bot.conversation import ConversationKey, IncomingMessage, ReplySink
from bot.database import DatabaseError
from bot.errors import ReplyCancelled, StateUnavailable, UserFacingError
from bot.ledger import Ledger, UsageRecord
from bot.prompt import build_prompt, prompt_budget
from bot.ratelimit import RateDecision, RateLimiter, describe_wait
from bot.redact import describe_kinds, redact
from bot.state import ConversationState
from bot.telemetry import EventName, NullTelemetry, Telemetry, request_scope
from bot.usage_writer import UsageWriter
from inference.base import (
    ChatModel,
    GenerationFailed,
    ModelNotFound,
    ModelUnavailable,
    Overloaded,
    ProviderAuthFailed,
    Queued,
    StreamEvent,
    TextDelta,
    Turn,
    Usage,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Premium:
    """The premium route: a model, who may use it (``None`` users = everyone), what its
    tokens cost and the monthly budgets checked before each call."""

    model: ChatModel
    allowed_users: Collection[str] | None
    price: Price = FREE
    budgets: Budgets = NO_BUDGETS

    def allows(self, user: str) -> bool:
        """Whether ``user`` is on the allowlist."""
        return self.allowed_users is None or user in self.allowed_users


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
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._state = state
        self._local = local_model
        self._premium = premium
        self._premium_name = premium_model_name
        self._ledger = ledger
        self._system_prompt = system_prompt
        self._max_input = max_input_chars
        self._rate_limiter = rate_limiter
        # Conversations already told that memory is down (until it is back).
        self._told_memory_down: set[str] = set()
        self._usage = usage_writer
        self._telemetry: Telemetry = telemetry or NullTelemetry()
        self._now = now

    async def is_engaged(self, key: ConversationKey) -> bool:
        """Whether replies in this thread reach the bot without a mention."""
        try:
            return await self._state.is_engaged(key)
        except StateUnavailable:
            log.warning("state store unavailable; treating thread as not engaged")
            return False

    async def engage(self, key: ConversationKey) -> None:
        """Make the bot own a thread it started or was mentioned at the top of."""
        try:
            await self._state.engage(key)
        except StateUnavailable:
            log.warning("state store unavailable; thread not marked engaged")

    async def handle(
        self, message: IncomingMessage, sink: ReplySink, *, dedupe: bool = True
    ) -> None:
        """Answer ``message`` exactly once (across replicas); always writes something.

        ``dedupe=False`` when the caller already made sure (the work queue dedupes on
        submission, and a replica taking over abandoned work must answer it).
        Every log line written meanwhile carries one request id (``bot.telemetry``).
        """
        with request_scope():
            await self._handle(message, sink, dedupe)

    async def _handle(self, message: IncomingMessage, sink: ReplySink, dedupe: bool) -> None:
        platform = message.key.platform
        try:
            if dedupe and not await self._state.claim(platform, message.message_id):
                log.debug("duplicate message %s ignored", message.message_id)
                self._telemetry.event("dedupe_hit", platform)
                return
        except StateUnavailable:
            log.warning("state store unavailable; answering without dedupe")
        record: UsageRecord | None = None
        outcome: EventName = "command"
        try:
            record = await self._respond(message, sink)
        except UserFacingError as exc:
            outcome = "refused"
            await _try(sink.write(exc.text))
        except StateUnavailable:
            outcome = "store_unavailable"
            log.warning("state store unavailable while answering")
            await _try(sink.write(replies.STORE_UNAVAILABLE))
        except Exception:
            outcome = "error"
            log.exception("unexpected error while answering")
            await _try(sink.write(replies.INTERNAL_ERROR))
        finally:
            await _try(sink.close())
        _log_handled(message, record, outcome)
        if record is None:
            self._telemetry.event(outcome, platform)
        else:
            self._telemetry.usage(record)
        if record is not None and self._usage is not None:
            self._usage.add(record)
        elif record is not None and self._ledger is not None:
            try:
                await self._ledger.record(record)
            except DatabaseError:
                log.warning("usage ledger unavailable; request not recorded", exc_info=True)

    async def _respond(self, message: IncomingMessage, sink: ReplySink) -> UsageRecord | None:
        command = parse_command(message.text)
        if command is None:
            return await self._chat(message, message.text, self._local, "local", sink)
        if command.name == "ask":
            return await self._chat(message, command.argument, self._local, "local", sink)
        if command.name == "help":
            await sink.write(
                HELP_TEXT.format(local_model=self._local.name, premium_model=self._premium_name)
            )
        elif command.name == "reset":
            await self._state.forget(message.key)
            await sink.write(replies.RESET_DONE)
        elif command.name == "model":
            await sink.write(await self._model_info(message))
        elif command.name == "premium":
            premium = self._premium
            if premium is None:
                raise UserFacingError(replies.PREMIUM_OFF.format(local_model=self._local.name))
            if not premium.allows(message.sender):
                raise UserFacingError(
                    replies.PREMIUM_NOT_ALLOWED.format(local_model=self._local.name)
                )
            return await self._chat(
                message, command.argument, premium.model, "premium", sink, premium=premium
            )
        else:
            await sink.write(replies.UNKNOWN_COMMAND.format(word=command.word))
        return None

    async def _chat(
        self,
        message: IncomingMessage,
        question: str,
        model: ChatModel,
        route: str,
        sink: ReplySink,
        *,
        premium: Premium | None = None,
    ) -> UsageRecord:
        question = question.strip()
        if not question:
            raise UserFacingError(replies.EMPTY_QUESTION)
        if len(question) > self._max_input:
            raise UserFacingError(
                replies.TOO_LONG.format(length=len(question), limit=self._max_input)
            )
        key = message.key
        if premium is not None:
            await self._check_budget(message, premium)
        memory_down = False  # Redis unreachable: answer anyway, without memory or limits
        if self._rate_limiter is not None:
            try:
                decision = await self._rate_limiter.acquire(
                    f"{key.platform}:{key.workspace}:{message.sender}"
                )
            except StateUnavailable:
                memory_down, decision = True, RateDecision(True)
            if not decision.allowed:
                self._telemetry.event("rate_limited", key.platform)
                at, wait = describe_wait(decision, self._now().timestamp())
                raise UserFacingError(
                    replies.RATE_LIMITED.format(
                        limit=decision.limit, window=decision.window, at=at, wait=wait
                    )
                )
        parts: list[str] = []
        usage = Usage(0, 0)
        first_token_at: datetime | None = None
        outcome = "ok"
        async with AsyncExitStack() as held:
            try:
                await held.enter_async_context(self._state.lock(key))
                history = await self._state.history(key)
            except StateUnavailable:
                memory_down, history = True, []
            turns = build_prompt(
                system_prompt=self._system_prompt,
                history=history,
                question=question,
                budget_tokens=prompt_budget(model.context_tokens),
            )
            if premium is not None:
                # Text leaves the company here: secrets are replaced in what is sent (only
                # the turns that fit the prompt are scanned); memory keeps the original and
                # the local model sees it unchanged.
                turns, kinds = _redact_for_premium(turns)
                if kinds:
                    log.info("redacted %s before a premium call", ", ".join(kinds))
                    await sink.write(replies.PREMIUM_REDACTED.format(kinds=describe_kinds(kinds)))
            stream = model.stream(turns)
            try:
                async for event in stream:
                    if isinstance(event, TextDelta):
                        if first_token_at is None:
                            first_token_at = self._now()
                        parts.append(event.text)
                        await sink.write(event.text)
                    elif isinstance(event, Queued):
                        await sink.status(replies.QUEUED.format(position=event.position))
                    else:
                        usage = event
            except ReplyCancelled:
                # The person stopped the answer: closing the stream (below) ends generation.
                outcome = "cancelled"
            except ProviderAuthFailed:
                outcome = "auth_failed"
                log.error("%s refused the API key: check OPENAI_API_KEY", model.name)
                await sink.write(replies.PREMIUM_AUTH_FAILED.format(local_model=self._local.name))
            except ModelNotFound:
                outcome = "model_not_found"
                not_found = replies.PREMIUM_MODEL_NOT_FOUND if premium else replies.MODEL_NOT_FOUND
                await sink.write(not_found.format(model=model.name))
            except Overloaded:
                outcome = "overloaded"
                await sink.write(replies.OVERLOADED)
            except ModelUnavailable:
                outcome = "model_unavailable"
                await sink.write(
                    replies.PREMIUM_UNAVAILABLE.format(local_model=self._local.name)
                    if premium is not None
                    else replies.MODEL_UNAVAILABLE
                )
            except GenerationFailed:
                outcome = "generation_failed"
                await sink.write(
                    "\n\n" + replies.INCOMPLETE if parts else replies.MODEL_UNAVAILABLE
                )
            finally:
                await _close(stream)
            answer = "".join(parts)
            if outcome == "ok" and not answer.strip():
                outcome = "empty_answer"
                await sink.write(replies.EMPTY_ANSWER)
            if outcome == "ok" and route == "premium":
                await sink.write(replies.PREMIUM_SIGNATURE.format(model=model.name))
            # A stopped answer is remembered as far as it went: that is what was shown.
            if outcome == "ok" or (outcome == "cancelled" and answer.strip()):
                try:
                    await self._state.append(
                        key, [Turn("user", question), Turn("assistant", answer)]
                    )
                except StateUnavailable:
                    memory_down = True
        if memory_down and outcome != "cancelled":
            log.warning("conversation memory unavailable; answered without it")
            if key.as_id() not in self._told_memory_down:
                self._told_memory_down.add(key.as_id())
                await sink.write("\n\n" + replies.MEMORY_DOWN)
        else:
            self._told_memory_down.clear()
        done = self._now()
        return UsageRecord(
            platform=key.platform,
            workspace=key.workspace,
            user=message.sender,
            conversation=key.as_id(),
            route=route,
            model=model.name,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            latency_ms=_ms(message.received_at, done),
            first_token_ms=_ms(message.received_at, first_token_at) if first_token_at else None,
            outcome=outcome,
            created_at=done,
            cost_usd=premium.price.cost(usage) if premium is not None else 0.0,
        )

    async def _spend(self, message: IncomingMessage) -> Spend:
        """This month's premium spend of the sender and of their workspace."""
        if self._ledger is None:
            raise DatabaseError("no usage ledger configured")
        return await self._ledger.spend_since(
            user=message.sender,
            workspace=message.key.workspace,
            since=month_start(self._now()),
        )

    async def _check_budget(self, message: IncomingMessage, premium: Premium) -> None:
        """Refuse a premium call over budget, or when the budget cannot be checked."""
        budgets = premium.budgets
        if not budgets.limited:
            return
        local = self._local.name
        try:
            spend = await self._spend(message)
        except DatabaseError:
            # Never spend without knowing the budget.
            log.warning("usage ledger unavailable; premium refused", exc_info=True)
            raise UserFacingError(
                replies.PREMIUM_BUDGET_UNKNOWN.format(local_model=local)
            ) from None
        exceeded = over_budget(budgets, spend)
        if exceeded is None:
            return
        if exceeded == "user":
            text, spent, budget = (
                replies.PREMIUM_OVER_USER_BUDGET,
                spend.user_usd,
                budgets.user_usd,
            )
        else:
            text, spent, budget = (
                replies.PREMIUM_OVER_WORKSPACE_BUDGET,
                spend.workspace_usd,
                budgets.workspace_usd,
            )
        reset = next_month_start(self._now())
        raise UserFacingError(
            text.format(
                spent=format_usd(spent),
                budget=format_usd(budget),
                reset=f"{reset:%B} {reset.day}",
                local_model=local,
            )
        )

    async def _model_info(self, message: IncomingMessage) -> str:
        """`/model`: the models here, and the sender's premium spend and budget this month."""
        premium = self._premium
        line = (
            f"`{self._premium_name}` (OpenAI; use `/premium <question>`)"
            if premium is not None
            else "not configured on this bot"
        )
        text = replies.MODEL_INFO.format(local_model=self._local.name, premium=line)
        if premium is None:
            return text
        if not premium.allows(message.sender):
            return f"{text}\n{replies.PREMIUM_SPEND_NOT_ALLOWED}"
        try:
            spend = await self._spend(message)
        except DatabaseError:
            log.warning("usage ledger unavailable; spend not shown", exc_info=True)
            return f"{text}\n{replies.PREMIUM_SPEND_UNKNOWN}"
        budgets = premium.budgets
        lines = [
            replies.PREMIUM_SPEND.format(
                spent=format_usd(spend.user_usd), budget=format_usd(budgets.user_usd)
            )
            if budgets.user_usd > 0
            else replies.PREMIUM_SPEND_NO_LIMIT.format(spent=format_usd(spend.user_usd))
        ]
        if budgets.workspace_usd > 0:
            lines.append(
                replies.PREMIUM_WORKSPACE_SPEND.format(
                    spent=format_usd(spend.workspace_usd),
                    budget=format_usd(budgets.workspace_usd),
                )
            )
        return "\n".join([text, *lines])


def _redact_for_premium(turns: list[Turn]) -> tuple[list[Turn], tuple[str, ...]]:
    """The turns with secrets replaced in the conversation (the operator's system prompt is
    left as configured), and the kinds that were replaced."""
    kinds: list[str] = []
    sent: list[Turn] = []
    for turn in turns:
        if turn.role == "system":
            sent.append(turn)
            continue
        redacted = redact(turn.content)
        kinds.extend(redacted.kinds)
        sent.append(Turn(turn.role, redacted.text) if redacted.changed else turn)
    return sent, tuple(dict.fromkeys(kinds))


def _log_handled(message: IncomingMessage, record: UsageRecord | None, outcome: str) -> None:
    """One INFO line per handled message: what happened, never what was said."""
    if record is None:
        log.info("handled %s message %s: %s", message.key.platform, message.message_id, outcome)
        return
    log.info(
        "answered %s message %s: route=%s model=%s outcome=%s latency_ms=%d "
        "first_token_ms=%s prompt_tokens=%d completion_tokens=%d",
        record.platform,
        message.message_id,
        record.route,
        record.model,
        record.outcome,
        record.latency_ms,
        record.first_token_ms,
        record.prompt_tokens,
        record.completion_tokens,
    )


async def _close(events: AsyncIterator[StreamEvent]) -> None:
    """Close a model stream (an async generator) so its server slot is freed at once."""
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


def _ms(start: datetime, end: datetime) -> int:
    return max(0, int((end - start).total_seconds() * 1000))


async def _try(awaitable: Awaitable[object]) -> None:
    """Await a sink call whose failure must not stop the others (it is logged)."""
    try:
        await awaitable
    except Exception:
        log.exception("reply sink failed")
