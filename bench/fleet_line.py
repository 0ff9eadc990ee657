"""One line per model server across the fleet, measured at the server: 2 replicas x 2 answer
workers (four processes' model pools, each with its own Redis connection, as the fleet has)
ask a fake Ollama 16 questions at once with OLLAMA_MAX_CONCURRENCY=2. Prints the most
generations the server ran at once (the limit holds: 2, where per-process limits would let
8 through), the places in line the askers were shown, and the time to answer them all.
Run: `.venv/bin/python -m bench.fleet_line`.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from redis.asyncio import Redis

from bot.model_line import RedisModelLine
from inference.base import Queued, Turn
from inference.ollama import OllamaChatModel
from inference.pool import FifoSlots, ModelPool
from tests.fakes.ollama import FakeOllama
from tests.support.processes import free_port, start_redis_server

LIMIT, PROCESSES, QUESTIONS = 2, 4, 16


async def fleet(redis_url: str) -> str:
    ollama = FakeOllama(["codellama:7b"])
    await ollama.start()
    ollama.reply, ollama.chunk_size, ollama.token_delay = "x " * 40, 8, 0.05
    clients = [Redis.from_url(redis_url) for _ in range(PROCESSES)]
    models = [
        OllamaChatModel(base_url=ollama.url, model="codellama:7b", num_ctx=4096)
        for _ in range(PROCESSES)
    ]
    pools = [
        ModelPool(
            servers=[model],
            max_concurrency=LIMIT,
            line=lambda server, client=client: RedisModelLine(
                redis=client,
                server=server.base_url,
                limit=LIMIT,
                max_waiting=100,
                fallback=FifoSlots(limit=1, max_waiting=100),
            ),
        )
        for client, model in zip(clients, models, strict=True)
    ]
    places: list[int] = []

    async def ask(i: int) -> None:
        turns = [Turn("system", "s"), Turn("user", f"q{i}"), Turn("assistant", "a")]
        turns.append(Turn("user", f"again {i}"))  # history: no shared generation
        async for event in pools[i % PROCESSES].stream(turns):
            if isinstance(event, Queued):
                places.append(event.position)

    started = time.monotonic()
    try:
        await asyncio.gather(*(ask(i) for i in range(QUESTIONS)))
    finally:
        for client, model in zip(clients, models, strict=True):
            await client.aclose()
            await model.aclose()
        await ollama.stop()
    took = time.monotonic() - started
    return (
        f"{QUESTIONS} questions from {PROCESSES} processes, limit {LIMIT}: at most "
        f"{ollama.most_generating} at once at the server; places shown "
        f"{sorted(set(places))[:3]}..{max(places, default=0)}; all answered in {took:.1f} s"
    )


async def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="chatbot-bench-fleet-"))
    port = free_port()
    server = start_redis_server(port, workdir)
    try:
        print(f"fleet line: {await fleet(f'redis://127.0.0.1:{port}/0')}")
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
