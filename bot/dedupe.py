"""Seen message ids, so a redelivered event is answered once.

With Redis the work queue dedupes and enqueues in one atomic script (``bot.workqueue``),
across replicas; without Redis, ``SeenIds`` does it inside the one process."""

from __future__ import annotations

import time

DEDUPE_TTL_SECONDS = 24 * 3600
_MAX_REMEMBERED = 100_000


class SeenIds:
    """Message ids seen in this process in the last ``ttl_seconds``."""

    def __init__(self, *, ttl_seconds: float = DEDUPE_TTL_SECONDS) -> None:
        self._ttl = ttl_seconds
        self._seen: dict[str, float] = {}

    def first_time(self, message_id: str) -> bool:
        """True the first time ``message_id`` is seen, False after (until it expires)."""
        now = time.monotonic()
        if len(self._seen) > _MAX_REMEMBERED:
            self._seen = {k: v for k, v in self._seen.items() if v > now}
        if self._seen.get(message_id, 0.0) > now:
            return False
        self._seen[message_id] = now + self._ttl
        return True
