"""The core: one inbound message in, one reply out, whatever happens in between."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from bot import replies
from bot.commands import HELP_TEXT, parse_command
from bot.conversation import ConversationKey, IncomingMessage, ReplySink
from bot.database import DatabaseError
from bot.errors import StateUnavailable, UserFacingError
from bot.ledger import Ledger, UsageRecord
from bot.prompt import build_prompt, prompt_budget
from bot.ratelimit import RateLimiter, describe_wait
from bot.state import ConversationState
from inference.base import (
    ChatModel,
    GenerationFailed,
    ModelNotFound,
    ModelUnavailable,
    Overloaded,
    Queued,
    StreamEvent,
    TextDelta,
    Turn,
    Usage,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Premium:
    """The premium route: a model and who may use it (``None`` users = everyone)."""

    model: ChatModel
    allowed_users: Collection[str] | None


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

    async def handle(self, message: IncomingMessage, sink: ReplySink) -> None:
        """Answer ``message`` exactly once (across replicas); always writes something."""
        try:
            if not await self._state.claim(message.key.platform, message.message_id):
                log.debug("duplicate message %s ignored", message.message_id)
                return
        except StateUnavailable:
            log.warning("state store unavailable; answering without dedupe")
        record: UsageRecord | None = None
        try:
            record = await self._respond(message, sink)
        except UserFacingError as exc:
            await _try(sink.write(exc.text))
        except StateUnavailable:
            log.warning("state store unavailable while answering")
            await _try(sink.write(replies.STORE_UNAVAILABLE))
        except Exception:
            log.exception("unexpected error while answering")
            await _try(sink.write(replies.INTERNAL_ERROR))
        finally:
            await _try(sink.close())
        if record is not None and self._ledger is not None:
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
            premium = (
                f"`{self._premium_name}` (OpenAI; use `/premium <question>`)"
                if self._premium is not None
                else "not configured on this bot"
            )
            await sink.write(
                replies.MODEL_INFO.format(local_model=self._local.name, premium=premium)
            )
        elif command.name == "premium":
            if self._premium is None:
                raise UserFacingError(replies.PREMIUM_OFF.format(local_model=self._local.name))
            allowed = self._premium.allowed_users
            if allowed is not None and message.sender not in allowed:
                raise UserFacingError(
                    replies.PREMIUM_NOT_ALLOWED.format(local_model=self._local.name)
                )
            return await self._chat(message, command.argument, self._premium.model, "premium", sink)
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
    ) -> UsageRecord:
        question = question.strip()
        if not question:
            raise UserFacingError(replies.EMPTY_QUESTION)
        if len(question) > self._max_input:
            raise UserFacingError(
                replies.TOO_LONG.format(length=len(question), limit=self._max_input)
            )
        key = message.key
        if self._rate_limiter is not None:
            decision = await self._rate_limiter.acquire(
                f"{key.platform}:{key.workspace}:{message.sender}"
            )
            if not decision.allowed:
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
        async with self._state.lock(key):
            history = await self._state.history(key)
            turns = build_prompt(
                system_prompt=self._system_prompt,
                history=history,
                question=question,
                budget_tokens=prompt_budget(model.context_tokens),
            )
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
            except ModelNotFound:
                outcome = "model_not_found"
                await sink.write(replies.MODEL_NOT_FOUND.format(model=model.name))
            except Overloaded:
                outcome = "overloaded"
                await sink.write(replies.OVERLOADED)
            except ModelUnavailable:
                outcome = "model_unavailable"
                await sink.write(replies.MODEL_UNAVAILABLE)
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
            if outcome == "ok":
                if route == "premium":
                    await sink.write(replies.PREMIUM_SIGNATURE.format(model=model.name))
                await self._state.append(key, [Turn("user", question), Turn("assistant", answer)])
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
