"""Values that cross the boundary between an adapter and the core."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from bot.errors import UserFacingError
from inference.base import Turn


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """Identifies one conversation (one thread) on one platform."""

    platform: str
    workspace: str
    channel: str
    thread: str

    def as_id(self) -> str:
        """A stable string form, used in storage keys and the usage ledger."""
        return f"{self.platform}:{self.workspace}:{self.channel}:{self.thread}"


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A message addressed to the bot, already stripped of the bot's mention."""

    key: ConversationKey
    message_id: str
    sender: str
    text: str
    is_direct: bool = False
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # What the bot was shown of the place it was asked in, oldest first (e.g. the Slack
    # thread it was mentioned in and does not own): context for this answer only, never
    # stored in the conversation's memory.
    context: tuple[Turn, ...] = ()
    # A door whose client keeps the conversation (the team API): the earlier turns as the
    # client sent them, used instead of memory (nothing is read from or written to it),
    # and the client's own instructions, which follow the bot's system prompt.
    transcript: tuple[Turn, ...] | None = None
    instructions: str = ""
    # The door it came through when not the platform's own chat ("api", "mcp"); the key
    # and sender are still its owner's, so limits, budgets and the ledger count them.
    via: str = ""


@dataclass(frozen=True, slots=True)
class Citation:
    """A source shown under an answer; ``number`` is its ``[n]`` marker in the text."""

    number: int
    title: str
    url: str
    excerpt: str


class ReplySink(Protocol):
    """Where the core writes one reply; bound by the adapter to one conversation."""

    async def status(self, text: str) -> None:
        """Show a passing status (e.g. a queue position) until the reply's text arrives."""
        ...

    async def write(self, text: str) -> None:
        """Append text to the reply; the sink decides how and when it is shown."""
        ...

    async def fail(self, error: UserFacingError) -> None:
        """The question gets no answer (refused, or no model could answer): ``error.text``
        says why in words safe to show, ``error.reason`` what kind of failure it is. Called
        before any text of an answer; nothing but ``close`` follows. A chat sink shows the
        text as it would ``write`` it."""
        ...

    async def cite(self, citations: Sequence[Citation], *, searched: bool, answer_id: str) -> None:
        """Called once after every complete model answer, after its text and before
        ``close``: the sources to show under it, the cited ones, or with ``searched=True``
        the ones the answer drew on without citing (so the reader can check); empty when it
        used none. Replies that are not model answers (commands, refusals) never get it, so
        a sink can also mark model answers here (Teams' AI-generated label) and offer
        feedback on them: ``answer_id`` names the answer in the usage ledger, and a vote
        on it is recorded with ``Assistant.feedback.record_vote``."""
        ...

    async def close(self) -> None:
        """Finish the reply: flush what is buffered and end any stream."""
        ...
