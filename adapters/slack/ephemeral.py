"""A reply only its asker sees: a slash command's ephemeral response, sent whole at the end."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from adapters.slack.render import sources_text, to_mrkdwn
from bot.conversation import Citation
from bot.errors import UserFacingError


class EphemeralSink:
    """A reply only the user sees, through a slash command's response_url."""

    def __init__(self, *, respond: Callable[..., Awaitable[Any]]) -> None:
        self._respond = respond
        self._parts: list[str] = []
        self._sources = ""

    async def status(self, text: str) -> None:
        """Nothing to show: the response is sent once, on close."""

    async def write(self, text: str) -> None:
        """Collect text; it is sent on close."""
        self._parts.append(text)

    async def fail(self, error: UserFacingError) -> None:
        """No answer: the reason is shown like any other text."""
        await self.write(error.text)

    async def cite(self, citations: Sequence[Citation], *, searched: bool, answer_id: str) -> None:
        """List the sources as lines under the answer (an ephemeral response takes no
        feedback: it is not kept in the channel)."""
        if citations:
            self._sources = sources_text(citations, searched=searched)

    async def close(self) -> None:
        """Send the collected text as an ephemeral response."""
        text = to_mrkdwn("".join(self._parts).strip())
        if self._sources:
            text = f"{text}\n\n{self._sources}" if text else self._sources
        if text:
            await self._respond(text=text, response_type="ephemeral")
