"""Feedback on model answers: one vote (up or down) per person per answer, kept in the usage
ledger beside the answer's request row; a later vote by the same person replaces theirs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from bot.database import DatabaseError
from bot.outages import log_outage
from bot.outcome import Event
from bot.telemetry import Telemetry
from bot.votes import Vote, VoteValue


class VoteStore(Protocol):
    """Where votes are kept (the usage ledger)."""

    async def record_vote(self, vote: Vote) -> None:
        """Store ``vote``, replacing the same person's earlier vote on the same answer."""
        ...

    async def link_messages(
        self, *, platform: str, messages: Sequence[str], answer_id: str, at: datetime
    ) -> None:
        """Remember that ``messages`` (platform message ids) show the answer ``answer_id``."""
        ...

    async def answer_for_message(self, *, platform: str, message: str) -> str | None:
        """The answer a posted platform message shows, if known."""
        ...


log = logging.getLogger(__name__)

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


class Feedback:
    """Records votes on answers in the usage ledger and says what to tell the voter
    (privately); database trouble is logged, never shown."""

    def __init__(
        self,
        *,
        ledger: VoteStore | None,
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
