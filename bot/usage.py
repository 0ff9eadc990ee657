"""What one request to a model cost and how it went: the value the ledger stores and the
metrics count."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.outcome import Outcome


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
    channel: str = ""  # the channel (Slack) or conversation (Teams) asked in
    knowledge: str | None = None  # what retrieval found (KnowledgeFound); None: no retrieval
    question: str | None = None  # the question, redacted; only when the admin asked for it
    cited: tuple[tuple[str, str], ...] = ()  # (title, url) of each indexed document cited

    def __post_init__(self) -> None:
        if self.created_at.tzinfo is None or self.created_at.utcoffset() is None:
            raise ValueError("UsageRecord.created_at must be timezone-aware")
