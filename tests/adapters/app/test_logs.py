"""Logs as an operator reads them: JSON with LOG_FORMAT=json, one request id on every line
about one message, and never a question's text or a secret at INFO."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from adapters.app import logs
from bot.telemetry import REQUEST_ID, request_scope
from tests.fakes.ollama import FakeOllama
from tests.fakes.slack import FakeSlack
from tests.support.harness import BOT_TOKEN, SIGNING_SECRET, SlackBotUnderTest, sign
from tests.support.processes import start_serve, stop
from tests.support.slack_payloads import BOT_ID, BOT_USER, CHANNEL, TEAM, mention

QUESTION = "how do I rotate the payroll database credentials quietly"

Configure = Callable[..., io.StringIO]


@pytest.fixture
def capture_logs() -> Iterator[Configure]:
    """`logs.configure` writing into a buffer; the logging set-up is restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    noisy = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}

    def configure(level: str = "INFO", fmt: str = "json") -> io.StringIO:
        buffer = io.StringIO()
        logs.configure(level, fmt, stream=buffer)
        return buffer

    yield configure
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in noisy.items():
        logging.getLogger(name).setLevel(old)


def json_lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


async def test_json_lines_carry_one_request_id_per_message(
    slack_bot: SlackBotUnderTest, capture_logs: Configure
) -> None:
    buffer = capture_logs("DEBUG", "json")
    await slack_bot.ollama.stop()  # the pool logs the failure: a second line about it
    await slack_bot.post_event(mention("first", "1700000000.000100"))
    await slack_bot.settle()
    await slack_bot.post_event(mention("second", "1700000000.000200"))
    await slack_bot.settle()

    records = json_lines(buffer)
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    answered = [r for r in records if str(r["message"]).startswith("answered slack message")]
    assert len(answered) == 2, records
    first, second = (str(r["request_id"]) for r in answered)
    assert first != second
    about_first = [r for r in records if r.get("request_id") == first]
    assert "bot.assistant" in {r["logger"] for r in about_first}, about_first
    # The pool's note about the dead server carries the request id when a request hit it
    # (the background health check may have noticed first: then it has none).
    skipped = [r for r in records if "skipped" in str(r["message"])]
    assert skipped
    assert all(r.get("request_id") in (None, first, second) for r in skipped)
    # Every line the core wrote while handling carries an id.
    assert all(r.get("request_id") for r in records if r["logger"] == "bot.assistant")


async def test_text_format_shows_the_request_id(
    slack_bot: SlackBotUnderTest, capture_logs: Configure
) -> None:
    buffer = capture_logs("INFO", "text")
    await slack_bot.post_event(mention("hello", "1700000000.000100"))
    await slack_bot.settle()
    lines = [line for line in buffer.getvalue().splitlines() if "answered slack message" in line]
    assert len(lines) == 1
    assert " INFO bot.assistant [req " in lines[0]
    assert "outcome=ok" in lines[0] and "route=local" in lines[0]


async def test_question_text_never_appears_at_info(
    slack_bot: SlackBotUnderTest, capture_logs: Configure
) -> None:
    buffer = capture_logs("INFO", "json")
    await slack_bot.post_event(mention(QUESTION, "1700000000.000100"))
    await slack_bot.settle()
    await slack_bot.ollama.stop()
    await slack_bot.post_event(mention(QUESTION + " again", "1700000000.000200"))
    await slack_bot.settle()
    output = buffer.getvalue()
    assert "answered slack message" in output  # the log was captured
    assert "payroll" not in output
    assert BOT_TOKEN not in output and SIGNING_SECRET not in output


def test_secrets_are_redacted_from_every_line(capture_logs: Configure) -> None:
    for fmt in ("json", "text"):
        buffer = capture_logs("INFO", fmt)
        log = logging.getLogger("some.library")
        log.warning("connecting to %s", "redis://:hunter2@redis:6379/0")
        log.info("token %s", BOT_TOKEN)
        try:
            raise ValueError(f"refused postgresql://bot:pg-pass@db/x with {BOT_TOKEN}")
        except ValueError:
            log.exception("failed")
        output = buffer.getvalue()
        assert "hunter2" not in output and "pg-pass" not in output
        assert BOT_TOKEN not in output
        assert "[REDACTED:" in output
        if fmt == "json":
            assert len(json_lines(buffer)) == 3


def test_request_scope_keeps_an_outer_id_and_resets_after(capture_logs: Configure) -> None:
    buffer = capture_logs("INFO", "json")
    log = logging.getLogger("bot.test")
    with request_scope() as outer:
        with request_scope() as inner:
            log.info("inside")
        assert inner == outer
    log.info("outside")
    assert REQUEST_ID.get() is None
    inside, outside = json_lines(buffer)
    assert inside["request_id"] == outer
    assert "request_id" not in outside


async def test_serve_with_log_format_json(
    tmp_path: Path, redis_url: str, fake_ollama: FakeOllama
) -> None:
    slack = FakeSlack(bot_token=BOT_TOKEN, team_id=TEAM, bot_user_id=BOT_USER, bot_id=BOT_ID)
    await slack.start()
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "OLLAMA_BASE_URL": fake_ollama.url,
        "REDIS_URL": redis_url,
        "DATABASE_URL": f"sqlite:///{tmp_path}/serve.db",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
    }
    url, proc = await start_serve(env, tmp_path)
    ts = "1700000000.000100"
    try:
        async with aiohttp.ClientSession() as http:
            raw = json.dumps(mention(QUESTION, ts))
            headers = {"Content-Type": "application/json", **sign(raw)}
            async with http.post(f"{url}/slack/events", data=raw, headers=headers) as r:
                assert r.status == 200
            await slack.wait_for(lambda f: bool(f.thread_text(CHANNEL, ts)), timeout=10)
        assert proc.stdout is not None
        seen = b""
        async with asyncio.timeout(20):  # the answered line follows the last Slack call
            while b"answered slack message" not in seen:
                line = await proc.stdout.readline()
                assert line, f"the process ended first: {seen.decode()}"
                seen += line
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        await stop(proc)
        await slack.stop()
    text = (seen + out).decode()
    records = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    answered = [r for r in records if str(r["message"]).startswith("answered slack message")]
    assert len(answered) == 1 and answered[0]["request_id"]
    assert any("listening on" in str(r["message"]) for r in records)
    assert "payroll" not in text and BOT_TOKEN not in text


def test_a_dependency_that_stays_down_is_logged_once_until_it_is_back(
    capture_logs: Configure,
) -> None:
    """The model pool's health check warns every 10 s while a server is down: the operator
    reads it once, and again only after the server was back in between."""
    buffer = capture_logs("INFO", "text")
    pool = logging.getLogger("inference.pool")
    try:
        for _ in range(3):
            pool.warning("model server %s skipped for %.0fs: %s", "http://a:11434", 30, "down")
        pool.warning("model server %s skipped for %.0fs: %s", "http://b:11434", 30, "down")
        pool.info("model server %s is back", "http://a:11434")
        pool.warning("model server %s skipped for %.0fs: %s", "http://a:11434", 30, "down")
    finally:
        pool.filters.clear()
    lines = buffer.getvalue().splitlines()
    assert sum("http://a:11434 skipped" in line for line in lines) == 2
    assert sum("http://b:11434 skipped" in line for line in lines) == 1
