"""`chatbot serve --workers 2`: an ingress process accepts on the port (and opens the one
Socket Mode connection) and queues the work; two answer workers take it from the Redis work
stream. SIGTERM stops the whole group after the answers in flight are finished; a process
that dies on its own stops the group."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from bot import keys
from bot.workqueue import GROUP
from tests.fakes.ollama import FakeOllama
from tests.fakes.slack import FakeSlack
from tests.support.harness import BOT_TOKEN, SIGNING_SECRET, sign
from tests.support.processes import free_port, start_redis_server, start_serve, stop
from tests.support.slack_payloads import BOT_ID, BOT_USER, CHANNEL, TEAM, mention


def children(pid: int) -> set[int]:
    """The processes ``pid`` started (Linux)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def answering(redis: Redis, *, busy: bool = True) -> set[int]:
    """The pids of the work-queue consumers (holding work right now unless not ``busy``)."""
    try:
        consumers = await redis.xinfo_consumers(keys.work_stream(), GROUP)
    except Exception:  # the group is not created yet
        return set()
    name = lambda c: c["name"].decode() if isinstance(c["name"], bytes) else c["name"]  # noqa: E731
    return {int(name(c).split(":")[1]) for c in consumers if c["pending"] or not busy}


async def until_delivered(redis: Redis, count: int, timeout: float = 20.0) -> None:
    """Wait until ``count`` entries were added to the work stream and all were given to a
    worker."""
    stream = keys.work_stream()
    for _ in range(int(timeout / 0.02)):
        try:
            info = await redis.xinfo_stream(stream)
            groups = await redis.xinfo_groups(stream)
        except Exception:  # the stream is not created yet
            info, groups = {}, []
        if (
            groups
            and info.get("entries-added", 0) >= count
            and groups[0]["last-delivered-id"] == info["last-generated-id"]
        ):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} work entries not all given to a worker within {timeout} s")


async def reading(redis: Redis) -> int:
    """How many connections to this Redis database last read the work stream (a consumer
    waits there on XREADGROUP ... BLOCK; Redis lists it among consumers only once it has
    been given an entry)."""
    db = int(redis.connection_pool.connection_kwargs.get("db", 0))
    clients = await redis.client_list()
    return sum(1 for c in clients if c.get("cmd") == "xreadgroup" and int(c.get("db", -1)) == db)


def listening(pids: set[int], url: str) -> set[int]:
    """Which of ``pids`` hold the socket listening on ``url``'s port (Linux)."""
    port = int(url.rsplit(":", 1)[1])
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":  # LISTEN
            inodes.add(f"socket:[{fields[9]}]")
    holders = set()
    for pid in pids:
        fds = Path(f"/proc/{pid}/fd")
        for fd in fds.iterdir():
            try:
                if os.readlink(fd) in inodes:
                    holders.add(pid)
            except FileNotFoundError:
                pass
    return holders


async def wait_gone(pids: set[int], timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if not any(alive(pid) for pid in pids):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"still running: {[pid for pid in pids if alive(pid)]}")


@pytest.fixture
def slack_env(
    tmp_path: Path, redis_url: str, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> dict[str, str]:
    """`chatbot serve` over HTTP against the fake Slack and Ollama, with Redis."""
    return {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake_slack.api_url,
        "OLLAMA_BASE_URL": fake_ollama.url,
        "REDIS_URL": redis_url,
        "DATABASE_URL": f"sqlite:///{tmp_path}/w.db",
    }


async def post_mention(http: aiohttp.ClientSession, url: str, text: str, ts: str) -> None:
    """A signed app_mention, as Slack sends it."""
    raw = json.dumps(mention(text, ts))
    headers = {"Content-Type": "application/json", **sign(raw)}
    async with http.post(f"{url}/slack/events", data=raw, headers=headers) as r:
        assert r.status == 200


async def test_the_ingress_accepts_the_answer_workers_answer_and_all_stop_together(
    tmp_path: Path,
    redis_client: Redis,
    fake_slack: FakeSlack,
    fake_ollama: FakeOllama,
    slack_env: dict[str, str],
) -> None:
    fake = fake_slack
    env = {**slack_env, "SHUTDOWN_GRACE_SECONDS": "20"}
    url, proc = await start_serve(env, tmp_path, workers=2)
    try:
        group = children(proc.pid)
        assert len(group) == 3  # the ingress process and two answer workers
        ingress = listening(group, url)
        assert len(ingress) == 1  # one process accepts; the answer workers closed the socket
        workers = group - ingress
        fake_ollama.reply = "one two three four five six seven eight"
        fake_ollama.chunk_size, fake_ollama.token_delay = 4, 0.3  # a few seconds each
        threads: list[str] = []
        seen: set[int] = set()
        async with aiohttp.ClientSession() as http:
            # One question at a time, each given to a worker before the next is asked: Redis
            # gives an entry to the worker that has waited longest, so the second worker
            # takes one while the first is answering (the first might take several queued
            # entries in one read).
            for i in range(8):
                ts = f"1500000000.0001{i:02d}"
                await post_mention(http, url, f"question {i}", ts)
                threads.append(ts)
                await until_delivered(redis_client, len(threads))
                seen |= await answering(redis_client)
                if seen >= workers:
                    break
        for _ in range(100):
            if seen >= workers:
                break
            seen |= await answering(redis_client)
            await asyncio.sleep(0.05)
        assert seen == workers  # both answer workers were answering at once
        assert await answering(redis_client, busy=False) == workers  # the ingress reads none
        proc.send_signal(signal.SIGTERM)  # while answers are still streaming
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, out.decode()
        assert "Traceback" not in out.decode()
        assert not any(alive(pid) for pid in group)
        for ts in threads:  # every answer in flight was finished before the group stopped
            assert fake.thread_text(CHANNEL, ts) == fake_ollama.reply
            assert not any(m.streaming for m in fake.messages(CHANNEL, ts))
    finally:
        await stop(proc)


@pytest.mark.parametrize("victim", ["ingress", "answer worker", "supervisor"])
async def test_a_process_killed_stops_the_whole_group(
    victim: str, tmp_path: Path, slack_env: dict[str, str]
) -> None:
    """systemd or Docker sees the bot exit (and restarts it whole); no process is left
    behind holding the port or the work, even when the supervisor itself is killed."""
    url, proc = await start_serve(slack_env, tmp_path, workers=2)
    try:
        group = children(proc.pid)
        ingress = listening(group, url)
        target = {
            "ingress": min(ingress),
            "answer worker": min(group - ingress),
            "supervisor": proc.pid,
        }[victim]
        os.kill(target, signal.SIGKILL)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        await wait_gone(group)
        if victim != "supervisor":
            assert proc.returncode == 1, out.decode()
            assert f"(pid {target}) exited (code -9): stopping the others" in out.decode()
    finally:
        await stop(proc)


async def test_with_redis_down_the_ingress_answers_itself(
    tmp_path: Path, fake_slack: FakeSlack, fake_ollama: FakeOllama, slack_env: dict[str, str]
) -> None:
    """Nothing can be queued for the answer workers: the process that accepted answers."""
    port = free_port()
    redis = start_redis_server(port, tmp_path)
    env = {**slack_env, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    try:
        url, proc = await start_serve(env, tmp_path, workers=2)
        try:
            redis.terminate()
            redis.wait(5)
            async with aiohttp.ClientSession() as http:
                await post_mention(http, url, "anyone?", "1500000000.000900")
            await fake_slack.wait_for(
                lambda f: fake_ollama.reply in f.thread_text(CHANNEL, "1500000000.000900"), 20
            )
            proc.send_signal(signal.SIGTERM)
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0, out.decode()
            assert "answering without crash safety" in out.decode()
        finally:
            await stop(proc)
    finally:
        if redis.poll() is None:
            redis.kill()


@pytest.mark.parametrize("argument", ["0", "two"])
async def test_workers_must_be_a_positive_number(argument: str, tmp_path: Path) -> None:
    from tests.support.processes import CHATBOT

    done = await asyncio.create_subprocess_exec(
        CHATBOT, "serve", "--workers", argument, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await done.communicate()
    assert done.returncode == 2
    assert "at least 1" in out.decode()


async def test_an_embedded_knowledge_store_runs_one_process(
    tmp_path: Path, redis_url: str, fake_ollama: FakeOllama
) -> None:
    """Qdrant's embedded store opens in one process: every answer needs it, so `--workers 2`
    with one runs one process (and says why) instead of workers that cannot search."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nText.\n")
    env = {
        "OLLAMA_BASE_URL": fake_ollama.url,
        "REDIS_URL": redis_url,
        "DATABASE_URL": f"sqlite:///{tmp_path}/w.db",
        "KNOWLEDGE_SOURCES": str(docs),
        "KNOWLEDGE_STORE": str(tmp_path / "store"),
        "KNOWLEDGE_REFRESH_MINUTES": "0",
    }
    url, proc = await start_serve(env, tmp_path, workers=2)
    try:
        assert children(proc.pid) == set()  # no workers forked: it answers itself
        async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as r:
            assert r.status == 200
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, out.decode()
        assert "embedded knowledge store" in out.decode() and "running one" in out.decode()
    finally:
        await stop(proc)


async def test_the_ingress_opens_the_one_socket_mode_connection_and_workers_answer(
    tmp_path: Path, redis_url: str, redis_client: Redis, fake_ollama: FakeOllama
) -> None:
    app_token = "xapp-1-A123ABC456-1234567890-abcdef"
    fake = FakeSlack(
        bot_token=BOT_TOKEN, team_id=TEAM, bot_user_id=BOT_USER, bot_id=BOT_ID, app_token=app_token
    )
    await fake.start()
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_APP_TOKEN": app_token,
        "SLACK_SIGNING_SECRET": "",
        "SLACK_API_URL": fake.api_url,
        "OLLAMA_BASE_URL": fake_ollama.url,
        "REDIS_URL": redis_url,
        "DATABASE_URL": f"sqlite:///{tmp_path}/s.db",
    }
    _, proc = await start_serve(env, tmp_path, wait=False, workers=2)
    try:
        for _ in range(400):
            if len([s for s in fake.sockets if not s.closed]) == 1:
                break
            await asyncio.sleep(0.05)
        for _ in range(400):  # the answer workers are built: both wait on the work stream
            if await reading(redis_client) == 2:
                break
            await asyncio.sleep(0.05)
        assert await reading(redis_client) == 2
        assert len(fake.sockets) == 1  # the ingress process's; the answer workers open none
        assert len(fake.calls_to("apps.connections.open")) == 1
        threads = ["1500000000.000100", "1500000000.000200"]
        for ts in threads:
            ack = await fake.send_envelope("events_api", mention(f"via {ts}", ts), timeout=20)
            assert "envelope_id" in ack
        await fake.wait_for(
            lambda f: all(f.thread_text(CHANNEL, ts) == "Hello **world**" for ts in threads), 15
        )
        assert len(fake.calls_to("apps.connections.open")) == 1  # still only the ingress's
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, out.decode()
        assert "Traceback" not in out.decode()
    finally:
        await stop(proc)
        await fake.stop()


async def test_every_scrape_counts_the_answers_of_every_worker(
    tmp_path: Path, fake_slack: FakeSlack, fake_ollama: FakeOllama, slack_env: dict[str, str]
) -> None:
    """The ingress process answers every scrape of /metrics with the sums over the answer
    workers, and their model pool's gauges."""
    fake = fake_slack
    url, proc = await start_serve(slack_env, tmp_path, workers=2, output=False)
    threads = [f"1500000000.0002{i:02d}" for i in range(6)]

    def total(text: str, name: str, match: str = "") -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and match in line
        )

    try:
        async with aiohttp.ClientSession() as http:
            for i, ts in enumerate(threads):
                await post_mention(http, url, f"question {i}", ts)
            await fake.wait_for(lambda f: all(f.thread_text(CHANNEL, ts) for ts in threads), 15)
            for _ in range(100):  # counted once the answer is complete
                async with http.get(f"{url}/metrics") as r:
                    text = await r.text()
                counted = (
                    total(text, "chatbot_requests_total{", 'outcome="ok"'),
                    total(text, "chatbot_answer_latency_seconds_count"),
                )
                if counted == (len(threads), len(threads)):
                    break
                await asyncio.sleep(0.05)
            assert total(text, "chatbot_requests_total{", 'outcome="ok"') == len(threads)
            assert total(text, "chatbot_answer_latency_seconds_count") == len(threads)
            assert total(text, "chatbot_queue_depth ") == 0
            assert total(text, "chatbot_backend_up{", fake_ollama.url) == 1
    finally:
        await stop(proc)
