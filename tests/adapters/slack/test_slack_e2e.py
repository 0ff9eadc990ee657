"""Slack end to end: signed requests through the real AsyncApp, a fake Slack Web API and a
fake Ollama behind the real clients, real Redis and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from aiohttp.test_utils import TestServer

from adapters.app.server import build_web_app
from adapters.app.wiring import build_runtime
from bot import replies
from tests.support.fixtures_db import recorded
from tests.support.harness import SlackBotUnderTest, sign
from tests.support.slack_payloads import (
    BOT_USER,
    CHANNEL,
    USER,
    channel_message,
    dm,
    load,
    mention,
    slash,
)

TS = "1700000000.000100"


def model_messages(bot: SlackBotUnderTest, index: int = -1) -> list[tuple[str, str]]:
    """The (role, content) pairs the model received in one request."""
    return [(m["role"], m["content"]) for m in bot.ollama.requests[index]["messages"]]


async def test_mention_is_acked_at_once_and_answered_in_its_thread(
    slack_bot: SlackBotUnderTest,
) -> None:
    slack_bot.ollama.reply = "Use `reversed()` or **slicing**."
    slack_bot.ollama.first_token_delay = 0.5  # a slow model must not delay the ack
    started = time.monotonic()
    resp = await slack_bot.post_event(mention("how do I reverse a list?", TS))
    assert resp.status == 200
    assert time.monotonic() - started < 0.45
    await slack_bot.settle()
    assert slack_bot.slack.thread_text(CHANNEL, TS) == "Use `reversed()` or **slicing**."
    assert model_messages(slack_bot)[-1] == ("user", "how do I reverse a list?")
    assert model_messages(slack_bot)[0][0] == "system"
    assert slack_bot.ollama.requests[-1]["options"]["num_ctx"] == 4096
    streamed = slack_bot.slack.calls_to("chat.startStream")
    assert streamed and streamed[0].args["thread_ts"] == TS


async def test_one_mention_is_answered_once_despite_duplicate_events(
    slack_bot: SlackBotUnderTest,
) -> None:
    body = mention("hello", TS)
    await asyncio.gather(
        slack_bot.post_event(body),
        slack_bot.post_event(channel_message(f"<@{BOT_USER}> hello", TS)),
        slack_bot.post_event(body, retry_num=1),
    )
    await slack_bot.settle()
    await slack_bot.post_event(body, retry_num=2)
    await slack_bot.settle()
    assert len(slack_bot.ollama.requests) == 1
    assert len(slack_bot.slack.messages(CHANNEL, TS)) == 1


async def test_engaged_thread_follow_up_needs_no_mention_and_sees_history(
    slack_bot: SlackBotUnderTest,
) -> None:
    slack_bot.ollama.reply_fn = lambda messages: f"answer to: {messages[-1]['content']}"
    await slack_bot.post_event(mention("first question", TS))
    await slack_bot.settle()
    await slack_bot.post_event(
        channel_message("second question", "1700000000.000200", thread_ts=TS)
    )
    await slack_bot.settle()
    assert model_messages(slack_bot)[1:] == [
        ("user", "first question"),
        ("assistant", "answer to: first question"),
        ("user", "second question"),
    ]
    texts = [m.text for m in slack_bot.slack.messages(CHANNEL, TS)]
    assert texts == ["answer to: first question", "answer to: second question"]


async def test_other_threads_and_other_peoples_mentions_are_left_alone(
    slack_bot: SlackBotUnderTest,
) -> None:
    # A thread the bot was never mentioned at the top of.
    await slack_bot.post_event(
        channel_message("chat among humans", "1700000000.000300", thread_ts="1700000000.000250")
    )
    await slack_bot.post_event(mention("hi", TS))
    await slack_bot.settle()
    # In the bot's thread, a reply addressed to someone else.
    await slack_bot.post_event(
        channel_message("<@U999OTHER> can you check?", "1700000000.000400", thread_ts=TS)
    )
    # A top-level message without a mention.
    await slack_bot.post_event(channel_message("lunch?", "1700000000.000500"))
    await slack_bot.settle()
    assert len(slack_bot.ollama.requests) == 1


async def test_mention_in_someone_elses_thread_is_answered_but_does_not_engage_it(
    slack_bot: SlackBotUnderTest,
) -> None:
    root = "1700000000.000250"
    await slack_bot.post_event(mention("what do you think?", "1700000000.000300", thread_ts=root))
    await slack_bot.settle()
    await slack_bot.post_event(
        channel_message("humans only now", "1700000000.000400", thread_ts=root)
    )
    await slack_bot.settle()
    assert len(slack_bot.ollama.requests) == 1
    assert len(slack_bot.slack.messages(CHANNEL, root)) == 1


async def test_edits_deletions_joins_own_and_bot_messages_are_ignored(
    slack_bot: SlackBotUnderTest,
) -> None:
    for name in ("message_changed", "message_deleted", "channel_join", "bot_message"):
        assert (await slack_bot.post_event(load(name))).status == 200
    own = dm("my own echo", "1700000000.000900", user=BOT_USER)
    await slack_bot.post_event(own)
    await slack_bot.settle()
    assert slack_bot.ollama.requests == []
    assert slack_bot.slack.calls_to("chat.postMessage") == []


async def test_direct_messages_are_one_rolling_conversation_at_the_top_level(
    slack_bot: SlackBotUnderTest,
) -> None:
    channel = "D024BE91L"
    slack_bot.ollama.reply_fn = lambda messages: f"re: {messages[-1]['content']}"
    await slack_bot.post_event(dm("hello there", "1700000000.000100", channel=channel))
    await slack_bot.settle()
    await slack_bot.post_event(dm("what did I say?", "1700000000.000300", channel=channel))
    await slack_bot.settle()
    assert ("user", "hello there") in model_messages(slack_bot)
    top = [m.text for m in slack_bot.slack.messages(channel) if m.user != USER]
    assert top == ["re: hello there", "re: what did I say?"]


async def test_inline_reset_and_help_in_a_thread(slack_bot: SlackBotUnderTest) -> None:
    await slack_bot.post_event(mention("remember 42", TS))
    await slack_bot.settle()
    await slack_bot.post_event(channel_message("/reset", "1700000000.000200", thread_ts=TS))
    await slack_bot.settle()
    await slack_bot.post_event(mention("/help", "1700000000.000300", thread_ts=TS))
    await slack_bot.settle()
    await slack_bot.post_event(channel_message("what number?", "1700000000.000400", thread_ts=TS))
    await slack_bot.settle()
    texts = [m.text for m in slack_bot.slack.messages(CHANNEL, TS)]
    assert replies.RESET_DONE in texts[1]
    assert "/search" in texts[2] and "/reset" in texts[2]
    assert model_messages(slack_bot)[1:] == [("user", "what number?")]
    assert len(slack_bot.ollama.requests) == 2


async def test_slash_ask_posts_the_question_and_answers_in_its_thread(
    slack_bot: SlackBotUnderTest,
) -> None:
    slack_bot.ollama.reply_fn = lambda messages: f"re: {messages[-1]['content']}"
    resp = await slack_bot.post_command(
        slash("/ask", "why is the sky blue?", response_url=slack_bot.slack.response_url())
    )
    assert resp.status == 200
    await slack_bot.settle()
    top = slack_bot.slack.messages(CHANNEL)
    assert len(top) == 1 and "why is the sky blue?" in top[0].text and USER in top[0].text
    root = top[0].ts
    assert slack_bot.slack.thread_text(CHANNEL, root) == "re: why is the sky blue?"
    # The conversation goes on in that thread without a mention.
    await slack_bot.post_event(
        channel_message("and at sunset?", "1800000000.000200", thread_ts=root)
    )
    await slack_bot.settle()
    assert ("user", "why is the sky blue?") in model_messages(slack_bot)
    assert len(slack_bot.slack.messages(CHANNEL, root)) == 2


async def test_slash_ask_without_text_explains_usage_privately(
    slack_bot: SlackBotUnderTest,
) -> None:
    await slack_bot.post_command(slash("/ask", "  ", response_url=slack_bot.slack.response_url()))
    await slack_bot.settle()
    assert slack_bot.slack.messages(CHANNEL) == []
    assert "/ask" in slack_bot.slack.responses[-1]["text"]
    assert slack_bot.slack.responses[-1]["response_type"] == "ephemeral"


async def test_slash_help_and_reset(slack_bot: SlackBotUnderTest) -> None:
    url = slack_bot.slack.response_url()
    await slack_bot.post_command(slash("/help", "", response_url=url, trigger_id="t1"))
    await slack_bot.settle()
    await slack_bot.post_command(slash("/reset", "", response_url=url, trigger_id="t2"))
    await slack_bot.settle()
    help_text, reset_text = (r["text"] for r in slack_bot.slack.responses)
    assert "/search" in help_text and "/reset" in help_text
    assert "/reset" in reset_text and "thread" in reset_text
    # In a DM, /reset forgets the rolling conversation.
    channel = "D024BE91L"
    await slack_bot.post_event(dm("remember me", "1700000000.000100", channel=channel))
    await slack_bot.settle()
    await slack_bot.post_command(
        slash(
            "/reset",
            "",
            response_url=url,
            channel=channel,
            channel_name="directmessage",
            trigger_id="t3",
        )
    )
    await slack_bot.settle()
    assert slack_bot.slack.responses[-1]["text"].startswith("Done")
    await slack_bot.post_event(dm("who am I?", "1700000000.000300", channel=channel))
    await slack_bot.settle()
    assert model_messages(slack_bot)[1:] == [("user", "who am I?")]


async def test_forged_stale_and_malformed_requests(slack_bot: SlackBotUnderTest) -> None:
    raw = json.dumps(mention("hi", TS))
    url = f"{slack_bot.url}/slack/events"
    forged = sign(raw, secret="not-the-secret")
    stale = sign(raw, timestamp=int(time.time()) - 3600)
    for headers in (forged, stale, {}):
        async with slack_bot.http.post(url, data=raw, headers=headers) as resp:
            assert resp.status == 401
    garbage = "{not json"
    async with slack_bot.http.post(url, data=garbage, headers=sign(garbage)) as resp:
        assert resp.status == 400
        assert "Traceback" not in await resp.text()
    await slack_bot.settle()
    assert slack_bot.ollama.requests == []
    assert slack_bot.slack.calls_to("chat.postMessage") == []


async def test_url_verification_challenge(slack_bot: SlackBotUnderTest) -> None:
    body = {
        "token": "x",
        "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
        "type": "url_verification",
    }
    raw = json.dumps(body)
    async with slack_bot.http.post(
        f"{slack_bot.url}/slack/events",
        data=raw,
        headers={"Content-Type": "application/json", **sign(raw)},
    ) as r:
        assert r.status == 200
        assert body["challenge"] in await r.text()


async def test_without_native_streaming_one_message_is_updated_in_mrkdwn(
    slack_bot: SlackBotUnderTest,
) -> None:
    slack_bot.slack.refuse_streaming = True
    slack_bot.ollama.reply = "# Title\n\nThis is **bold** and a [link](https://example.com)."
    await slack_bot.post_event(mention("format please", TS))
    await slack_bot.settle()
    (message,) = slack_bot.slack.messages(CHANNEL, TS)
    assert "*bold*" in message.text and "**" not in message.text
    assert "<https://example.com|link (example.com)>" in message.text
    assert "*Title*" in message.text


async def test_long_answers_are_split_into_several_messages(slack_bot: SlackBotUnderTest) -> None:
    paragraphs = [f"Paragraph {i}: " + "word " * 150 for i in range(12)]
    slack_bot.ollama.reply = "\n\n".join(paragraphs)
    slack_bot.ollama.chunk_size = 200
    await slack_bot.post_event(mention("tell me a lot", TS))
    await slack_bot.settle()
    messages = slack_bot.slack.messages(CHANNEL, TS)
    assert len(messages) >= 2
    assert all(len(m.text) <= 4000 for m in messages)
    joined = " ".join(m.text for m in messages).split()
    assert joined == slack_bot.ollama.reply.split()
    # Each message ends at a paragraph boundary.
    assert all(m.text.rstrip().endswith("word") for m in messages)


async def test_model_server_down_is_reported_in_the_thread(slack_bot: SlackBotUnderTest) -> None:
    await slack_bot.ollama.stop()
    await slack_bot.post_event(mention("anyone there?", TS))
    await slack_bot.settle()
    assert slack_bot.slack.thread_text(CHANNEL, TS) == replies.MODEL_UNAVAILABLE


async def test_unknown_model_is_reported_with_the_fix(slack_bot: SlackBotUnderTest) -> None:
    slack_bot.ollama.models = ["llama3.1:8b"]
    await slack_bot.post_event(mention("hi", TS))
    await slack_bot.settle()
    text = slack_bot.slack.thread_text(CHANNEL, TS)
    assert "ollama pull codellama:7b" in text


async def test_model_dying_mid_answer_keeps_the_text_and_says_so(
    slack_bot: SlackBotUnderTest,
) -> None:
    slack_bot.ollama.reply = "The first part of a long answer, and then the rest of it."
    slack_bot.ollama.chunk_size = 5
    slack_bot.ollama.fail_after_chunks = 3
    slack_bot.ollama.fail_mode = "disconnect"
    await slack_bot.post_event(mention("explain", TS))
    await slack_bot.settle()
    text = slack_bot.slack.thread_text(CHANNEL, TS)
    assert text.startswith("The first part")
    assert "incomplete" in text
    rows = await recorded(slack_bot.runtime.engine)
    assert rows[0].outcome == "generation_failed"


async def test_answers_are_recorded_in_the_ledger(slack_bot: SlackBotUnderTest) -> None:
    await slack_bot.post_event(mention("count tokens", TS))
    await slack_bot.settle()
    (row,) = await recorded(slack_bot.runtime.engine)
    assert (row.platform, row.user, row.route, row.model, row.outcome) == (
        "slack",
        USER,
        "local",
        "codellama:7b",
        "ok",
    )
    assert row.prompt_tokens > 0 and row.completion_tokens > 0


async def test_a_restarted_bot_continues_the_conversation(slack_bot: SlackBotUnderTest) -> None:
    slack_bot.ollama.reply = "noted"
    await slack_bot.post_event(mention("my name is Ada", TS))
    await slack_bot.settle()
    # A second process on the same Redis and database.
    slack_bot.runtime.stop_taking_work()  # the first process stops answering
    runtime = await build_runtime(slack_bot.runtime.settings)
    runtime.start()
    server = TestServer(build_web_app(runtime), host="127.0.0.1")
    await server.start_server()
    first = slack_bot.runtime, slack_bot.server
    try:
        slack_bot.runtime, slack_bot.server = runtime, server
        await slack_bot.post_event(
            channel_message("what is my name?", "1700000000.000200", thread_ts=TS)
        )
        await slack_bot.settle()
    finally:
        slack_bot.runtime, slack_bot.server = first
        await server.close()
        await runtime.close()
    assert ("user", "my name is Ada") in model_messages(slack_bot)


def test_building_the_app_says_nothing_about_an_unused_token(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """bolt warns "token will be unused" when SLACK_BOT_TOKEN is in the environment (as
    under docker compose) and a client is given: the bot always gives one."""
    from slack_sdk.web.async_client import AsyncWebClient

    from adapters.slack.app import SlackBot
    from bot.tasks import TaskTracker

    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1-2-abc")
    caplog.set_level(logging.DEBUG)
    SlackBot(
        client=AsyncWebClient(token="xoxb-1-2-abc"),
        assistant=None,  # type: ignore[arg-type]  # never called
        dispatcher=None,  # type: ignore[arg-type]
        tracker=TaskTracker(),
    )
    assert not [r for r in caplog.records if "unused" in r.getMessage()]
