"""The generate step: stream a model's answer into the reply sink, and turn model errors
into an outcome and a reply (a table, not an except chain)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from bot import replies
from bot.conversation import ReplySink
from bot.errors import ReplyCancelled, UserFacingError
from bot.outcome import Outcome
from bot.replies import ProviderNames
from inference.base import (
    ChatModel,
    GenerationFailed,
    InferenceError,
    ModelNotFound,
    ModelUnavailable,
    Overloaded,
    ProviderAuthFailed,
    Queued,
    TextDelta,
    Turn,
    Usage,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Failure:
    """What a model error means for the person: an outcome and the reply for each route
    (templates filled by ``ProviderNames.fill`` with ``model`` and ``local_model``).
    ``after_text`` replaces the reply when part of the answer was already shown."""

    outcome: Outcome
    local: str
    premium: str
    after_text: str | None = None


# Most specific first: ProviderAuthFailed is a ModelUnavailable.
FAILURES: tuple[tuple[type[InferenceError], Failure], ...] = (
    (
        ProviderAuthFailed,
        Failure(Outcome.AUTH_FAILED, replies.PREMIUM_AUTH_FAILED, replies.PREMIUM_AUTH_FAILED),
    ),
    (
        ModelNotFound,
        Failure(Outcome.MODEL_NOT_FOUND, replies.MODEL_NOT_FOUND, replies.PREMIUM_MODEL_NOT_FOUND),
    ),
    (Overloaded, Failure(Outcome.OVERLOADED, replies.OVERLOADED, replies.OVERLOADED)),
    (
        ModelUnavailable,
        Failure(Outcome.MODEL_UNAVAILABLE, replies.MODEL_UNAVAILABLE, replies.PREMIUM_UNAVAILABLE),
    ),
    (
        GenerationFailed,
        Failure(
            Outcome.GENERATION_FAILED,
            replies.MODEL_UNAVAILABLE,
            replies.MODEL_UNAVAILABLE,
            after_text="\n\n" + replies.INCOMPLETE,
        ),
    ),
)


def failure_for(exc: InferenceError) -> Failure:
    """The entry of ``FAILURES`` for a model error (an unknown one counts as unavailable)."""
    for kind, failure in FAILURES:
        if isinstance(exc, kind):
            return failure
    return Failure(Outcome.MODEL_UNAVAILABLE, replies.MODEL_UNAVAILABLE, replies.MODEL_UNAVAILABLE)


class TextFilter(Protocol):
    """Rewrites streamed text on its way to the sink (e.g. citation markers)."""

    def feed(self, text: str) -> str:
        """The part of ``text`` that can be shown now (the rest is held back)."""
        ...

    def flush(self) -> str:
        """What was held back, at the end of the answer."""
        ...


class Unfiltered:
    """Shows text as it comes."""

    def feed(self, text: str) -> str:
        """All of it."""
        return text

    def flush(self) -> str:
        """Nothing is ever held back."""
        return ""


@dataclass(slots=True)
class Generation:
    """What the model produced: the text shown, token usage, when the first text came,
    and how it ended."""

    text: str = ""
    usage: Usage = field(default_factory=lambda: Usage(0, 0))
    first_token_at: datetime | None = None
    outcome: Outcome = Outcome.OK


async def generate(
    *,
    model: ChatModel,
    turns: list[Turn],
    sink: ReplySink,
    premium: bool,
    local_model: str,
    names: ProviderNames,
    now: Callable[[], datetime],
    text_filter: TextFilter | None = None,
) -> Generation:
    """Stream the answer to ``turns`` into ``sink``; a model error becomes a reply and an
    outcome, the person stopping the answer (``ReplyCancelled``) ends generation."""
    shown = text_filter or Unfiltered()
    result = Generation()
    parts: list[str] = []

    async def show(text: str) -> None:
        if text:
            parts.append(text)
            await sink.write(text)

    try:
        async with aclosing(model.stream(turns)) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    if result.first_token_at is None:
                        result.first_token_at = now()
                    await show(shown.feed(event.text))
                elif isinstance(event, Queued):
                    await sink.status(replies.QUEUED.format(position=event.position))
                else:
                    result.usage = event
        await show(shown.flush())
    except ReplyCancelled:
        # The person stopped the answer: leaving the block closed the stream, which ends
        # generation on the server.
        result.outcome = Outcome.CANCELLED
    except InferenceError as exc:
        failure = failure_for(exc)
        result.outcome = failure.outcome
        if failure.outcome is Outcome.AUTH_FAILED:
            log.error("%s refused the API key", model.name)
        await show(shown.flush())
        if parts:
            text = failure.after_text or (failure.premium if premium else failure.local)
            await sink.write(names.fill(text, model=model.name, local_model=local_model))
        else:
            text = failure.premium if premium else failure.local
            filled = names.fill(text, model=model.name, local_model=local_model)
            await sink.fail(UserFacingError(filled, reason="unavailable"))
    result.text = "".join(parts)
    if result.outcome is Outcome.OK and not result.text.strip():
        result.outcome = Outcome.EMPTY_ANSWER
        await sink.write(replies.EMPTY_ANSWER)
    return result
