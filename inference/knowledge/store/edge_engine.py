"""The Qdrant Edge engine under the embedded store: the directory taken (one process),
the shards opened, and every Edge call run in one small executor of the store's own, never
on the event loop; closing waits for the calls in flight (a bounded while), then closes the
shards and releases the directory."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import qdrant_edge as q

from inference.knowledge import KnowledgeUnavailable
from inference.knowledge.store.layout import Layout
from inference.knowledge.store.records import DENSE, SPARSE, CollectionGone, unavailable

T = TypeVar("T")
WORKERS = 2  # a query waits in the other thread while an index run writes
CLOSE_WAIT_SECONDS = 5.0  # closing waits this long at most for the calls in flight
# The index is built in steps: once this many points have been written since the last
# build (during a run, not only at its end), they get a segment and an HNSW graph of
# their own. A step costs bounded memory and time (the process stands still meanwhile:
# Edge holds the GIL for the whole call), and segments stay about this size: they are
# not merged into one big graph, whose build at the end of a run held 750 MB at 40,000
# points of 768 dimensions and blocked the process for 40 s or more.
BUILD_EVERY = 8_000
SEGMENT_MARGIN = 1.2  # a segment may exceed BUILD_EVERY points by this much (in size)
# A build over at least this many points is followed by reopening the shard: the pages
# the build wrote are left to the page cache, no longer mapped into this process.
REOPEN_AFTER = 1_000
# Once indexed, the dense vectors are also kept as int8 (4 times smaller, memory-mapped
# like the float32 originals): the graph is built and searched on them, the candidates
# rescored on the float32 vectors (see ``edge.RESCORED``). The build costs about a
# quarter of the CPU it did on float32.
QUANTIZATION = q.ScalarQuantizationConfig(type=q.ScalarType.Int8, quantile=0.99, always_ram=False)


def shard_config(dimension: int) -> q.EdgeConfig:
    """The configuration of a shard of vectors of ``dimension`` (applied to older shards
    when they are loaded)."""
    return q.EdgeConfig(
        # Dense vectors memory-mapped: the page cache holds what queries touch.
        vectors={
            DENSE: q.EdgeVectorParams(size=dimension, distance=q.Distance.Cosine, on_disk=True)
        },
        sparse_vectors={SPARSE: q.EdgeSparseVectorParams(modifier=q.Modifier.Idf)},
        on_disk_payload=True,
        quantization_config=QUANTIZATION,
        optimizers=q.EdgeOptimizersConfig(
            max_segment_size=int(BUILD_EVERY * dimension * 4 * SEGMENT_MARGIN) // 1024  # KB
        ),
    )


class EdgeEngine:
    """Qdrant Edge shards in one directory, their calls run in the store's executor."""

    local = True

    def __init__(self, *, location: str) -> None:
        """Configure; ``open()`` takes the directory (off the event loop)."""
        self.location = location
        self.layout = Layout(Path(location))
        self.old_format = False  # set on open: the directory holds the old format's index
        self._executor: ThreadPoolExecutor | None = None
        self._lock_fd: int | None = None
        self._shards: dict[str, q.EdgeShard] = {}
        self._unbuilt: dict[str, int] = {}  # points written since a shard's last build
        self._shards_lock = threading.Lock()
        # Edge holds the GIL for the whole of each call (qdrant-edge-py 0.9.0), so its calls
        # never overlap anyway; taking them one at a time also lets a shard be closed and
        # reopened between two calls (see ``EdgeStore``) with no other call holding it.
        self._one_call = threading.RLock()
        self._pending: set[Future[Any]] = set()
        self._opening = asyncio.Lock()
        self._closing = False

    @property
    def status_file(self) -> Path:
        """The statuses, readable while another process holds the store."""
        return self.layout.status_file

    def describe(self) -> str:
        """Where the store is, for messages."""
        return f"embedded store {self.location}"

    # -- running Edge's calls -------------------------------------------------------------

    def _engine(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in the executor's thread: the one place Edge's errors are caught."""
        try:
            with self._one_call:
                return fn(*args)
        except KnowledgeUnavailable:
            raise
        except OSError as exc:  # the directory's files
            raise unavailable(self.describe(), exc) from exc
        except Exception as exc:
            # qdrant-edge-py raises plain ``Exception`` for every engine error (it has no
            # type of its own): only that exact type is the engine's; a subclass (TypeError,
            # KeyError...) is a bug here and goes on as one.
            if type(exc) is not Exception:
                raise
            raise unavailable(self.describe(), exc) from exc

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        await self.open()
        if self._closing or self._executor is None:
            raise KnowledgeUnavailable(f"{self.describe()}: closed")
        future = self._executor.submit(self._engine, fn, *args)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        return await asyncio.wrap_future(future)

    async def open(self) -> None:
        """Take the directory (raises ``StoreLocked`` when another process holds it)."""
        if self._executor is not None:
            return
        async with self._opening:
            if self._executor is not None:
                return
            if self._closing:
                raise KnowledgeUnavailable(f"{self.describe()}: closed")
            executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="qdrant-edge")
            try:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(executor, self._engine, self._open)
            except BaseException:
                executor.shutdown(wait=False)
                raise
            self._executor = executor

    def _open(self) -> None:
        try:
            self._lock_fd = self.layout.lock()
        except OSError as exc:
            raise KnowledgeUnavailable(
                f"cannot open the embedded store {self.location}: {exc}"
            ) from exc
        self.old_format = self.layout.old_format() and not self.layout.names()

    async def aclose(self) -> None:
        """Wait (a bounded while) for the calls in flight, close the shards, release the
        directory. Never hangs; every later call raises ``KnowledgeUnavailable``."""
        if self._executor is None or self._closing:
            self._closing = True
            return
        self._closing = True
        try:
            pending = [asyncio.wrap_future(f) for f in list(self._pending)]
            if pending:
                await asyncio.wait(pending, timeout=CLOSE_WAIT_SECONDS)
            closing = asyncio.ensure_future(asyncio.to_thread(self._close))
            await asyncio.wait([closing], timeout=CLOSE_WAIT_SECONDS)
        finally:
            executor, self._executor = self._executor, None
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)

    def _close(self) -> None:
        with self._shards_lock:
            shards, self._shards = list(self._shards.values()), {}
        for shard in shards:
            try:
                self._engine(shard.close)
            except KnowledgeUnavailable:
                pass  # closing: nothing more to do with it
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            self.layout.unlock(fd)

    def _shard(self, name: str) -> q.EdgeShard:
        """The open shard ``name`` (loaded on first use); ``CollectionGone`` if it is not.

        It is loaded with today's configuration (``shard_config``): a shard made by an
        earlier version takes it on (Edge checks that it is compatible and records it),
        and its segments are rebuilt to match at its next index build, from the vectors
        it holds (nothing is embedded again)."""
        with self._shards_lock:
            shard = self._shards.get(name)
            if shard is None:
                found = self.layout.described(name)
                if found is None:
                    raise CollectionGone(f"{self.describe()}: no index {name}")
                config = shard_config(found.dimension) if found.dimension else None
                shard = q.EdgeShard.load(str(self.layout.shard(name)), config)
                self._shards[name] = shard
            return shard

    def _wrote(self, name: str, points: int) -> None:
        """Count points written to ``name``; build its index when enough are new."""
        self._unbuilt[name] = self._unbuilt.get(name, 0) + points
        if self._unbuilt[name] >= BUILD_EVERY:
            self._build(name)

    def _build(self, name: str) -> None:
        """Build the indexes of the points written since the last build (``optimize()``:
        a no-op when few are new), then reopen the shard if that was many."""
        self._shard(name).optimize()
        if self._unbuilt.pop(name, 0) >= REOPEN_AFTER:
            self._reopen(name)

    def _reopen(self, name: str) -> None:
        """Close the shard ``name`` (loaded again at its next use): the pages of its files
        that an index build touched are left to the page cache, no longer mapped into
        this process (its RSS)."""
        with self._shards_lock:
            shard = self._shards.pop(name, None)
        if shard is not None:
            shard.close()

    async def ping(self) -> float:
        """Seconds one call to the store takes."""
        started = time.perf_counter()
        await self._run(self.layout.active_name)
        return time.perf_counter() - started
