"""What one request to a model cost and how it went: the value the ledger stores and the
metrics count."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from bot.outcome import Outcome

if TYPE_CHECKING:
    from bot.budget import Price
    from bot.conversation import IncomingMessage
    from bot.generation import Generation
    from bot.retrieval import Retrieved

log = logging.getLogger("bot.assistant")  # the answer log line, where operators look for it


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """What one request to a model cost and how it went."""

    platform: str  # which adapter: "slack", "teams", the terminal
    workspace: str  # Slack team id / Teams tenant id
    user: str
    conversation: str  # ConversationKey.as_id()
    route: str  # "local" or "premium"
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int  # from receiving the message to the end of the answer
    first_token_ms: int | None
    outcome: Outcome | str  # an Outcome; rows written by older versions may hold others
    created_at: datetime  # timezone-aware
    cost_usd: float = 0.0  # tokens x the model's price; 0 for local models
    passages: int = 0  # indexed passages given to the model
    retrieval_ms: int | None = None  # time spent retrieving them; None without retrieval
    answer_id: str = ""  # what feedback on the answer names ("" on rows older than votes)
    via: str = ""  # the door when not the platform's chat: "api", "mcp" ("" = the chat)
    channel: str = ""  # the channel (Slack) or conversation (Teams) asked in
    knowledge: str | None = None  # what retrieval found (KnowledgeFound); None: no retrieval
    question: str | None = None  # the question, redacted; only when the admin asked for it
    cited: tuple[tuple[str, str], ...] = ()  # (title, url) of each indexed document cited

    def __post_init__(self) -> None:
        if self.created_at.tzinfo is None or self.created_at.utcoffset() is None:
            raise ValueError("UsageRecord.created_at must be timezone-aware")


def usage_record(
    message: IncomingMessage,
    *,
    route: str,
    model: str,
    price: Price | None,
    generation: Generation,
    retrieved: Retrieved,
    passages: int,
    answer_id: str,
    done: datetime,
) -> UsageRecord:
    """The record of one model answer to ``message`` (the ledger's row, the metrics' count)."""
    key = message.key
    first = generation.first_token_at
    return UsageRecord(
        platform=key.platform,
        workspace=key.workspace,
        user=message.sender,
        conversation=key.as_id(),
        route=route,
        model=model,
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
        via=message.via,
        channel=key.channel,
    )


def log_handled(message: IncomingMessage, record: UsageRecord | None, outcome: Outcome) -> None:
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
