"""Slack's published rate limits, enforced by the fake Slack when ``FakeSlack.tiers`` is set:
per method and workspace, at most the tier's calls in any 60 seconds (Tier 2: 20, Tier 3:
50, Tier 4: 100); chat.postMessage about one a second per channel and
assistant.threads.setStatus about one a second per thread (a burst of 3, then one a
second). Over the limit Slack answers HTTP 429 with ``Retry-After`` (whole seconds) and the
call has no effect (../shared/slack-rate-limits.md)."""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

PER_MINUTE = {
    "chat.update": 50,
    "chat.delete": 50,
    "chat.postEphemeral": 100,
    "chat.startStream": 20,
    "chat.appendStream": 100,
    "chat.stopStream": 20,
    "assistant.threads.setSuggestedPrompts": 100,
    "assistant.threads.setTitle": 100,
    "conversations.replies": 50,
    "conversations.history": 50,
    "users.info": 100,
}
WINDOW_SECONDS = 60.0
PER_SECOND_BURST = 3  # the "special" methods: a short burst, then one a second


class SlackTiers:
    """The rate limiter of one fake workspace; ``refused`` counts the 429s per method."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.refused: dict[str, int] = defaultdict(int)
        self._windows: dict[str, deque[float]] = defaultdict(deque)
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def check(self, method: str, args: dict[str, Any]) -> int | None:
        """Count a call of ``method``: None when it may go ahead, else the Retry-After
        seconds of a 429."""
        now = self.clock()
        if method == "chat.postMessage":
            wait = self._bucket((method, str(args.get("channel", ""))), now)
        elif method == "assistant.threads.setStatus":
            scope = f"{args.get('channel_id', '')}:{args.get('thread_ts', '')}"
            wait = self._bucket((method, scope), now)
        elif method in PER_MINUTE:
            wait = self._window(method, PER_MINUTE[method], now)
        else:
            return None
        if wait is None:
            return None
        self.refused[method] += 1
        return max(1, math.ceil(wait))

    def _window(self, method: str, limit: int, now: float) -> float | None:
        calls = self._windows[method]
        while calls and calls[0] <= now - WINDOW_SECONDS:
            calls.popleft()
        if len(calls) >= limit:
            return calls[0] + WINDOW_SECONDS - now
        calls.append(now)
        return None

    def _bucket(self, scope: tuple[str, str], now: float) -> float | None:
        tokens, at = self._buckets.get(scope, (float(PER_SECOND_BURST), now))
        tokens = min(float(PER_SECOND_BURST), tokens + (now - at))
        if tokens < 1:
            self._buckets[scope] = (tokens, now)
            return 1 - tokens
        self._buckets[scope] = (tokens - 1, now)
        return None
