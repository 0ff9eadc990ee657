"""Where accepted work goes: the Redis Stream work queue (crash-safe, shared by replicas) or,
without Redis, a task in this process."""

from __future__ import annotations

import logging
import uuid
from typing import Any, Protocol

from bot.dedupe import SeenIds
from bot.outcome import Event
from bot.tasks import TaskTracker
from bot.telemetry import NullTelemetry, Telemetry
from bot.workqueue import Handler, Job, JobProgress

log = logging.getLogger(__name__)


class Dispatcher(Protocol):
    """Accepts work once per dedupe id and gets it answered."""

    async def submit(self, dedupe_id: str | None, payload: dict[str, Any]) -> bool:
        """Queue work; False when the dedupe id was seen before."""
        ...


class JobRouter:
    """Hands each job to the adapter of its platform (``payload["platform"]``)."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, platform: str, handler: Handler) -> None:
        """The function answering jobs of one platform."""
        self._handlers[platform] = handler

    async def __call__(self, job: Job, progress: JobProgress) -> None:
        """Answer one job."""
        handler = self._handlers.get(str(job.payload.get("platform")))
        if handler is None:
            log.error("no adapter for a %s job; dropped", job.payload.get("platform"))
            return
        await handler(job, progress)


class LocalDispatcher:
    """Without Redis: dedupe inside this process and answer in a tracked task."""

    def __init__(
        self,
        *,
        tracker: TaskTracker,
        handler: Handler,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._seen = SeenIds()
        self._tracker = tracker
        self._handler = handler
        self._telemetry = telemetry or NullTelemetry()

    async def submit(self, dedupe_id: str | None, payload: dict[str, Any]) -> bool:
        """Start answering at once unless this id was seen before."""
        if dedupe_id and not self._seen.first_time(dedupe_id):
            self._telemetry.event(Event.DEDUPE_HIT, str(payload.get("platform", "")))
            return False
        job = Job(uuid.uuid4().hex, payload)
        self._tracker.spawn(self._run(job), name="work")
        return True

    async def _run(self, job: Job) -> None:
        await self._handler(job, JobProgress(None, job.id))
