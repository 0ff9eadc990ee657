"""Slack's AI surfaces through the real adapter and the fake Slack Web API: feedback buttons
under answers and votes in the ledger, refused slash commands answered privately before
anything is posted, the thread read when the bot is called into someone else's thread, and
suggested prompts when the bot's DM opens. Payloads are shaped like Slack's documented ones
(tests/fixtures/slack)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import pytest

from adapters.slack import thread as thread_module
from bot.prompt import CONTEXT_HEADING
from bot.suggestions import SEARCH
from tests.fakes.ollama import FakeOllama
from tests.fakes.slack import FakeSlack, Message
from tests.support.fixtures_db import recorded, votes_on
from tests.support.harness import SlackBotUnderTest, running_bot, sign, slack_settings
from tests.support.slack_payloads import (
    BOT_USER,
    CHANNEL,
    USER,
    channel_message,
    load,
    mention,
    slash,
)

ROOT = "1700000000.000100"
OTHER = "U0OTHER99"


def model_messages(bot: SlackBotUnderTest, index: int = -1) -> list[tuple[str, str]]:
    """The (role, content) pairs the model received in one request."""
    return [(m["role"], m["content"]) for m in bot.ollama.requests[index]["messages"]]


@asynccontextmanager
async def bot_with(
    slack: FakeSlack, ollama: FakeOllama, redis_url: str, database_url: str, **overrides: Any
) -> AsyncIterator[SlackBotUnderTest]:
    settings = slack_settings(slack, ollama, redis_url, database_url, **overrides)
    async with running_bot(settings, slack, ollama) as bot:
        yield bot


# -- feedback --------------------------------------------------------------------------


def feedback_buttons(message: Message) -> dict[str, Any]:
    """The feedback_buttons element under an answer (fails when there is none)."""
    [block] = [b for b in message.blocks if b["type"] == "context_actions"]
    [element] = block["elements"]
    assert element["type"] == "feedback_buttons"
    return dict(element)


async def click(
    bot: SlackBotUnderTest, message: Message, vote: str, *, user: str = USER
) -> tuple[int, str]:
    """Click 👍 ("up") or 👎 ("down") under ``message`` as ``user``: the signed
    block_actions request Slack sends to the interactivity URL."""
    element = feedback_buttons(message)
    button = element["positive_button" if vote == "up" else "negative_button"]
    payload = load("block_actions_feedback")
    payload["user"] |= {"id": user}
    payload["container"] |= {"message_ts": message.ts, "thread_ts": message.thread_ts}
    payload["message"] |= {"ts": message.ts, "thread_ts": message.thread_ts}
    payload["response_url"] = bot.slack.response_url(f"vote-{user}-{vote}")
    payload["actions"][0] |= {
        "action_id": element["action_id"],
        "block_id": "feedback:x",
        "value": button["value"],
        "text": button["text"],
    }
    raw = urlencode({"payload": json.dumps(payload)})
    headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(raw)}
    async with bot.http.post(f"{bot.url}/slack/events", data=raw, headers=headers) as resp:
        return resp.status, await resp.text()


async def answer_id_of(bot: SlackBotUnderTest) -> str:
    (row,) = await recorded(bot.runtime.engine, limit=1)
    assert row.answer_id
    return row.answer_id


@pytest.mark.parametrize("streamed", [True, False])
async def test_votes_are_recorded_once_per_person_and_acknowledged_privately(
    slack_bot: SlackBotUnderTest, streamed: bool
) -> None:
    slack_bot.slack.refuse_streaming = not streamed
    slack_bot.ollama.reply = "Use `git bisect`."
    await slack_bot.post_event(mention("how do I find the bad commit?", ROOT))
    await slack_bot.settle()
    (answer,) = slack_bot.slack.messages(CHANNEL, ROOT)
    assert answer.text.startswith("Use `git bisect`.")
    # The buttons ride on the call that ends the answer: chat.stopStream when streamed.
    if streamed:
        assert any(b["type"] == "context_actions" for b in answer.blocks)
        assert slack_bot.slack.calls_to("chat.stopStream")[-1].args["blocks"]
    answer_id = await answer_id_of(slack_bot)
    engine = slack_bot.runtime.engine

    status, _ = await click(slack_bot, answer, "up")
    assert status == 200
    await slack_bot.settle()
    assert await votes_on(engine, answer_id) == {f"slack:{USER}": "up"}
    # Thanked privately, in the answer's thread; nothing new in the channel.
    (thanks,) = slack_bot.slack.ephemerals
    assert thanks["user"] == USER and thanks["thread_ts"] == ROOT and "👍" in thanks["text"]
    assert len(slack_bot.slack.messages(CHANNEL, ROOT)) == 1

    # A later vote replaces the earlier one; another person's vote is their own.
    await click(slack_bot, answer, "down")
    await click(slack_bot, answer, "up", user=OTHER)
    await slack_bot.settle()
    assert await votes_on(engine, answer_id) == {f"slack:{USER}": "down", f"slack:{OTHER}": "up"}
    assert len(slack_bot.ollama.requests) == 1  # votes never ask a model

    text = slack_bot.runtime.metrics.render().decode()
    assert 'chatbot_votes_total{platform="slack",vote="up"} 2.0' in text
    assert 'chatbot_votes_total{platform="slack",vote="down"} 1.0' in text


async def test_commands_get_no_feedback_buttons(slack_bot: SlackBotUnderTest) -> None:
    await slack_bot.post_event(mention("/help", ROOT))
    await slack_bot.settle()
    (reply,) = slack_bot.slack.messages(CHANNEL, ROOT)
    assert not any(b["type"] == "context_actions" for b in reply.blocks)


async def test_a_forged_vote_value_is_ignored(slack_bot: SlackBotUnderTest) -> None:
    await slack_bot.post_event(mention("hello", ROOT))
    await slack_bot.settle()
    (answer,) = slack_bot.slack.messages(CHANNEL, ROOT)
    element = feedback_buttons(answer)
    element["positive_button"]["value"] = "maybe:" + "x" * 10
    blocks = ({"type": "context_actions", "elements": [element]},)
    status, _ = await click(slack_bot, dataclasses.replace(answer, blocks=blocks), "up")
    assert status == 200
    await slack_bot.settle()
    assert await votes_on(slack_bot.runtime.engine, await answer_id_of(slack_bot)) == {}
    assert slack_bot.slack.ephemerals == []


# -- refused slash commands ------------------------------------------------------------


async def test_refused_slash_commands_are_answered_privately_and_post_nothing(
    fake_slack: FakeSlack, fake_ollama: FakeOllama, redis_url: str, database_url: str
) -> None:
    async with bot_with(
        fake_slack, fake_ollama, redis_url, database_url, rate_limit_per_minute=2
    ) as bot:
        refusals = [
            ("/premium", "what is a monad?", "Premium answers are not configured"),
            ("/ask", "x" * 9000, "the limit here is 8,000"),
        ]
        for n, (command, text, expected) in enumerate(refusals):
            url = fake_slack.response_url(f"refused{n}", channel=CHANNEL)
            await bot.post_command(slash(command, text, response_url=url, trigger_id=f"t{n}"))
            await bot.settle()
            [response] = fake_slack.responses_to(f"refused{n}")
            assert expected in response["text"]
            assert response["response_type"] == "ephemeral"
        # Two questions are within a limit of two a minute: each counted once.
        for n in range(2):
            url = fake_slack.response_url(f"ok{n}", channel=CHANNEL)
            await bot.post_command(
                slash("/ask", f"question {n}", response_url=url, trigger_id=f"a{n}")
            )
            await bot.settle()
        assert len(bot.ollama.requests) == 2
        assert len(fake_slack.messages(CHANNEL)) == 2
        # The third is refused to the asker alone: nothing posted, no model asked.
        url = fake_slack.response_url("limited", channel=CHANNEL)
        await bot.post_command(slash("/ask", "question 3", response_url=url, trigger_id="a3"))
        await bot.settle()
        [response] = fake_slack.responses_to("limited")
        assert "limit of 2 questions per minute" in response["text"]
        assert response["response_type"] == "ephemeral"
        assert len(fake_slack.messages(CHANNEL)) == 2
        assert len(fake_slack.calls_to("chat.postMessage")) == 2
        assert len(bot.ollama.requests) == 2


# -- a thread the bot is called into ---------------------------------------------------


async def test_mentioned_mid_thread_the_bot_reads_the_thread_first(
    slack_bot: SlackBotUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(thread_module, "PAGE_SIZE", 2)  # several pages, as in a long thread
    slack = slack_bot.slack
    slack.add_user("U0ANA", name="ana")
    slack.add_user("U0BOB", name="bob")
    slack.add_message(CHANNEL, "Deploys fail since Tuesday", user="U0ANA", ts=ROOT)
    slack.add_message(CHANNEL, "I bet it's the cert", user="U0BOB", thread_ts=ROOT)
    slack.add_message(
        CHANNEL,
        "Build #42 failed: certificate expired",
        user="U0CIBOT1",
        thread_ts=ROOT,
        bot_id="B0CIBOT1",
        bot_name="CI Bot",
    )
    slack.add_message(CHANNEL, "so the cert it is?", user="U0ANA", thread_ts=ROOT)
    asked = "1700000000.000500"
    slack.add_message(
        CHANNEL, f"<@{BOT_USER}> what did Ana mean?", user=USER, thread_ts=ROOT, ts=asked
    )
    slack_bot.ollama.reply = "Ana thinks the expired certificate broke deploys."
    await slack_bot.post_event(mention("what did Ana mean?", asked, thread_ts=ROOT))
    await slack_bot.settle()

    calls = slack.calls_to("conversations.replies")
    assert len(calls) >= 2 and calls[1].args.get("cursor"), "the thread was not read page by page"
    messages = model_messages(slack_bot)
    assert messages[-1] == ("user", "what did Ana mean?")
    context = messages[-2][1]
    assert context.startswith(CONTEXT_HEADING)
    assert context.index("ana wrote: Deploys fail since Tuesday") < context.index(
        "bob wrote: I bet it's the cert"
    )
    assert "[bot] CI Bot (another app, not a person) wrote: Build #42 failed" in context
    assert "what did Ana mean?" not in context  # the question itself is not context
    assert slack.thread_text(CHANNEL, ROOT).endswith(slack_bot.ollama.reply)

    # A reply in that thread without a mention is still not answered.
    await slack_bot.post_event(channel_message("thanks!", "1700000000.000700", thread_ts=ROOT))
    await slack_bot.settle()
    assert len(slack_bot.ollama.requests) == 1


async def test_nothing_is_read_in_a_thread_the_bot_owns(slack_bot: SlackBotUnderTest) -> None:
    await slack_bot.post_event(mention("first question", ROOT))
    await slack_bot.settle()
    await slack_bot.post_event(mention("second question", "1700000000.000300", thread_ts=ROOT))
    await slack_bot.settle()
    assert slack_bot.slack.calls_to("conversations.replies") == []
    assert not any(CONTEXT_HEADING in content for _, content in model_messages(slack_bot))
    assert ("user", "first question") in model_messages(slack_bot)  # memory instead


# -- suggested prompts -----------------------------------------------------------------


async def test_opening_the_dm_sets_suggested_prompts(slack_bot: SlackBotUnderTest) -> None:
    body = load("app_home_opened")
    resp = await slack_bot.post_event(body)
    assert resp.status == 200
    await slack_bot.settle()
    shown = slack_bot.slack.suggested_prompts["D024BE91L"]
    assert 1 <= len(shown["prompts"]) <= 4
    assert all(p["title"] and p["message"] for p in shown["prompts"])
    (call,) = slack_bot.slack.calls_to("assistant.threads.setSuggestedPrompts")
    assert "thread_ts" not in call.args  # the DM's messages tab, not a thread
    # No knowledge sources here: no /search suggestion.
    assert SEARCH.message not in [p["message"] for p in shown["prompts"]]

    # The home tab (not the messages tab) sets nothing.
    body["event"]["tab"] = "home"
    body["event_id"] = "Ev0APPHOME2"
    await slack_bot.post_event(body)
    await slack_bot.settle()
    assert len(slack_bot.slack.calls_to("assistant.threads.setSuggestedPrompts")) == 1


async def test_an_operator_sets_the_suggested_prompts(
    fake_slack: FakeSlack, fake_ollama: FakeOllama, redis_url: str, database_url: str
) -> None:
    prompts = ["Summarise a PR | Summarise this pull request:", "/search on-call runbook"]
    async with bot_with(
        fake_slack, fake_ollama, redis_url, database_url, suggested_prompts=prompts
    ) as bot:
        await bot.post_event(load("app_home_opened"))
        await bot.settle()
    assert fake_slack.suggested_prompts["D024BE91L"]["prompts"] == [
        {"title": "Summarise a PR", "message": "Summarise this pull request:"},
        {"title": "/search on-call runbook", "message": "/search on-call runbook"},
    ]
