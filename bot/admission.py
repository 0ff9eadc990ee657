"""The admit step: whether a question may go to a model at all (not empty, not too long,
within the premium budget and the person's rate limit). A refusal is a ``UserFacingError``."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bot import replies
from bot.conversation import IncomingMessage
from bot.errors import StateUnavailable, UserFacingError
from bot.outcome import Event
from bot.premium import PremiumAccount
from bot.ratelimit import RateCharge, RateDecision, RateLimiter, describe_wait
from bot.telemetry import Telemetry

log = logging.getLogger(__name__)

# Questions admitted ahead whose answers are still to come (a bound, in case one never
# comes: a crash between the check and the answer).
COUNTED_AHEAD_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Admitted:
    """A question that may be answered; ``limits_down``: the rate limit could not be checked
    (Redis is down), so it is answered without limits or memory."""

    question: str
    limits_down: bool = False
    # Counted when the conversation is held, in the same round trip (``Memory.hold``).
    charge: RateCharge | None = None


class Admission:
    """Checks a question before any model is asked, in the order a person would want to
    hear about problems: empty, too long, premium budget, rate limit."""

    def __init__(
        self,
        *,
        max_input_chars: int,
        rate_limiter: RateLimiter | None,
        telemetry: Telemetry,
        now: Callable[[], datetime],
    ) -> None:
        self._max_input = max_input_chars
        self._rate_limiter = rate_limiter
        self._telemetry = telemetry
        self._now = now
        # Message ids admitted (budget checked, limits counted) ahead of their answer.
        self._admitted_ahead: OrderedDict[str, bool] = OrderedDict()

    def check_text(self, question: str) -> str:
        """The question stripped; refuses an empty or too long one."""
        question = question.strip()
        if not question:
            raise UserFacingError(replies.EMPTY_QUESTION)
        if len(question) > self._max_input:
            raise UserFacingError(
                replies.TOO_LONG.format(length=len(question), limit=self._max_input)
            )
        return question

    async def admit(
        self,
        message: IncomingMessage,
        question: str,
        *,
        premium: PremiumAccount | None,
        ahead: bool = False,
    ) -> Admitted:
        """Admit ``question`` or raise ``UserFacingError`` saying why not; a question that
        passes counts against the sender's rate limit once: here, or (on Redis) in the round
        trip that holds its conversation, with ``Admitted.charge``. ``ahead``: checked before it is
        shown (a slash command, refused privately), so its answer, admitted again later with
        the same message id, is not counted again."""
        question = self.check_text(question)
        if self._admitted_ahead.pop(message.message_id, False):
            return Admitted(question)  # budget and limits were checked ahead, seconds ago
        if premium is not None:
            await premium.check_budget(message, self._now())
        if self._rate_limiter is None:
            return Admitted(question)
        key = message.key
        user = f"{key.platform}:{key.workspace}:{message.sender}"
        # Counted in the round trip that holds the conversation, unless nothing holds it (a
        # client that keeps its own transcript) or it is checked ahead.
        held = not ahead and message.transcript is None
        charge = self._rate_limiter.charge(user) if held else None
        if charge is not None:
            return Admitted(question, charge=charge)
        try:
            decision = await self._rate_limiter.acquire(user)
        except StateUnavailable:
            return Admitted(question, limits_down=True)
        if not decision.allowed:
            raise self.refusal(decision, message)
        if ahead:
            self._admitted_ahead[message.message_id] = True
            while len(self._admitted_ahead) > COUNTED_AHEAD_LIMIT:
                self._admitted_ahead.popitem(last=False)
        return Admitted(question)

    def refusal(self, decision: RateDecision, message: IncomingMessage) -> UserFacingError:
        """The reply to a question its sender's rate limit refused (counted as such)."""
        self._telemetry.event(Event.RATE_LIMITED, message.key.platform)
        at, wait = describe_wait(decision, self._now().timestamp())
        return UserFacingError(
            replies.RATE_LIMITED.format(
                limit=decision.limit, window=decision.window, at=at, wait=wait
            ),
            reason="rate_limited",
            retry_after=decision.retry_in(self._now().timestamp()),
        )
