"""Shared fixtures: a real Redis (started if needed), real databases, fake outside services."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis as sync_redis
from redis.asyncio import Redis

from tests.support.processes import free_port, start_redis_server

pytest_plugins = ["tests.support.fixtures_db", "tests.support.harness", "tests.support.teams"]


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C reaches the commands the tests start. A shell script that starts the tests as
    a background job (`make test &`, a CI runner's wrapper) hands them SIGINT ignored, and
    an ignored signal stays ignored across exec: every `chatbot` started from here would
    ignore the tests' Ctrl-C (and Python installs no KeyboardInterrupt where it is
    ignored). Caught here, it is back to its default in each command started."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# Redis databases a test run may take (0 is left to the bot run by hand).
_TEST_REDIS_DBS = range(1, 16)
_CLAIM_KEY = "chatbot-tests:claimed-by"
_CLAIM_TTL_SECONDS = 3 * 3600


def _answers(url: str) -> bool:
    try:
        return bool(sync_redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:
        return False


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server URL: the local one, else a throwaway redis-server, else (never in CI)
    fakeredis's TCP server."""
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
    if _answers(url):
        yield url
        return
    binary = shutil.which("redis-server")
    if binary:
        port = free_port()
        proc = start_redis_server(port, tmp_path_factory.mktemp("redis"))
        url = f"redis://127.0.0.1:{port}"
        try:
            yield url
        finally:
            proc.terminate()
            proc.wait(5)
        return
    if os.environ.get("CI") == "true":
        pytest.fail("No Redis answers and redis-server is not installed: CI needs a real Redis.")
    import fakeredis

    print(
        "\n!!! NO REDIS FOUND: running against fakeredis. "
        "Install redis-server for real tests. !!!\n",
        file=sys.stderr,
    )
    port = free_port()
    server = fakeredis.TcpFakeServer(("127.0.0.1", port), server_type="redis")
    import threading

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{port}"
    server.shutdown()


@pytest.fixture(scope="session")
def redis_test_db(redis_server: str) -> Iterator[int]:
    """A Redis database number this test run holds alone: two runs on one machine (two
    checkouts, a developer and CI) never flush each other's keys. Taken with SET NX on a
    claim key in the database; a crashed run's claim expires."""
    owner = f"{os.getpid()}:{uuid.uuid4().hex}"
    for db in _TEST_REDIS_DBS:
        client = sync_redis.Redis.from_url(f"{redis_server}/{db}")
        try:
            if client.set(_CLAIM_KEY, owner, nx=True, ex=_CLAIM_TTL_SECONDS):
                try:
                    yield db
                finally:
                    if client.get(_CLAIM_KEY) == owner.encode():
                        client.delete(_CLAIM_KEY)
                return
        finally:
            client.close()
    pytest.fail("Every Redis test database (1-15) is held by another test run.")


@pytest.fixture
def redis_url(redis_server: str, redis_test_db: int) -> Iterator[str]:
    """An empty Redis database for one test (the run's own database)."""
    url = f"{redis_server}/{redis_test_db}"
    client = sync_redis.Redis.from_url(url)
    _empty(client)
    yield url
    _empty(client)
    client.close()


def _empty(client: sync_redis.Redis) -> None:
    """Delete every key but the run's claim on the database."""
    claim = client.get(_CLAIM_KEY)
    client.flushdb()
    if claim is not None:
        client.set(_CLAIM_KEY, claim, ex=_CLAIM_TTL_SECONDS)


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    """An async client on the test database."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


HUNG_TEST_SECONDS = 180.0  # the slowest test takes about 40 s


@pytest.fixture(autouse=True)
async def _cancel_a_hung_test() -> AsyncIterator[None]:
    """A test still running after HUNG_TEST_SECONDS is cancelled, with every task of its
    event loop: it fails showing what it was waiting for (its traceback, and the other
    tasks' stacks on stderr) instead of hanging CI until its time runs out."""
    loop = asyncio.get_running_loop()

    def cancel_everything() -> None:
        for task in asyncio.all_tasks(loop):
            task.print_stack(file=sys.stderr)
            task.cancel(f"the test was still running after {HUNG_TEST_SECONDS:.0f} s")

    timer = threading.Timer(HUNG_TEST_SECONDS, loop.call_soon_threadsafe, (cancel_everything,))
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()


@pytest.fixture(autouse=True)
async def _close_model_clients(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """Close the connection pool of every Ollama client a test built (the runtime closes its
    own; tests that build clients directly need not remember to)."""
    from inference.ollama import OllamaChatModel

    created: list[OllamaChatModel] = []
    original = OllamaChatModel.__init__

    def recording_init(self: OllamaChatModel, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        created.append(self)

    monkeypatch.setattr(OllamaChatModel, "__init__", recording_init)
    yield
    for model in created:
        await model.aclose()
