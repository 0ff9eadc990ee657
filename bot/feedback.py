"""Feedback on model answers: one vote (up or down) per person per answer, kept in the usage
ledger beside the answer's request row; a later vote by the same person replaces theirs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from bot.database import DatabaseError
from bot.outages import log_outage
from bot.outcome import Event
from bot.telemetry import Telemetry

if TYPE_CHECKING:  # the ledger stores votes: it imports this module
    from bot.ledger import Ledger

log = logging.getLogger(__name__)

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


class Feedback:
    """Records votes on answers in the usage ledger and says what to tell the voter
    (privately); database trouble is logged, never shown."""

    def __init__(
        self,
        *,
        ledger: Ledger | None,
        telemetry: Telemetry,
        now: Callable[[], datetime],
    ) -> None:
        self._ledger = ledger
        self._telemetry = telemetry
        self._now = now

    async def record_vote(self, vote: Vote) -> str:
        """Record a person's vote on an answer (replacing their earlier one); what to tell
        the voter, privately. Database trouble is logged, never shown."""
        if self._ledger is None:
            return VOTE_NOT_RECORDED
        try:
            await self._ledger.record_vote(vote)
        except DatabaseError as exc:
            log_outage(log, "usage ledger unavailable; vote not recorded", exc)
            return VOTE_NOT_RECORDED
        event = Event.VOTE_UP if vote.value == "up" else Event.VOTE_DOWN
        self._telemetry.event(event, vote.platform)
        log.info(
            "recorded a %s vote from %s on answer %s", vote.value, vote.platform, vote.answer_id
        )
        return VOTE_RECORDED[vote.value]

    async def link_answer_messages(
        self, *, platform: str, messages: list[str], answer_id: str
    ) -> None:
        """Remember which posted messages show an answer, for platforms whose feedback names
        the message (Teams); a database error is logged and the link is lost."""
        if self._ledger is None or not messages:
            return
        try:
            await self._ledger.link_messages(
                platform=platform, messages=messages, answer_id=answer_id, at=self._now()
            )
        except DatabaseError:
            log.warning("usage ledger unavailable; feedback on this answer will not be kept")

    async def record_message_vote(
        self, *, platform: str, workspace: str, user: str, value: VoteValue, message: str
    ) -> str:
        """``record_vote`` for a vote that names the message it was given on (Teams): the
        answer is looked up among the linked messages (``link_answer_messages``)."""
        if self._ledger is None:
            return VOTE_NOT_RECORDED
        try:
            answer_id = await self._ledger.answer_for_message(platform=platform, message=message)
        except DatabaseError as exc:
            log_outage(log, "usage ledger unavailable; vote not recorded", exc)
            return VOTE_NOT_RECORDED
        if answer_id is None:
            log.info("a vote on a %s message that shows no known answer", platform)
            return VOTE_UNKNOWN_ANSWER
        return await self.record_vote(
            Vote(answer_id, platform, workspace, user, value, self._now())
        )
