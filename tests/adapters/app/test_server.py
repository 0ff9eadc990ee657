"""Operator-facing routes and processes: /healthz, /readyz, `chatbot serve`, `chatbot chat`,
`chatbot db upgrade`."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from adapters.app.server import build_web_app, migrate
from adapters.app.wiring import build_runtime
from adapters.console.chat import run_chat
from bot import database
from tests.fakes.ollama import FakeOllama
from tests.fakes.slack import FakeSlack
from tests.support.harness import BOT_TOKEN, SIGNING_SECRET, SlackBotUnderTest, bot_settings, sign
from tests.support.http import get_json
from tests.support.processes import CHATBOT, free_port, start_serve, stop
from tests.support.slack_payloads import BOT_ID, BOT_USER, CHANNEL, TEAM, mention


async def test_healthz_and_readyz_when_everything_is_up(slack_bot: SlackBotUnderTest) -> None:
    assert (await get_json(f"{slack_bot.url}/healthz"))[0] == 200
    status, body = await get_json(f"{slack_bot.url}/readyz")
    assert status == 200, body
    assert body["down"] == []


async def test_readyz_names_the_model_server_when_it_is_down(
    slack_bot: SlackBotUnderTest,
) -> None:
    await slack_bot.ollama.stop()
    status, body = await get_json(f"{slack_bot.url}/readyz")
    assert status == 503
    assert body["down"] == ["ollama"]
    assert (await get_json(f"{slack_bot.url}/healthz"))[0] == 200


async def test_readyz_is_unready_while_the_database_schema_is_behind(
    slack_bot: SlackBotUnderTest, database_url: str
) -> None:
    """A start-up migration that failed leaves the bot serving on old tables: /readyz says so
    (and what to run) until `chatbot db upgrade` brings them to this release's head."""
    await asyncio.to_thread(database.downgrade, database_url, "-1")
    status, body = await get_json(f"{slack_bot.url}/readyz")
    assert status == 503, body
    assert body["down"] == ["database"]
    assert "run `chatbot db upgrade`" in body["database"]
    await asyncio.to_thread(database.upgrade, database_url)
    status, body = await get_json(f"{slack_bot.url}/readyz")
    assert status == 200, body
    assert body["database"] == "ok"


async def test_readyz_names_redis_and_database_when_down(tmp_path: Path) -> None:
    async with FakeOllama() as ollama:
        settings = bot_settings(
            redis_url=f"redis://127.0.0.1:{free_port()}/0",
            database_url=f"sqlite:///{tmp_path}/missing-dir/x.db",
            ollama_base_url=ollama.url,
        )
        runtime = await build_runtime(settings)
        server = TestServer(build_web_app(runtime), host="127.0.0.1")
        await server.start_server()
        try:
            status, body = await get_json(str(server.make_url("/readyz")))
        finally:
            await server.close()
            await runtime.close()
    assert status == 503
    assert body["down"] == ["redis", "database"]


async def test_teams_route_refuses_when_teams_is_not_configured(
    slack_bot: SlackBotUnderTest,
) -> None:
    async with slack_bot.http.post(f"{slack_bot.url}/api/messages", json={"type": "message"}) as r:
        assert r.status == 401


async def test_without_redis_url_and_no_local_redis_memory_stays_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "adapters.app.settings.DEFAULT_REDIS_URL", f"redis://127.0.0.1:{free_port()}"
    )
    async with FakeOllama() as ollama:
        ollama.reply_fn = lambda messages: f"{len(messages)} messages"
        settings = bot_settings(
            database_url=f"sqlite:///{tmp_path}/c.db", ollama_base_url=ollama.url
        )
        await migrate(settings)
        runtime = await build_runtime(settings)
        assert runtime.memory == "local"
        stdin = io.StringIO("hello\nagain\n/reset\nfresh\n")
        stdout = io.StringIO()
        try:
            await run_chat(runtime.assistant, stdin=stdin, stdout=stdout)
        finally:
            await runtime.close()
    out = stdout.getvalue()
    # system+question, then system+2 history+question, then after /reset system+question.
    assert "2 messages" in out and "4 messages" in out and "Done" in out
    assert out.count("2 messages") == 2


async def test_chat_command_in_a_terminal_uses_redis_memory(tmp_path: Path, redis_url: str) -> None:
    async with FakeOllama() as ollama:
        ollama.reply_fn = lambda messages: f"seen {len(messages)}"
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "OLLAMA_BASE_URL": ollama.url,
            "DATABASE_URL": f"sqlite:///{tmp_path}/c.db",
        }
        for expected in ("seen 2", "seen 4"):  # two runs: memory survives the restart
            proc = await asyncio.create_subprocess_exec(
                CHATBOT,
                "chat",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=tmp_path,
            )
            out, err = await asyncio.wait_for(proc.communicate(b"hi there\n"), 30)
            assert proc.returncode == 0, err.decode()
            assert expected in out.decode()


def test_db_upgrade_command(tmp_path: Path) -> None:
    import subprocess

    url = f"sqlite:///{tmp_path}/up.db"
    result = subprocess.run(
        [CHATBOT, "db", "upgrade"],
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert database.current_revision(url) == database.head_revision()


@pytest.fixture
async def serve_process(
    tmp_path: Path, redis_url: str, fake_ollama: FakeOllama
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process, FakeSlack]]:
    fake = FakeSlack(bot_token=BOT_TOKEN, team_id=TEAM, bot_user_id=BOT_USER, bot_id=BOT_ID)
    await fake.start()
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake.api_url,
        "OLLAMA_BASE_URL": fake_ollama.url,
        "REDIS_URL": redis_url,
        "DATABASE_URL": f"sqlite:///{tmp_path}/serve.db",
    }
    url, proc = await start_serve(env, tmp_path)
    try:
        yield url, proc, fake
    finally:
        await stop(proc)
        await fake.stop()


async def test_serve_answers_a_mention_and_stops_cleanly_on_sigterm(
    serve_process: tuple[str, asyncio.subprocess.Process, FakeSlack],
) -> None:
    url, proc, fake = serve_process
    raw = json.dumps(mention("hello from a real process", "1700000000.000100"))
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{url}/slack/events",
            data=raw,
            headers={"Content-Type": "application/json", **sign(raw)},
        ) as r:
            assert r.status == 200
    # The answer streams in: wait for all of it, not the first part.
    await fake.wait_for(
        lambda f: f.thread_text(CHANNEL, "1700000000.000100") == "Hello **world**", timeout=10
    )
    proc.send_signal(signal.SIGTERM)
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, out.decode()
    assert "Traceback" not in out.decode()


@pytest.mark.parametrize("hang", ["blocking", "awaiting"])
async def test_a_process_whose_closing_hangs_still_stops(
    tmp_path: Path, fake_ollama: FakeOllama, hang: str
) -> None:
    """A connection that never closes (a dead server, a stuck thread) does not keep a bot
    asked to stop running until Docker kills it. Awaiting forever: after 10 s it stops
    without it (exit 0, said in the log). Blocking the process: after 15 s it prints every
    thread's stack, naming the stuck call, and exits with code 1."""
    inject = tmp_path / "inject"
    inject.mkdir()
    # Fault injection: the process's closing never ends.
    body = "    time.sleep(3600)" if hang == "blocking" else "    await asyncio.Event().wait()"
    (inject / "sitecustomize.py").write_text(
        "import asyncio, time\n"
        "import adapters.app.wiring\n"
        "async def closing_that_hangs(self):\n"
        f"{body}\n"
        "adapters.app.wiring.Runtime.close = closing_that_hangs\n"
    )
    env = {
        "PYTHONPATH": str(inject),
        "OLLAMA_BASE_URL": fake_ollama.url,
        "DATABASE_URL": f"sqlite:///{tmp_path}/h.db",
        "SHUTDOWN_GRACE_SECONDS": "0",
    }
    _, proc = await start_serve(env, tmp_path)
    try:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 40)
        if hang == "blocking":
            assert proc.returncode == 1, out.decode()
            assert "in closing_that_hangs" in out.decode()
        else:
            assert proc.returncode == 0, out.decode()
            assert "closing connections took over 10 s" in out.decode()
    finally:
        await stop(proc)


async def test_sigterm_lets_an_answer_in_flight_finish(
    serve_process: tuple[str, asyncio.subprocess.Process, FakeSlack], fake_ollama: FakeOllama
) -> None:
    url, proc, fake = serve_process
    fake_ollama.reply = "one two three four five six seven eight nine ten"
    fake_ollama.chunk_size, fake_ollama.token_delay = 4, 0.15  # about 2 s of streaming
    ts = "1500000000.000100"
    raw = json.dumps(mention("a long one please", ts))
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{url}/slack/events",
            data=raw,
            headers={"Content-Type": "application/json", **sign(raw)},
        ) as r:
            assert r.status == 200
    await fake.wait_for(lambda f: bool(f.thread_text(CHANNEL, ts)), timeout=10)
    proc.send_signal(signal.SIGTERM)
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, out.decode()
    assert fake.thread_text(CHANNEL, ts) == fake_ollama.reply
    assert not any(m.streaming for m in fake.messages(CHANNEL, ts))


async def test_an_answer_cut_off_past_the_shutdown_grace_says_so(
    tmp_path: Path, redis_url: str, fake_ollama: FakeOllama
) -> None:
    from adapters.slack.sink import CUT_OFF

    fake = FakeSlack(bot_token=BOT_TOKEN, team_id=TEAM, bot_user_id=BOT_USER, bot_id=BOT_ID)
    await fake.start()
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake.api_url,
        "OLLAMA_BASE_URL": fake_ollama.url,
        "REDIS_URL": redis_url,
        "DATABASE_URL": f"sqlite:///{tmp_path}/cut.db",
        "SHUTDOWN_GRACE_SECONDS": "1",
    }
    url, proc = await start_serve(env, tmp_path)
    try:
        fake_ollama.reply = "one two three four five six seven eight nine ten"
        fake_ollama.chunk_size, fake_ollama.token_delay = 4, 2.0  # far longer than the grace
        ts = "1500000000.000300"
        raw = json.dumps(mention("a very long one please", ts))
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{url}/slack/events",
                data=raw,
                headers={"Content-Type": "application/json", **sign(raw)},
            ) as r,
        ):
            assert r.status == 200
        await fake.wait_for(lambda f: bool(f.thread_text(CHANNEL, ts)), timeout=10)
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, out.decode()
        text = fake.thread_text(CHANNEL, ts)
        assert text.startswith("one ") and text.endswith(CUT_OFF.strip()), text
        assert fake_ollama.reply not in text  # it was cut off, not finished
        assert not any(m.streaming for m in fake.messages(CHANNEL, ts))  # the stream ended
    finally:
        await stop(proc)
        await fake.stop()
