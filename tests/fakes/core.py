"""In-memory fakes of our own interfaces: a scripted chat model, a recording sink and a
knowledge index over a fixed list of passages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from bot.conversation import Citation
from bot.errors import UserFacingError
from inference.base import InferenceError, StreamEvent, TextDelta, Turn, Usage
from inference.knowledge import Passage


@dataclass
class ScriptedModel:
    """Answers with `reply` in pieces; raises `error` after `fail_after` pieces if set;
    `first_token_delay` seconds before the first piece (a model that takes a while)."""

    reply: str = "It is a burrito."
    name: str = "scripted:1b"
    context_tokens: int = 4096
    error: InferenceError | None = None
    fail_after: int = 0
    first_token_delay: float = 0.0
    calls: list[list[Turn]] = field(default_factory=list)

    async def stream(self, turns: Sequence[Turn]) -> AsyncIterator[StreamEvent]:
        self.calls.append(list(turns))
        if self.first_token_delay:
            await asyncio.sleep(self.first_token_delay)
        pieces = [self.reply[i : i + 5] for i in range(0, len(self.reply), 5)]
        for index, piece in enumerate(pieces):
            if self.error is not None and index == self.fail_after:
                raise self.error
            yield TextDelta(piece)
        if self.error is not None and self.fail_after >= len(pieces):
            raise self.error
        yield Usage(prompt_tokens=11, completion_tokens=len(pieces))


@dataclass
class RecordingSink:
    """Keeps what the core wrote."""

    writes: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    searched: bool | None = None  # None: cite() was not called
    answer_id: str | None = None
    closed: int = 0

    async def status(self, text: str) -> None:
        self.statuses.append(text)

    async def write(self, text: str) -> None:
        self.writes.append(text)

    async def fail(self, error: UserFacingError) -> None:
        """No answer: the reason is shown like any other text."""
        await self.write(error.text)

    async def cite(self, citations: Sequence[Citation], *, searched: bool, answer_id: str) -> None:
        assert self.searched is None, "cite() is called at most once"
        assert not self.closed, "cite() comes before close()"
        assert answer_id, "every model answer has an id"
        self.citations = list(citations)
        self.searched = searched
        self.answer_id = answer_id

    async def close(self) -> None:
        self.closed += 1

    @property
    def text(self) -> str:
        return "".join(self.writes)


@dataclass
class FixedKnowledge:
    """An index that returns fixed passages (or raises ``error``), recording each query."""

    passages: list[Passage] = field(default_factory=list)
    error: Exception | None = None
    queries: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    async def retrieve(self, query: str, *, scope: Sequence[str], limit: int = 5) -> list[Passage]:
        self.queries.append((query, tuple(scope)))
        if self.error is not None:
            raise self.error
        return self.passages[:limit]

    async def search(self, query: str, *, scope: Sequence[str], limit: int = 5) -> list[Passage]:
        return await self.retrieve(query, scope=scope, limit=limit)
