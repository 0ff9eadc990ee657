"""Feedback on model answers: one vote (up or down) per person per answer, kept in the usage
ledger beside the answer's request row; a later vote by the same person replaces theirs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

VoteValue = Literal["up", "down"]
VOTES: tuple[VoteValue, ...] = ("up", "down")

# What the voter alone is told.
VOTE_RECORDED = {
    "up": "Thanks! Your 👍 on this answer is recorded.",
    "down": "Thanks, your 👎 on this answer is recorded; it helps us see where answers fall short.",
}
VOTE_NOT_RECORDED = (
    "Sorry, I could not record your feedback just now (the usage ledger is unavailable). "
    "Please try again in a few minutes."
)
VOTE_UNKNOWN_ANSWER = "I no longer know which answer this feedback was for; nothing was recorded."


@dataclass(frozen=True, slots=True)
class Vote:
    """One person's rating of one answer (``answer_id`` as the usage ledger holds it)."""

    answer_id: str
    platform: str
    workspace: str
    user: str
    value: VoteValue
    created_at: datetime  # timezone-aware

    def __post_init__(self) -> None:
        if self.value not in VOTES:
            raise ValueError(f"a vote is 'up' or 'down', not {self.value!r}")
        if self.created_at.tzinfo is None or self.created_at.utcoffset() is None:
            raise ValueError("Vote.created_at must be timezone-aware")
