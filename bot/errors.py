"""Errors of the core. Only `UserFacingError.text` is ever shown to users."""

from __future__ import annotations

from typing import Literal


class BotError(Exception):
    """Root of every error raised by the core."""


class StateUnavailable(BotError):
    """The conversation store (Redis) could not be reached."""


class ConversationBusy(BotError):
    """The conversation stayed locked by another answer for too long."""


class ReplyCancelled(BotError):
    """Raised by a reply sink when the person stopped the answer (e.g. Teams' Stop button):
    the core stops generating."""


Reason = Literal["invalid", "forbidden", "rate_limited", "busy", "unavailable", "error"]
"""Why a question got no answer, for doors that say it in their own terms (the team API's
HTTP status): ``invalid`` (empty, too long), ``forbidden`` (premium off, not allowed, over
budget), ``rate_limited``, ``busy`` (the conversation stayed locked), ``unavailable`` (a
model server, the state store or the ledger is down), ``error`` (a bug)."""


class UserFacingError(BotError):
    """An error whose text is safe and useful to show in the conversation; ``reason`` says
    what kind of refusal it is, ``retry_after`` in how many seconds asking again may work."""

    def __init__(
        self, text: str, *, reason: Reason = "invalid", retry_after: float | None = None
    ) -> None:
        super().__init__(text)
        self.text = text
        self.reason: Reason = reason
        self.retry_after = retry_after
