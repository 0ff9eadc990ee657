"""Socket Mode: with SLACK_APP_TOKEN set, `chatbot serve` takes events over Slack's WebSocket
(a fake Socket Mode server) instead of the HTTP route."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.ollama import FakeOllama
from tests.fakes.slack import FakeSlack
from tests.support.harness import BOT_TOKEN
from tests.support.processes import free_port, start_serve, stop
from tests.support.slack_payloads import BOT_ID, BOT_USER, CHANNEL, TEAM, mention, slash

APP_TOKEN = "xapp-1-A123ABC456-1234567890-abcdef"


async def test_socket_mode_answers_events_and_slash_commands(
    tmp_path: Path, redis_url: str, fake_ollama: FakeOllama
) -> None:
    fake = FakeSlack(
        bot_token=BOT_TOKEN, team_id=TEAM, bot_user_id=BOT_USER, bot_id=BOT_ID, app_token=APP_TOKEN
    )
    await fake.start()
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_APP_TOKEN": APP_TOKEN,
        "SLACK_SIGNING_SECRET": "",  # Socket Mode needs none: the HTTP route refuses all
        "SLACK_API_URL": fake.api_url,
        "OLLAMA_BASE_URL": fake_ollama.url,
        "REDIS_URL": redis_url,
        "DATABASE_URL": f"sqlite:///{tmp_path}/s.db",
    }
    url, proc = await start_serve(env, tmp_path, wait=False)
    try:
        ts = "1500000000.000100"
        ack = await fake.send_envelope("events_api", mention("over the socket", ts), timeout=20)
        assert "envelope_id" in ack
        await fake.wait_for(lambda f: f.thread_text(CHANNEL, ts) == "Hello **world**", timeout=10)
        ack = await fake.send_envelope(
            "slash_commands", slash("/help", "", response_url=fake.response_url())
        )
        await fake.wait_for(lambda f: bool(f.responses), timeout=10)
        assert "/search" in fake.responses[-1]["text"]
        # Without a signing secret the HTTP route accepts nothing.
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{url}/slack/events", json={"type": "event_callback"}) as resp,
        ):
            assert resp.status == 401
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0, out.decode()
        assert "Socket Mode connected" in out.decode()
    finally:
        await stop(proc)
        await fake.stop()


async def _lines_until(proc: asyncio.subprocess.Process, marker: str, timeout: float) -> str:
    assert proc.stdout is not None
    seen = ""
    async with asyncio.timeout(timeout):
        while marker not in seen:
            line = await proc.stdout.readline()
            assert line, f"the process ended before {marker!r}: {seen}"
            seen += line.decode()
    return seen


@pytest.mark.parametrize("reachable", [True, False], ids=["refused", "unreachable"])
async def test_socket_mode_that_cannot_connect_says_why_once_and_stops_cleanly(
    tmp_path: Path, redis_url: str, fake_ollama: FakeOllama, reachable: bool
) -> None:
    fake = FakeSlack(
        bot_token=BOT_TOKEN, team_id=TEAM, bot_user_id=BOT_USER, bot_id=BOT_ID, app_token=APP_TOKEN
    )
    await fake.start()
    api_url = fake.api_url if reachable else f"http://127.0.0.1:{free_port()}/api/"
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_APP_TOKEN": "xapp-1-A123ABC456-1234567890-revoked",
        "SLACK_API_URL": api_url,
        "OLLAMA_BASE_URL": fake_ollama.url,
        "REDIS_URL": redis_url,
        "DATABASE_URL": f"sqlite:///{tmp_path}/s.db",
        "LOG_LEVEL": "DEBUG",  # each retry's line shows when it happened
    }
    url, proc = await start_serve(env, tmp_path)
    try:
        expected = "invalid_auth" if reachable else "cannot reach Slack"
        seen = await _lines_until(proc, expected, 20)
        assert ("SLACK_APP_TOKEN" if reachable else "SLACK_API_URL") in seen
        async with aiohttp.ClientSession() as http, http.get(f"{url}/readyz") as resp:
            assert resp.status == 503
            assert "slack" in (await resp.json())["down"]
        # Two more attempts failed the same way (their DEBUG lines), said no more at ERROR.
        seen += await _lines_until(proc, "still not connected", 20)
        seen += await _lines_until(proc, "still not connected", 20)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        rest, _ = await asyncio.wait_for(proc.communicate(), 20)
        out = seen + rest.decode()
        assert proc.returncode == 0, out
        assert "Traceback" not in out and "KeyboardInterrupt" not in out
        assert "Unclosed" not in out
        assert out.count("Slack is not connected") == 1, out
    finally:
        await stop(proc)
        await fake.stop()
