"""Errors of the core. Only `UserFacingError.text` is ever shown to users."""

from __future__ import annotations


class BotError(Exception):
    """Root of every error raised by the core."""


class StateUnavailable(BotError):
    """The conversation store (Redis) could not be reached."""


class ConversationBusy(BotError):
    """The conversation stayed locked by another answer for too long."""


class ReplyCancelled(BotError):
    """Raised by a reply sink when the person stopped the answer (e.g. Teams' Stop button):
    the core stops generating."""


class UserFacingError(BotError):
    """An error whose text is safe and useful to show in the conversation."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text
