"""Where accepted work goes: the Redis Stream work queue (crash-safe, shared by replicas) or,
without Redis, a task in this process."""

from __future__ import annotations

import logging
import uuid
from typing import Protocol

from bot import replies
from bot.dedupe import SeenIds
from bot.jobs import ReplyTo, Work
from bot.outcome import Event
from bot.set_aside import Teller
from bot.tasks import TaskTracker
from bot.telemetry import NullTelemetry, Telemetry
from bot.workqueue import Handler, Job, JobProgress

log = logging.getLogger(__name__)


class Dispatcher(Protocol):
    """Accepts work once per dedupe id and gets it answered."""

    async def submit(self, dedupe_id: str | None, work: Work) -> bool:
        """Queue work; False when the dedupe id was seen before."""
        ...


class JobRouter:
    """Hands each job to the adapter of its platform, and a note for an asker whose job was
    set aside to the adapter that can reach them."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._tellers: dict[str, Teller] = {}

    def register(self, platform: str, handler: Handler, teller: Teller | None = None) -> None:
        """The functions answering jobs of one platform and telling their askers."""
        self._handlers[platform] = handler
        if teller is not None:
            self._tellers[platform] = teller

    async def __call__(self, job: Job, progress: JobProgress) -> None:
        """Answer one job."""
        handler = self._handlers.get(job.work.platform)
        if handler is None:
            log.error("no adapter for a %s job; dropped", job.work.platform)
            return
        await handler(job, progress)

    async def tell(self, reply_to: ReplyTo, text: str) -> None:
        """Write ``text`` in the asker's conversation."""
        teller = self._tellers.get(reply_to.platform)
        if teller is None:
            log.error("no adapter to tell a %s asker", reply_to.platform)
            return
        await teller(reply_to, text)


class LocalDispatcher:
    """Without Redis: dedupe inside this process and answer in a tracked task."""

    def __init__(
        self,
        *,
        tracker: TaskTracker,
        handler: Handler,
        teller: Teller | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._seen = SeenIds()
        self._tracker = tracker
        self._handler = handler
        self._teller = teller
        self._telemetry = telemetry or NullTelemetry()

    async def submit(self, dedupe_id: str | None, work: Work) -> bool:
        """Start answering at once unless this id was seen before."""
        if dedupe_id and not self._seen.first_time(dedupe_id):
            self._telemetry.event(Event.DEDUPE_HIT, work.platform)
            return False
        job = Job(uuid.uuid4().hex, work)
        self._tracker.spawn(self._run(job), name="work")
        return True

    async def _run(self, job: Job) -> None:
        """One try (nothing here survives this process): an error is logged with its
        traceback and the asker is told."""
        try:
            await self._handler(job, JobProgress(None, job.id))
        except Exception:
            log.exception("work %s failed", job.id)
            self._telemetry.event(Event.SET_ASIDE, job.work.platform)
            if self._teller is not None:
                try:
                    await self._teller(job.work.reply_to, replies.JOB_SET_ASIDE)
                except Exception:
                    log.warning("work %s: could not tell its asker", job.id, exc_info=True)
