"""`/search <words>`: the best-matching indexed documents, listed without asking a model."""

from __future__ import annotations

import logging

from bot import replies
from bot.citations import searched
from bot.conversation import Citation, ConversationKey
from bot.outages import log_outage
from bot.retrieval import scope_of
from inference.knowledge import Knowledge, KnowledgeError

log = logging.getLogger(__name__)

SEARCH_RESULTS = 5


async def search_documents(
    knowledge: Knowledge, key: ConversationKey, words: str, limit: int = SEARCH_RESULTS
) -> list[Citation]:
    """The documents best matching ``words`` for a question asked in ``key`` (restricted
    sources honoured), titled and shortened as an answer's sources are. Raises
    ``KnowledgeError`` when the index cannot be searched."""
    found = await knowledge.search(words, scope=scope_of(key), limit=limit)
    return searched(found)


async def search_reply(knowledge: Knowledge | None, key: ConversationKey, words: str) -> str:
    """The reply to `/search words` asked in ``key`` (restricted sources honoured)."""
    if knowledge is None:
        return replies.SEARCH_NOT_CONFIGURED
    try:
        found = await search_documents(knowledge, key, words)
    except KnowledgeError as exc:
        log_outage(log, "team knowledge unavailable for /search", exc)
        return replies.SEARCH_UNAVAILABLE
    if not found:
        return replies.SEARCH_NOTHING.format(words=words)
    lines = [replies.SEARCH_HEADER.format(words=words)]
    for entry in found:
        link = f"[{entry.title}]({entry.url})" if entry.url else entry.title
        lines.append(f"{entry.number}. {link}\n   {entry.excerpt}")
    return "\n".join(lines)
