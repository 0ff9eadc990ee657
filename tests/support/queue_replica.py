"""A replica of the work queue in its own process, for tests that kill one: runs the real
`WorkQueue` on the Redis at REDIS_URL with a handler that records every try in Redis and
acts on the question's text ("die": the process SIGKILLs itself; "raise": the handler
raises; anything else: answered). Notes for askers are recorded as well.

    python -m tests.support.queue_replica  (REDIS_URL, CONSUMER in the environment)
"""

from __future__ import annotations

import asyncio
import os
import signal

from redis.asyncio import Redis

from bot.jobs import ReplyTo, SlackEvent
from bot.tasks import TaskTracker
from bot.workqueue import Job, JobProgress, WorkQueue

TRIES = "test:tries"  # one entry per try: the question's text
ANSWERED = "test:answered"
TOLD = "test:told"  # "<channel>/<thread>: <text>" per note


async def main() -> None:
    redis = Redis.from_url(os.environ["REDIS_URL"])

    async def handle(job: Job, progress: JobProgress) -> None:
        assert isinstance(job.work, SlackEvent)
        text = str(job.work.event.get("text"))
        await redis.rpush(TRIES, text)
        if text == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        if text == "raise":
            raise RuntimeError("this question breaks the handler")
        await redis.rpush(ANSWERED, text)

    async def tell(reply_to: ReplyTo, text: str) -> None:
        await redis.rpush(TOLD, f"{reply_to.channel}/{reply_to.thread}: {text}")

    queue = WorkQueue(
        redis=redis,
        tracker=TaskTracker(),
        handler=handle,
        teller=tell,
        consumer=os.environ["CONSUMER"],
        reclaim_idle_seconds=float(os.environ.get("RECLAIM_SECONDS", "0.5")),
        heartbeat_seconds=0.1,
        block_seconds=0.05,
    )
    await redis.rpush("test:started", os.environ["CONSUMER"])
    await queue.run()


if __name__ == "__main__":
    asyncio.run(main())
