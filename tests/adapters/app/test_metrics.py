"""`GET /metrics`: what an operator's Prometheus sees after real traffic through the bot."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.app.metrics import Metrics
from bot.usage import UsageRecord
from inference.urls import public_url
from tests.support.harness import SlackBotUnderTest
from tests.support.slack_payloads import BOT_USER, channel_message, mention

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def bot_overrides() -> dict[str, Any]:
    return {"rate_limit_per_minute": 3}


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(bot: SlackBotUnderTest) -> Samples:
    async with bot.http.get(f"{bot.url}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return parse(await resp.text())


async def ask(bot: SlackBotUnderTest, text: str, ts: str) -> None:
    await bot.post_event(mention(text, ts))
    await bot.settle()


async def test_answered_mentions_show_in_requests_latency_and_tokens(
    slack_bot: SlackBotUnderTest,
) -> None:
    before = await scrape(slack_bot)
    assert (
        value(before, "chatbot_requests_total", platform="slack", route="local", outcome="ok")
        is None
    )
    assert value(before, "chatbot_reclaimed_work_total") == 0

    for i in range(3):
        await ask(slack_bot, f"question {i}", f"1700000000.00010{i}")

    samples = await scrape(slack_bot)
    local = {"platform": "slack", "route": "local"}
    assert value(samples, "chatbot_requests_total", **local, outcome="ok") == 3
    assert value(samples, "chatbot_answer_latency_seconds_count", **local) == 3
    assert value(samples, "chatbot_time_to_first_token_seconds_count", **local) == 3
    assert value(samples, "chatbot_answer_latency_seconds_bucket", **local, le="+Inf") == 3
    # The fake Ollama counts characters // 4 as prompt tokens and one token per chunk.
    prompt = sum(
        sum(len(m["content"]) for m in request["messages"]) // 4
        for request in slack_bot.ollama.requests
    )
    model = {"route": "local", "model": "codellama:7b"}
    assert value(samples, "chatbot_prompt_tokens_total", **model) == prompt
    assert value(samples, "chatbot_completion_tokens_total", **model) == 3 * 2
    assert value(samples, "chatbot_queue_depth") == 0
    assert value(samples, "chatbot_backend_up", url=slack_bot.ollama.url) == 1
    assert value(samples, "chatbot_reclaimed_work_total") == 0
    assert value(samples, "chatbot_dedupe_hits_total", platform="slack") is None


async def test_duplicates_refusals_and_commands_are_counted(slack_bot: SlackBotUnderTest) -> None:
    root = "1700000000.000100"
    body = mention("q0", root)
    # Slack sends a mention as app_mention and as message, and redelivers it.
    await asyncio.gather(
        slack_bot.post_event(body),
        slack_bot.post_event(channel_message(f"<@{BOT_USER}> q0", root)),
        slack_bot.post_event(body, retry_num=1),
    )
    await slack_bot.settle()
    for i in range(1, 4):  # the limit is 3 a minute: the third follow-up is refused
        await slack_bot.post_event(channel_message(f"q{i}", f"1700000000.00020{i}", thread_ts=root))
        await slack_bot.settle()
    await slack_bot.post_event(channel_message("/help", "1700000000.000300", thread_ts=root))
    await slack_bot.settle()
    assert len(slack_bot.ollama.requests) == 3, [
        r["messages"][-1] for r in slack_bot.ollama.requests
    ]

    samples = await scrape(slack_bot)
    assert value(samples, "chatbot_dedupe_hits_total", platform="slack") == 2
    assert value(samples, "chatbot_rate_limited_total", platform="slack") == 1
    requests = {
        dict(labels)["outcome"] + "/" + dict(labels)["route"]: count
        for (name, labels), count in samples.items()
        if name == "chatbot_requests_total"
    }
    assert requests == {"ok/local": 3, "refused/none": 1, "ok/command": 1}


async def test_backend_health_follows_the_model_server(slack_bot: SlackBotUnderTest) -> None:
    await slack_bot.ollama.stop()
    await slack_bot.runtime.pool.check_health()
    samples = await scrape(slack_bot)
    assert value(samples, "chatbot_backend_up", url=slack_bot.ollama.url) == 0
    await slack_bot.ollama.start()
    await slack_bot.runtime.pool.check_health()
    samples = await scrape(slack_bot)
    assert value(samples, "chatbot_backend_up", url=slack_bot.ollama.url) == 1


async def test_a_failed_answer_is_counted_with_its_outcome(slack_bot: SlackBotUnderTest) -> None:
    await slack_bot.ollama.stop()
    await ask(slack_bot, "anyone there?", "1700000000.000100")
    samples = await scrape(slack_bot)
    assert (
        value(
            samples,
            "chatbot_requests_total",
            platform="slack",
            route="local",
            outcome="model_unavailable",
        )
        == 1
    )
    # No text arrived: no time to first token.
    assert (
        value(samples, "chatbot_time_to_first_token_seconds_count", platform="slack", route="local")
        is None
    )


def record(**changes: Any) -> UsageRecord:
    fields: dict[str, Any] = {
        "platform": "teams",
        "workspace": "tenant",
        "user": "u",
        "conversation": "c",
        "route": "premium",
        "model": "gpt-4.1",
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "latency_ms": 1500,
        "first_token_ms": 400,
        "outcome": "ok",
        "created_at": datetime.now(UTC),
        "cost_usd": 0.00036,
    }
    return UsageRecord(**(fields | changes))


def test_each_runtime_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.usage(record())
    first.usage(record(first_token_ms=None, outcome="model_unavailable", cost_usd=0.0))
    second.event("dedupe_hit", "teams")
    second.event("reclaimed", "teams")
    one, two = parse(first.render().decode()), parse(second.render().decode())
    premium = {"platform": "teams", "route": "premium"}
    assert value(one, "chatbot_requests_total", **premium, outcome="ok") == 1
    assert value(one, "chatbot_requests_total", **premium, outcome="model_unavailable") == 1
    assert value(one, "chatbot_answer_latency_seconds_count", **premium) == 2
    assert value(one, "chatbot_answer_latency_seconds_bucket", **premium, le="1.0") == 0
    assert value(one, "chatbot_answer_latency_seconds_bucket", **premium, le="2.0") == 2
    assert value(one, "chatbot_time_to_first_token_seconds_count", **premium) == 1
    assert value(one, "chatbot_premium_cost_usd_total", model="gpt-4.1") == pytest.approx(0.00036)
    assert value(one, "chatbot_dedupe_hits_total", platform="teams") is None
    assert value(two, "chatbot_dedupe_hits_total", platform="teams") == 1
    assert value(two, "chatbot_requests_total", **premium, outcome="ok") is None
    assert value(one, "chatbot_reclaimed_work_total") == 0
    assert value(two, "chatbot_reclaimed_work_total") == 1


def test_backend_urls_lose_their_credentials() -> None:
    assert public_url("http://admin:pw@gpu:11434") == "http://gpu:11434"
    assert public_url("redis://:pw@redis:6379/0") == "redis://redis:6379/0"
    assert public_url("http://gpu:11434") == "http://gpu:11434"
    # Query parameters named like secrets, in a URL alone or in a message.
    assert (
        public_url("https://wiki/export?page=2&api_key=abc&q=monkey")
        == "https://wiki/export?page=2&api_key=REDACTED&q=monkey"
    )
    assert (
        public_url("cannot fetch https://s3/x?X-Amz-Signature=f00d: timed out")
        == "cannot fetch https://s3/x?X-Amz-Signature=REDACTED: timed out"
    )
    assert public_url("the ?token= parameter") == "the ?token= parameter"  # not a URL


def test_retrieval_latency_is_a_histogram() -> None:
    metrics = Metrics()
    metrics.usage(record(retrieval_ms=12, passages=3))
    metrics.usage(record())  # no knowledge configured: not observed
    samples = parse(metrics.render().decode())
    assert value(samples, "chatbot_retrieval_latency_seconds_count", platform="teams") == 1
    assert (
        value(samples, "chatbot_retrieval_latency_seconds_bucket", platform="teams", le="0.01") == 0
    )
    assert (
        value(samples, "chatbot_retrieval_latency_seconds_bucket", platform="teams", le="0.025")
        == 1
    )
