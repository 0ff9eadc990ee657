"""Slack Web API calls per answer: the real SlackReplySink against the fake Slack Web API.

Two answers in a channel thread, streamed natively and (on a workspace without streaming)
updated: one answered at once, one that waited in line behind two others (the core shows
positions #2 then #1, each longer than the status throttle apart). The model's first token
arrives after `--wait` seconds; the answer then streams in 12 pieces and ends as the core
ends every model answer: ``cite`` (no sources here; the feedback buttons) then ``close``.
Run: `.venv/bin/python -m bench.slack_calls`.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import thread_status
from adapters.slack.sink import SlackReplySink, StreamingSupport
from bot import replies
from tests.fakes.slack import FakeSlack

CHANNEL, THREAD = "C0CHANNEL", "1700000000.000001"
PIECES = [f"word{i} " for i in range(12)]


async def _answer(native: bool, queued: bool, wait: float) -> Counter[str]:
    slack = FakeSlack()
    await slack.start()
    try:
        slack.refuse_streaming = not native
        sink = SlackReplySink(
            client=AsyncWebClient(token=slack.bot_token, base_url=slack.api_url),
            channel=CHANNEL,
            thread_ts=THREAD,
            team_id=slack.team_id,
            user_id="U0PERSON",
            streaming=StreamingSupport(native=native),
        )
        if queued:
            for position in (2, 1):
                await sink.status(replies.QUEUED.format(position=position))
                await asyncio.sleep(wait / 2)
        await asyncio.sleep(wait)  # the model's first token
        for piece in PIECES:
            await sink.write(piece)
            await asyncio.sleep(0.02)
        await sink.cite([], searched=False, answer_id="0123456789abcdef")
        await sink.close()
        return Counter(call.method for call in slack.calls)
    finally:
        await slack.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wait", type=float, default=0.6, help="seconds to the first token")
    args = parser.parse_args()
    thread_status.STATUS_INTERVAL = args.wait / 4  # every queue position is shown
    for native in (True, False):
        for queued in (False, True):
            calls = await _answer(native, queued, args.wait)
            kind = "streamed" if native else "updated"
            waited = "waited in line" if queued else "answered at once"
            detail = ", ".join(f"{m} {n}" for m, n in sorted(calls.items()))
            print(f"{kind:8} {waited:16} {sum(calls.values()):3} calls: {detail}")


if __name__ == "__main__":
    asyncio.run(main())
