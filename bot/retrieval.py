"""The retrieve step: the passages of the team's indexed knowledge that a question needs.

The query is the question, plus the person's previous turn or two when the question is a
short follow-up ("and how do I roll it back?"), so it still finds what the thread is about
without an extra model call. Passages are searched only where the question was asked: the
workspace and channel (Slack) or tenant and conversation (Teams) are the scope that
restricted sources (``?only=``) are matched against, in the store query.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from bot.conversation import ConversationKey
from bot.outages import log_outage
from inference.base import Turn
from inference.knowledge import Knowledge, KnowledgeError, Passage

log = logging.getLogger(__name__)

# A question of fewer words than this is taken as a follow-up of the previous turns.
FOLLOW_UP_WORDS = 12
FOLLOW_UP_TURNS = 2
FOLLOW_UP_CHARS = 600
RETRIEVE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Retrieved:
    """The outcome of the retrieve step."""

    passages: list[Passage] = field(default_factory=list)
    elapsed_ms: int | None = None  # None: no retrieval (no knowledge configured)
    unavailable: bool = False  # the index could not be searched


NOT_CONFIGURED = Retrieved()


class KnowledgeFound(StrEnum):
    """What retrieval found for one answer, as the usage ledger stores it."""

    MATCHED = "matched"  # passages were given to the model
    NO_MATCH = "no_match"  # the index was searched and nothing that fits matched
    UNAVAILABLE = "unavailable"  # the index could not be searched


def knowledge_found(retrieved: Retrieved, given: int) -> KnowledgeFound | None:
    """What retrieval found, ``given`` passages of it reaching the prompt; None when there
    was no retrieval (no knowledge configured)."""
    if retrieved.elapsed_ms is None:
        return None
    if retrieved.unavailable:
        return KnowledgeFound.UNAVAILABLE
    return KnowledgeFound.MATCHED if given else KnowledgeFound.NO_MATCH


def scope_of(key: ConversationKey) -> tuple[str, ...]:
    """The ids a ``?only=`` restriction is matched against for a question asked in ``key``."""
    return tuple(dict.fromkeys(i for i in (key.workspace, key.channel) if i))


def query_for(question: str, history: Sequence[Turn]) -> str:
    """The search query: the question, and for a short follow-up the previous user turns."""
    if len(question.split()) >= FOLLOW_UP_WORDS:
        return question
    earlier = [t.content for t in reversed(history) if t.role == "user"][:FOLLOW_UP_TURNS]
    context = " ".join(earlier)[:FOLLOW_UP_CHARS]
    return f"{question}\n{context}" if context else question


class Retriever:
    """Searches the index for a question; never raises: an unreachable index is reported
    in the result and the question is answered without it."""

    def __init__(
        self,
        *,
        knowledge: Knowledge,
        limit: int = 5,
        timeout_seconds: float = RETRIEVE_TIMEOUT_SECONDS,
    ) -> None:
        self._knowledge = knowledge
        self._limit = limit
        self._timeout = timeout_seconds

    @property
    def knowledge(self) -> Knowledge:
        """The index searched."""
        return self._knowledge

    async def retrieve(
        self, key: ConversationKey, question: str, history: Sequence[Turn]
    ) -> Retrieved:
        """The best passages for ``question`` asked in ``key``, best first."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                passages = await self._knowledge.retrieve(
                    query_for(question, history), scope=scope_of(key), limit=self._limit
                )
        except (KnowledgeError, TimeoutError) as exc:
            log_outage(log, "team knowledge unavailable; answering without it", exc)
            return Retrieved(elapsed_ms=_ms_since(started), unavailable=True)
        return Retrieved(passages=list(passages), elapsed_ms=_ms_since(started))


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
