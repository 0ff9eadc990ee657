"""Several servers of the same model in priority order, failing over before the first token."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence

from inference.base import ChatModel, ModelNotFound, ModelUnavailable, StreamEvent, TextDelta, Turn

log = logging.getLogger(__name__)


class FailoverChatModel:
    """Tries each model in order; moves on only while nothing has been yielded yet."""

    def __init__(self, *, models: Sequence[ChatModel]) -> None:
        if not models:
            raise ValueError("at least one model is required")
        self._models = list(models)

    @property
    def name(self) -> str:
        """The model name (the same on every server)."""
        return self._models[0].name

    @property
    def context_tokens(self) -> int:
        """The smallest context window among the servers."""
        return min(m.context_tokens for m in self._models)

    @property
    def members(self) -> list[ChatModel]:
        """The models in failover order."""
        return list(self._models)

    async def stream(self, turns: Sequence[Turn]) -> AsyncIterator[StreamEvent]:
        """Stream from the first server that starts answering."""
        last: ModelUnavailable | ModelNotFound | None = None
        for index, model in enumerate(self._models):
            started = False
            try:
                async for event in model.stream(turns):
                    if isinstance(event, TextDelta):
                        started = True
                    yield event
                return
            except (ModelUnavailable, ModelNotFound) as exc:
                if started:
                    raise
                log.warning("model server %d failed before answering; trying the next", index)
                last = exc
        assert last is not None
        raise last
