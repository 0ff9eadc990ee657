"""A vote on an answer: the value the feedback step makes and the ledger stores."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

VoteValue = Literal["up", "down"]
VOTES: tuple[VoteValue, ...] = ("up", "down")


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
