"""`/premium` end to end through Slack: signed requests into the real bot, answers streamed
into the fake Slack, premium answers from the fake OpenAI through the real ChatOpenAI,
real Redis and a real ledger (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes.openai import API_KEY, FakeOpenAI
from tests.support.fixtures_db import recorded
from tests.support.harness import SlackBotUnderTest
from tests.support.secrets import AWS_ACCESS
from tests.support.slack_payloads import CHANNEL, USER, channel_message, mention, slash

TS = "1700000000.000100"


@pytest.fixture
def bot_overrides(fake_openai: FakeOpenAI) -> dict[str, Any]:
    """The harness's slack_bot, with premium pointed at the fake OpenAI."""
    return {
        "openai_api_key": API_KEY,
        "openai_base_url": fake_openai.url,
        "premium_model": "gpt-4.1",
        "premium_users": f"{USER},U0OTHER",
        "premium_monthly_budget_usd": 5,
    }


async def test_inline_premium_in_a_thread_uses_its_memory_and_names_the_model(
    slack_bot: SlackBotUnderTest, fake_openai: FakeOpenAI
) -> None:
    slack_bot.ollama.reply = "local: use a list"
    await slack_bot.post_event(mention("how do I store pairs?", TS))
    await slack_bot.settle()
    fake_openai.reply = "Premium: use a **dict** or tuples."
    await slack_bot.post_event(
        mention("/premium any better idea?", "1700000000.000200", thread_ts=TS)
    )
    await slack_bot.settle()
    # A follow-up in the bot's thread needs no mention, inline commands included.
    await slack_bot.post_event(
        channel_message("/premium and for sets?", "1700000000.000300", thread_ts=TS)
    )
    await slack_bot.settle()
    texts = [m.text for m in slack_bot.slack.messages(CHANNEL, TS)]
    assert texts[0] == "local: use a list"
    assert texts[1].startswith("Premium: use a **dict** or tuples.") and "gpt-4.1" in texts[1]
    assert "gpt-4.1" in texts[2]
    assert fake_openai.messages(0)[1:] == [
        ("user", "how do I store pairs?"),
        ("assistant", "local: use a list"),
        ("user", "any better idea?"),
    ]
    assert len(fake_openai.requests) == 2 and len(slack_bot.ollama.requests) == 1
    rows = await recorded(slack_bot.runtime.engine)
    premium = [r for r in rows if r.route == "premium"]
    assert len(premium) == 2 and all(r.cost_usd > 0 and r.user == USER for r in premium)
    assert [r.cost_usd for r in rows if r.route == "local"] == [0]


async def test_slash_premium_posts_the_question_and_answers_in_its_thread(
    slack_bot: SlackBotUnderTest, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply_fn = lambda messages: f"premium re: {messages[-1]['content']}"
    resp = await slack_bot.post_command(
        slash("/premium", "why is the sky blue?", response_url=slack_bot.slack.response_url())
    )
    assert resp.status == 200
    await slack_bot.settle()
    (top,) = slack_bot.slack.messages(CHANNEL)
    assert "why is the sky blue?" in top.text and "premium" in top.text
    text = slack_bot.slack.thread_text(CHANNEL, top.ts)
    assert text.startswith("premium re: why is the sky blue?")
    assert "gpt-4.1" in text
    assert slack_bot.ollama.requests == []


async def test_secrets_are_redacted_before_openai_and_the_thread_says_which_kinds(
    slack_bot: SlackBotUnderTest, fake_openai: FakeOpenAI
) -> None:
    await slack_bot.post_event(
        mention(f"/premium why is {AWS_ACCESS} denied? DB_PASSWORD=hunter2", TS)
    )
    await slack_bot.settle()
    assert fake_openai.messages()[-1] == (
        "user",
        "why is [REDACTED:aws-access-key] denied? DB_PASSWORD=[REDACTED:password]",
    )
    text = slack_bot.slack.thread_text(CHANNEL, TS)
    assert "an AWS access key and a password" in text
    assert AWS_ACCESS not in text and "hunter2" not in text


async def test_not_allowed_and_over_budget_users_get_a_reply_and_nothing_is_sent(
    slack_bot: SlackBotUnderTest, fake_openai: FakeOpenAI
) -> None:
    await slack_bot.post_event(mention("/premium hi", TS, user="U0STRANGER"))
    await slack_bot.settle()
    assert "not on the list" in slack_bot.slack.thread_text(CHANNEL, TS)
    # U0OTHER is allowed but has spent the $5 budget this month.
    fake_openai.usage = (1_000_000, 500_000)  # $2 + $4 = $6 for one answer
    other = "1700000000.000500"
    await slack_bot.post_event(mention("/premium expensive question", other, user="U0OTHER"))
    await slack_bot.settle()
    again = "1700000000.000600"
    await slack_bot.post_event(mention("/premium another one", again, user="U0OTHER"))
    await slack_bot.settle()
    assert len(fake_openai.requests) == 1
    refusal = slack_bot.slack.thread_text(CHANNEL, again)
    assert "$6.00 of your $5.00" in refusal
    await slack_bot.post_event(mention("/model", "1700000000.000700", user="U0OTHER"))
    await slack_bot.settle()
    assert "$6.00 of your $5.00 budget" in slack_bot.slack.thread_text(CHANNEL, "1700000000.000700")
