"""Several servers of one model: priority order, circuit breakers, health checks,
bounded FIFO waiting per server, and single-flight for identical context-free questions."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Protocol

from inference.base import (
    InferenceError,
    ModelNotFound,
    ModelUnavailable,
    Overloaded,
    Queued,
    StreamEvent,
    Turn,
)

log = logging.getLogger(__name__)

QUEUE_NOTICE_AFTER = 0.5  # seconds of waiting before the user is told their place in line
QUEUE_POLL = 0.5


class ServerModel(Protocol):
    """A chat model on one server that can be health-checked."""

    @property
    def name(self) -> str: ...

    @property
    def context_tokens(self) -> int: ...

    @property
    def base_url(self) -> str: ...

    def stream(self, turns: Sequence[Turn]) -> AsyncGenerator[StreamEvent]: ...

    async def ping(self) -> None: ...


class SlotTicket(Protocol):
    """One request's place in a server's line, then its slot."""

    def wait(self) -> AsyncIterator[int]:
        """Places in line (1: next) as they change, after a short wait; ends once the slot
        is held. Overloaded when the line is full."""
        ...

    async def release(self) -> None:
        """Leave the line, or free the slot (handing it to the first in line)."""
        ...


class SlotLine(Protocol):
    """At most a server's limit of generations at once; others wait first-come,
    first-served. ``FifoSlots`` holds it in this process; ``bot.model_line`` in Redis, for
    every replica and worker."""

    @property
    def waiting(self) -> int:
        """Requests of this process in line."""
        ...

    def join(self) -> SlotTicket:
        """A new request's ticket (nothing is taken until it is waited on)."""
        ...


class FifoSlots:
    """At most ``limit`` holders; others wait first-come first-served, at most ``max_waiting``
    (in this process)."""

    def __init__(self, *, limit: int, max_waiting: int) -> None:
        self._limit = limit
        self._max_waiting = max_waiting
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """Requests in line."""
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody is waiting ahead."""
        if self._active < self._limit and not self._waiters:
            self._active += 1
            return True
        return False

    def enqueue(self) -> asyncio.Future[None]:
        """Join the line; the future completes when a slot is handed over."""
        if len(self._waiters) >= self._max_waiting:
            raise Overloaded("the waiting line is full")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        return future

    def position(self, future: asyncio.Future[None]) -> int:
        """1-based place in line (0 once served)."""
        try:
            return self._waiters.index(future) + 1
        except ValueError:
            return 0

    def leave(self, future: asyncio.Future[None]) -> None:
        """Give up waiting (cancelled request); a slot already handed over is released."""
        if future in self._waiters:
            self._waiters.remove(future)
        elif future.done() and not future.cancelled():
            self.release()

    def release(self) -> None:
        """Free a slot, handing it straight to the first in line."""
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
                return
        self._active -= 1

    def join(self) -> SlotTicket:
        """A ticket for one request."""
        return _FifoTicket(self)


class _FifoTicket:
    def __init__(self, slots: FifoSlots) -> None:
        self._slots = slots
        self._future: asyncio.Future[None] | None = None
        self._held = False

    async def wait(self) -> AsyncIterator[int]:
        slots = self._slots
        if slots.try_acquire():
            self._held = True
            return
        future = self._future = slots.enqueue()
        shown = 0
        while True:
            timeout = QUEUE_NOTICE_AFTER if not shown else QUEUE_POLL
            try:
                # Not asyncio.wait_for: on Python 3.11 it loses a cancellation that comes as
                # the slot is granted (the answer would go on after it was cancelled).
                async with asyncio.timeout(timeout):
                    await asyncio.shield(future)
                self._held = True
                return
            except TimeoutError:
                pass
            position = slots.position(future)
            if position and position != shown:
                shown = position
                yield position

    async def release(self) -> None:
        if self._held:
            self._held = False
            self._slots.release()
        elif self._future is not None:
            self._slots.leave(self._future)
        self._future = None


@dataclass
class _Server:
    model: ServerModel
    slots: SlotLine
    open_until: float = 0.0
    failures: int = 0
    missing_model: bool = False  # the last failure was the model not being on this server

    def available(self, now: float) -> bool:
        return self.open_until <= now


@dataclass
class _Flight:
    """One generation shared by identical questions asked at the same moment."""

    events: list[StreamEvent] = field(default_factory=list)
    error: BaseException | None = None
    done: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def publish(self, event: StreamEvent) -> None:
        self.events.append(event)
        self.changed.set()

    def finish(self, error: BaseException | None) -> None:
        self.error, self.done = error, True
        self.changed.set()

    async def follow(self) -> AsyncIterator[StreamEvent]:
        index = 0
        while True:
            while index < len(self.events):
                yield self.events[index]
                index += 1
            if self.done:
                if self.error is not None:
                    raise self.error
                return
            self.changed.clear()
            await self.changed.wait()


class ModelPool:
    """The local model across servers in failover order (GPU first, CPU fallback)."""

    def __init__(
        self,
        *,
        servers: Sequence[ServerModel],
        max_concurrency: int,
        max_waiting: int = 100,
        first_token_timeout: float = 60.0,
        cooldown: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        line: Callable[[ServerModel], SlotLine] | None = None,
    ) -> None:
        """``line``: the line of one server (default: ``max_concurrency`` at once and
        ``max_waiting`` in line, in this process)."""
        if not servers:
            raise ValueError("at least one server is required")

        def local(_server: ServerModel) -> SlotLine:
            return FifoSlots(limit=max_concurrency, max_waiting=max_waiting)

        self._servers = [_Server(s, (line or local)(s)) for s in servers]
        self._first_token_timeout = first_token_timeout
        self._cooldown = cooldown
        self._clock = clock
        self._flights: dict[tuple[str, ...], _Flight] = {}

    @property
    def name(self) -> str:
        """The model name (the same on every server)."""
        return self._servers[0].model.name

    @property
    def context_tokens(self) -> int:
        """The smallest context window among the servers."""
        return min(s.model.context_tokens for s in self._servers)

    def health(self) -> dict[str, bool]:
        """Per server URL: whether requests are currently sent to it."""
        now = self._clock()
        return {s.model.base_url: s.available(now) for s in self._servers}

    def queue_depth(self) -> int:
        """Requests waiting for a slot, over all servers."""
        return sum(s.slots.waiting for s in self._servers)

    def _trip(self, server: _Server, reason: str, *, missing_model: bool = False) -> None:
        server.missing_model = missing_model
        server.failures += 1
        server.open_until = self._clock() + self._cooldown
        log.warning(
            "model server %s skipped for %.0fs: %s", server.model.base_url, self._cooldown, reason
        )

    async def check_health(self) -> None:
        """Ping every server once; open or close its breaker accordingly."""

        async def check(server: _Server) -> None:
            try:
                await server.model.ping()
            except InferenceError as exc:
                self._trip(
                    server,
                    f"health check failed ({type(exc).__name__})",
                    missing_model=isinstance(exc, ModelNotFound),
                )
            else:
                if server.open_until > self._clock():
                    log.info("model server %s is back", server.model.base_url)
                server.open_until, server.failures = 0.0, 0

        await asyncio.gather(*(check(s) for s in self._servers))

    async def run_health_checks(self, interval: float = 10.0) -> None:
        """Check health forever (cancel to stop)."""
        while True:
            await self.check_health()
            await asyncio.sleep(interval)

    async def stream(self, turns: Sequence[Turn]) -> AsyncGenerator[StreamEvent]:
        """Generate on the first available server; identical context-free questions asked
        while one is being answered share that generation."""
        key = self._flight_key(turns)
        if key is None:
            async with aclosing(self._generate(turns)) as events:
                async for event in events:
                    yield event
            return
        flight = self._flights.get(key)
        if flight is not None:
            async for event in flight.follow():
                yield event
            return
        flight = self._flights[key] = _Flight()
        error: BaseException | None = None
        try:
            async with aclosing(self._generate(turns)) as events:
                async for event in events:
                    if not isinstance(event, Queued):
                        flight.publish(event)
                    yield event
        except BaseException as exc:
            error = exc if isinstance(exc, InferenceError) else ModelUnavailable("leader gone")
            raise
        finally:
            flight.finish(error)
            del self._flights[key]

    def _flight_key(self, turns: Sequence[Turn]) -> tuple[str, ...] | None:
        if len(turns) == 2 and turns[0].role == "system" and turns[1].role == "user":
            return (self.name, turns[0].content, turns[1].content)
        return None

    async def _generate(self, turns: Sequence[Turn]) -> AsyncGenerator[StreamEvent]:
        now = self._clock()
        candidates = [s for s in self._servers if s.available(now)]
        if not candidates:
            if all(s.missing_model for s in self._servers):
                raise ModelNotFound("no server has the model")
            raise ModelUnavailable("every model server is failing")
        last: InferenceError = ModelUnavailable("no server answered")
        for server in candidates:
            ticket = server.slots.join()
            try:
                async for position in ticket.wait():
                    yield Queued(position)
                async with aclosing(server.model.stream(turns)) as events:
                    try:
                        async with asyncio.timeout(self._first_token_timeout):
                            first = await anext(events)
                    except StopAsyncIteration:
                        return
                    except TimeoutError:
                        self._trip(server, "no first token in time")
                        last = ModelUnavailable("first token timed out")
                        continue
                    except (ModelUnavailable, ModelNotFound) as exc:
                        self._trip(
                            server, type(exc).__name__, missing_model=isinstance(exc, ModelNotFound)
                        )
                        last = exc
                        continue
                    server.failures = 0
                    yield first
                    async for event in events:
                        yield event
                    return
            finally:
                await asyncio.shield(ticket.release())
        raise last
