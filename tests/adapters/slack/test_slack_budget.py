"""Slack's rate limits shared by every answer in a workspace: against a fake Slack that
enforces the published tiers (429 with Retry-After), answers streaming at once all arrive
whole, once and in order, soon after the model has finished."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.fakes.ollama import FakeOllama
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_tiers import SlackTiers
from tests.support.harness import SlackBotUnderTest
from tests.support.slack_payloads import CHANNEL, mention

WORDS = " ".join(f"w{i}" for i in range(150))  # 150 tokens; any loss or repeat shows


@pytest.fixture
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite only: the database plays no part here."""
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'chatbot.db'}"


@pytest.fixture
def bot_overrides() -> dict[str, Any]:
    return {
        "ollama_max_concurrency": 50,
        "rate_limit_per_minute": 1000,
        "rate_limit_per_day": 100000,
    }


def complete(slack: FakeSlack, channel: str, ts: str, text: str) -> bool:
    messages = slack.messages(channel, ts)
    return slack.thread_text(channel, ts) == text and not any(m.streaming for m in messages)


async def test_thirty_answers_at_once_in_one_workspace_arrive_whole_under_slack_tiers(
    slack_bot: SlackBotUnderTest, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    fake_slack.tiers = SlackTiers()
    fake_ollama.reply = WORDS
    fake_ollama.chunk_size, fake_ollama.token_delay = 8, 0.02  # about 2.5 s of tokens
    threads = [(f"C{i % 3:04d}BUDGET", f"1600000000.{i:06d}") for i in range(30)]
    responses = await asyncio.gather(
        *(
            slack_bot.post_event(mention(f"q{i}", ts, channel=channel, user=f"U{i:04d}"))
            for i, (channel, ts) in enumerate(threads)
        )
    )
    assert {r.status for r in responses} == {200}
    streaming = len(WORDS) / fake_ollama.chunk_size * fake_ollama.token_delay
    # Each whole text within 15 s of the model's last token (wait_for fails otherwise).
    await fake_slack.wait_for(
        lambda f: all(complete(f, channel, ts, WORDS) for channel, ts in threads),
        timeout=streaming + 15,
    )
    await slack_bot.settle()
    for channel, ts in threads:  # once: one message each, nothing repeated after
        assert [m.text for m in fake_slack.messages(channel, ts)] == [WORDS]
    # Today's bot, by contrast, had chat.appendStream refused 30 times and waited ~58 s.
    assert sum(fake_slack.tiers.refused.values()) <= 3, dict(fake_slack.tiers.refused)


async def test_text_written_while_slack_says_wait_follows_in_one_call(
    slack_bot: SlackBotUnderTest, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    fake_ollama.reply = WORDS
    fake_ollama.chunk_size, fake_ollama.token_delay = 8, 0.05  # about 5 s of tokens
    # Every append is refused for a while: slack_sdk's handler retries three times (the one
    # place a 429 is retried).
    fake_slack.fail_next("chat.appendStream", retry_after=1, times=3)
    ts = "1600000001.000100"
    assert (await slack_bot.post_event(mention("a long one", ts))).status == 200
    await fake_slack.wait_for(lambda f: complete(f, CHANNEL, ts, WORDS), timeout=30)
    assert [m.text for m in fake_slack.messages(CHANNEL, ts)] == [WORDS]
    appends = [c for c in fake_slack.calls_to("chat.appendStream") if c.error is None]
    refused = [c for c in fake_slack.calls_to("chat.appendStream") if c.error == "ratelimited"]
    assert len(refused) == 3
    # The refused piece went once it was allowed; what the model wrote meanwhile (3 s of
    # tokens) went in the next call, whole, not piece by piece.
    assert appends[0].args["markdown_text"] == refused[0].args["markdown_text"]
    assert len(appends) <= 4


async def test_thirty_answers_at_once_in_one_channel_are_whole_within_15_s_of_the_model(
    slack_bot: SlackBotUnderTest, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    """Issue 24's burst: one channel, so chat.postMessage's one a second per channel binds
    as well as Tier 2's startStream/stopStream and Tier 3's chat.update."""
    fake_slack.tiers = SlackTiers()
    fake_ollama.reply = WORDS
    fake_ollama.chunk_size, fake_ollama.token_delay = 8, 0.02  # about 2.5 s of tokens
    threads = [f"1600000003.{i:06d}" for i in range(30)]
    loop = asyncio.get_running_loop()
    responses = await asyncio.gather(
        *(
            slack_bot.post_event(mention(f"q{i}", ts, user=f"U{i:04d}"))
            for i, ts in enumerate(threads)
        )
    )
    assert {r.status for r in responses} == {200}
    whole: dict[str, float] = {}

    def all_whole(f: FakeSlack) -> bool:
        for ts in threads:
            if ts not in whole and complete(f, CHANNEL, ts, WORDS):
                whole[ts] = loop.time()
        return len(whole) == len(threads)

    await fake_slack.wait_for(all_whole, timeout=60)
    last_token = fake_ollama.last_token_at  # the loop's clock is time.monotonic()
    await slack_bot.settle()
    for ts in threads:  # whole, once, in order
        assert [m.text for m in fake_slack.messages(CHANNEL, ts)] == [WORDS]
    posts = fake_slack.calls_to("chat.postMessage")
    assert len(posts) <= len(threads), len(posts)  # at most one post per answer
    latest = max(whole.values()) - last_token
    # Most answers stream (Tier 2's whole minute at once), the rest are posted whole once.
    assert len(fake_slack.calls_to("chat.startStream")) == 20
    assert sum(fake_slack.tiers.refused.values()) == 0, dict(fake_slack.tiers.refused)
    assert latest <= 15, latest
