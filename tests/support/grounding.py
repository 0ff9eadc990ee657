"""The core with fixed passages in place of a knowledge index, and two passages to find."""

from __future__ import annotations

from bot.assistant import Assistant
from bot.premium import Premium
from bot.retrieval import RETRIEVE_TIMEOUT_SECONDS, Retriever
from bot.state import ConversationState, local_state
from inference.knowledge import Passage
from tests.fakes.core import FixedKnowledge, ScriptedModel

DEPLOY = Passage(
    source="/docs",
    document="runbooks/deploy.md",
    title="Deploy runbook",
    heading="Rollback",
    url="https://git.example.com/docs/blob/abc/runbooks/deploy.md",
    text="To roll back, run `deployctl rollback --to previous`. It takes two minutes.",
    score=0.9,
)
ERRORS = Passage(
    source="/docs",
    document="errors.md",
    title="Error codes",
    heading="",
    url="https://git.example.com/docs/blob/abc/errors.md",
    text="ERR_DB_042 means the connection pool is exhausted; raise POOL_SIZE.",
    score=0.7,
)


def make(
    model: ScriptedModel,
    knowledge: FixedKnowledge | None,
    premium: Premium | None = None,
    retrieve_timeout: float = RETRIEVE_TIMEOUT_SECONDS,
) -> tuple[Assistant, ConversationState]:
    state = local_state(ttl_seconds=600)
    bot = Assistant(
        state=state,
        local_model=model,
        premium=premium,
        premium_model_name="gpt-4.1",
        ledger=None,
        system_prompt="be brief",
        max_input_chars=1000,
        retriever=None
        if knowledge is None
        else Retriever(knowledge=knowledge, timeout_seconds=retrieve_timeout),
    )
    return bot, state
