"""Limits as a Slack user meets them: rate limits, oversized and empty questions, the queue."""

from __future__ import annotations

from typing import Any

import pytest

from bot import replies
from tests.support.harness import SlackBotUnderTest
from tests.support.slack_payloads import CHANNEL, channel_message, mention


@pytest.fixture
def bot_overrides() -> dict[str, Any]:
    return {"rate_limit_per_minute": 3, "max_input_chars": 200, "ollama_max_concurrency": 1}


async def test_rate_limit_refusal_says_when_to_ask_again(slack_bot: SlackBotUnderTest) -> None:
    root = "1700000000.000100"
    await slack_bot.post_event(mention("q0", root))
    await slack_bot.settle()
    for i in range(1, 5):
        await slack_bot.post_event(channel_message(f"q{i}", f"1700000000.00020{i}", thread_ts=root))
        await slack_bot.settle()
    texts = [m.text for m in slack_bot.slack.messages(CHANNEL, root)]
    assert len(texts) == 5
    assert texts[3].startswith("You've reached the limit of 3 questions per minute")
    assert "UTC" in texts[3] and "You can ask again at" in texts[3]
    assert len(slack_bot.ollama.requests) == 3
    # Commands still work for a limited user and are not counted.
    await slack_bot.post_event(channel_message("/help", "1700000000.000300", thread_ts=root))
    await slack_bot.settle()
    assert "/search" in slack_bot.slack.messages(CHANNEL, root)[-1].text


async def test_oversized_and_empty_questions_are_refused_without_a_model_call(
    slack_bot: SlackBotUnderTest,
) -> None:
    await slack_bot.post_event(mention("x" * 201, "1700000000.000100"))
    await slack_bot.post_event(mention("", "1700000000.000200"))
    await slack_bot.settle()
    too_long = slack_bot.slack.thread_text(CHANNEL, "1700000000.000100")
    assert "201 characters" in too_long and "200" in too_long
    assert slack_bot.slack.thread_text(CHANNEL, "1700000000.000200") == replies.EMPTY_QUESTION
    assert slack_bot.ollama.requests == []


@pytest.mark.parametrize("native", [True, False])
async def test_a_queued_question_shows_its_place_then_the_answer(
    slack_bot: SlackBotUnderTest, native: bool
) -> None:
    slack_bot.slack.refuse_streaming = not native
    slack_bot.ollama.reply_fn = lambda messages: f"answer to {messages[-1]['content']}"
    slack_bot.ollama.first_token_delay = 1.0
    first, second = "1500000000.000100", "1500000000.000200"
    await slack_bot.post_event(mention("first", first))
    await slack_bot.ollama.wait_for_requests(1, timeout=5)  # the first holds the model
    await slack_bot.post_event(mention("second", second))
    # The place in line is the thread's status line, not a message.
    await slack_bot.slack.wait_for(
        lambda f: any("#1 in line" in m for m in f.loading_messages(CHANNEL, second)), timeout=5
    )
    assert slack_bot.slack.messages(CHANNEL, second) == []
    await slack_bot.settle()
    # The answer cleared the status: one message with the answer, nothing posted or deleted.
    assert slack_bot.slack.status(CHANNEL, second) == ""
    assert [m.text for m in slack_bot.slack.messages(CHANNEL, second)] == ["answer to second"]
    assert [m.text for m in slack_bot.slack.messages(CHANNEL, first)] == ["answer to first"]
    assert slack_bot.slack.calls_to("chat.delete") == []
    # Its place in line showed instead of "thinking", not after it: one call, not two.
    statuses = [
        c.args["status"]
        for c in slack_bot.slack.calls_to("assistant.threads.setStatus")
        if c.args["thread_ts"] == second and c.args["status"]
    ]
    assert statuses == ["is waiting for a free model…"]
