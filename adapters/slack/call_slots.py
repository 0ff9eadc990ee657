"""Slots for Slack Web API calls: Slack's rate limits, shared by every answer in a workspace
(across replicas when the pacer is on Redis); each call of a reply sink takes a slot of its
method first. (Dollar budgets of the premium model are ``bot.budget``, nothing to do with
these.)

Slack limits each method per app and workspace in tiers (Tier 2: 20+, Tier 3: 50+, Tier 4:
100+ calls a minute, with bursts; chat.postMessage about one a second per channel). The
paces below keep under the published figures in any minute: a burst of ``b`` calls plus the
steady pace of ``N - b`` a minute is at most ``N`` calls in any 60 seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from bot.errors import StateUnavailable
from bot.ratelimit import CallPacer, LocalCallPacer, Pace

log = logging.getLogger(__name__)

TIER_PER_MINUTE = {1: 1, 2: 20, 3: 50, 4: 100}
METHOD_TIERS = {
    "chat.update": 3,
    "chat.delete": 3,
    "chat.postEphemeral": 4,
    "chat.startStream": 2,
    "chat.appendStream": 4,
    "chat.stopStream": 2,
    "assistant.threads.setSuggestedPrompts": 4,
    "assistant.threads.setTitle": 4,
    "conversations.replies": 3,
    "conversations.history": 3,
    "users.info": 4,
}
BURST_SHARE = 10  # a tier's burst: a tenth of its minute, at least 2 calls
# "Special": about one chat.postMessage a second per channel (short bursts). A thread's
# status (about one a second per thread) is paced by the sink itself: "thinking" or the
# place in line, its updates at most every 5 s, and the clearing.
POST_MESSAGE_PACE = Pace(per_minute=55, burst=2)


def tier_pace(tier: int) -> Pace:
    """The pace that keeps a method of ``tier`` under its published limit in any minute."""
    limit = TIER_PER_MINUTE[tier]
    burst = max(2, limit // BURST_SHARE) if limit > 2 else 1
    return Pace(per_minute=max(1, limit - burst), burst=burst)


# A streamed answer costs one chat.startStream (Tier 2: 20 in any minute, counted as Slack
# counts: a sliding window). Answers come in bursts (an incident, a busy channel), so the
# whole minute's streams may start at once. An answer without a stream slot is posted whole
# when it ends (one chat.postMessage), where the channel's one-a-second limit binds: with a
# burst of 2 (as the other tiers' paces) 28 of 30 answers asked together in one channel
# waited on that limit, the last 30 s; with the window, 10 of them
# (tests/adapters/slack/test_slack_budget.py).
STREAM_START_PACE = Pace(per_minute=TIER_PER_MINUTE[2], window=True)
PACES = {method: tier_pace(tier) for method, tier in METHOD_TIERS.items()}
PACES["chat.startStream"] = STREAM_START_PACE


class SlackCallSlots:
    """Slots for Slack Web API calls, per method and workspace (and channel for
    chat.postMessage). Counts the answers streaming in each workspace here, so a sink
    can widen its flush interval as more answers share the slots."""

    def __init__(self, *, pacer: CallPacer | None = None) -> None:
        self._pacer = pacer or LocalCallPacer()
        self._streaming: Counter[str] = Counter()

    async def slot(
        self,
        method: str,
        *,
        team: str,
        channel: str = "",
        max_wait: float = 3600.0,
    ) -> bool:
        """Wait for the next slot of ``method`` (at most ``max_wait`` seconds; nothing is
        taken and False is returned when the slot is further away than that)."""
        if method == "chat.postMessage":
            pace, scope = POST_MESSAGE_PACE, f"slack:{team}:{method}:{channel}"
        elif method in PACES:
            pace, scope = PACES[method], f"slack:{team}:{method}"
        else:
            return True
        try:
            wait = await self._pacer.reserve(scope, pace, max_wait=max_wait)
        except StateUnavailable:
            return True  # Redis is down: Slack's own 429 is the backstop
        if wait is None:
            return False
        if wait > 0:
            await asyncio.sleep(wait)
        return True

    def interval(self, method: str, *, team: str, base: float) -> float:
        """Seconds between one answer's calls of ``method``: ``base``, widened so that the
        answers streaming at once in ``team`` (here) share the method's pace."""
        pace = PACES.get(method)
        if pace is None:
            return base
        return max(base, self._streaming[team] * 60.0 / pace.per_minute)

    def begin(self, team: str) -> None:
        """Count one more answer streaming in ``team`` (until `end`)."""
        self._streaming[team] += 1

    def end(self, team: str) -> None:
        """An answer counted by `begin` has ended."""
        self._streaming[team] -= 1
        if self._streaming[team] <= 0:
            del self._streaming[team]
