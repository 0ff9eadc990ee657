"""A model's answer to one question, step by step (DESIGN.md, "Flow of one message"):
admit -> hold the conversation (lock + history) -> retrieve -> build the prompt -> redact
(premium) -> generate -> cite -> remember -> the usage record. ``bot.assistant`` decides
what a message is (a command, a question) and reports how it ended."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime

from bot import replies
from bot.admission import Admission
from bot.citations import MarkerFilter, cite, cited_documents
from bot.conversation import ConversationKey, IncomingMessage, ReplySink
from bot.errors import ReplyCancelled, StateUnavailable
from bot.generation import Generation, generate
from bot.memory import HeldConversation
from bot.outcome import Outcome
from bot.premium import Premium, PremiumAccount
from bot.prompt import build_prompt, prompt_budget
from bot.ratelimit import RateCharge, RateLimited
from bot.redact import describe_kinds, redact, redact_turns
from bot.replies import ProviderNames
from bot.retrieval import NOT_CONFIGURED, Retrieved, Retriever, knowledge_found
from bot.state import ConversationState
from bot.usage import UsageRecord, usage_record
from inference.base import ChatModel, Turn

log = logging.getLogger("bot.assistant")  # the core's log lines, where operators look


@dataclass(frozen=True, slots=True)
class Route:
    """Where a question is answered: the local model, or the premium one."""

    name: str  # "local" or "premium"
    model: ChatModel
    premium: Premium | None = None
    account: PremiumAccount | None = None


class Answerer:
    """Answers questions with a model, through every step, for the assistant."""

    def __init__(
        self,
        *,
        state: ConversationState,
        admission: Admission,
        retriever: Retriever | None,
        system_prompt: str,
        names: ProviderNames,
        local_model: str,
        record_questions: bool,
        now: Callable[[], datetime],
    ) -> None:
        self._state = state
        self._admission = admission
        self._retriever = retriever
        self._system_prompt = system_prompt
        self._names = names
        self._local_model = local_model
        self._record_questions = record_questions
        self._now = now
        # Conversations already told that memory is down (until it is back).
        self._told_memory_down: set[str] = set()

    async def answer(
        self, message: IncomingMessage, question: str, route: Route, sink: ReplySink
    ) -> UsageRecord:
        """A model's answer to ``question``, step by step."""
        admitted = await self._admission.admit(message, question, premium=route.account)
        question = admitted.question
        answer_id = uuid.uuid4().hex  # names the answer to feedback and in the ledger
        async with self._hold(message, admitted.charge) as held:
            held.down |= admitted.limits_down
            retrieved = await self._retrieve(message.key, question, held.history)
            prompt = build_prompt(
                system_prompt=_with_instructions(self._system_prompt, message.instructions),
                history=held.history,
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
                local_model=self._local_model,
                names=self._names,
                now=self._now,
                # Without passages a bracketed number is the model's own text, left alone.
                text_filter=markers if prompt.passages else None,
            )
            found = knowledge_found(retrieved, len(prompt.passages))
            if generation.outcome is Outcome.OK:
                await cite(
                    sink,
                    passages=prompt.passages,
                    cited=markers.cited,
                    found=found,
                    premium_model=route.model.name if route.premium is not None else None,
                    answer_id=answer_id,
                )
            if not await self._remember(held, question, generation):
                held.down = True
        await self._note_memory_down(message.key, held.down, generation, sink)
        record = usage_record(
            message,
            route=route.name,
            model=route.model.name,
            price=route.premium.price if route.premium is not None else None,
            generation=generation,
            retrieved=retrieved,
            passages=len(prompt.passages),
            answer_id=answer_id,
            done=self._now(),
        )
        return replace(
            record,
            knowledge=found,
            cited=cited_documents(prompt.passages, markers.cited)
            if generation.outcome is Outcome.OK
            else (),
            question=redact(question).text if self._record_questions else None,
        )

    @asynccontextmanager
    async def _hold(
        self, message: IncomingMessage, charge: RateCharge | None
    ) -> AsyncIterator[HeldConversation]:
        """Hold the conversation (taken before history is read) and read its history, the
        question's rate limit ``charge`` counted in the same step; with Redis down, answer
        without memory (or limits)."""
        key = message.key
        held = HeldConversation()
        if message.transcript is not None:  # the client keeps the conversation
            held.history = list(message.transcript)
            yield held
            return
        async with AsyncExitStack() as stack:
            try:
                in_memory = await stack.enter_async_context(
                    self._state.memory.hold(key, charge=charge)
                )
                held.history, held.remember = in_memory.history, in_memory.remember
            except StateUnavailable:
                held.down = True
            except RateLimited as exc:
                raise self._admission.refusal(exc.decision, message) from None
            yield held

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

    async def _remember(
        self, held: HeldConversation, question: str, generation: Generation
    ) -> bool:
        """Append the question and the answer (with its markers, not the passages) to
        memory; a stopped answer is remembered as far as it went. False: memory is down."""
        outcome = generation.outcome
        if not (
            outcome is Outcome.OK or (outcome is Outcome.CANCELLED and generation.text.strip())
        ):
            return True
        try:
            await held.remember([Turn("user", question), Turn("assistant", generation.text)])
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


def _with_instructions(system_prompt: str, instructions: str) -> str:
    """The bot's system prompt, then a client's own instructions (they never replace it)."""
    return f"{system_prompt}\n\n{instructions}" if instructions.strip() else system_prompt
