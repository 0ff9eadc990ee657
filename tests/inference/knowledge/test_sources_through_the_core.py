"""Sources as the core hands them over: the assistant answering from indexed passages into a
real SlackReplySink and TeamsReplySink, against the fake Slack and Teams services."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from botbuilder.core import TurnContext
from botbuilder.schema import Activity
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.sink import SlackReplySink, StreamingSupport
from adapters.teams.sink import Outbox, TeamsReplySink
from bot.assistant import Assistant
from bot.conversation import ConversationKey, IncomingMessage
from tests.fakes.core import FixedKnowledge, ScriptedModel
from tests.fakes.slack import FakeSlack
from tests.support.grounding import DEPLOY, ERRORS, make
from tests.support.teams import APP_ID, FAST, PERSONAL, SQLITE_ONLY, TeamsBotUnderTest

CHANNEL, THREAD = "C0CHANNEL", "1700000000.000100"


def _assistant(reply: str) -> Assistant:
    bot, _ = make(ScriptedModel(reply=reply), FixedKnowledge([DEPLOY, ERRORS]))
    return bot


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    yield fake
    await fake.stop()


async def test_slack_shows_the_cited_document_linked_under_a_streamed_answer(
    slack: FakeSlack,
) -> None:
    sink = SlackReplySink(
        client=AsyncWebClient(token=slack.bot_token, base_url=slack.api_url),
        channel=CHANNEL,
        thread_ts=THREAD,
        team_id=slack.team_id,
        user_id="U1",
        streaming=StreamingSupport(),
    )
    key = ConversationKey("slack", slack.team_id, CHANNEL, THREAD)
    bot = _assistant("Run deployctl rollback [1]. Also [9].")
    await bot.handle(IncomingMessage(key, "m1", "U1", "how do I roll back?"), sink)
    (message,) = slack.messages(CHANNEL, THREAD)
    assert message.text == "Run deployctl rollback [1]. Also ."  # the invented [9] is gone
    elements = [e["text"] for b in message.blocks if b["type"] == "context" for e in b["elements"]]
    assert elements == [
        "*Sources:*",
        f"[1] <{DEPLOY.url}|Deploy runbook › Rollback (git.example.com)>",
    ]


@SQLITE_ONLY
async def test_teams_cites_the_document_in_a_streamed_answer(teams_bot: TeamsBotUnderTest) -> None:
    bot = _assistant("Run deployctl rollback [1].")
    activity = Activity().deserialize(teams_bot.message("personal_message"))
    reference = TurnContext.get_conversation_reference(activity)
    key = ConversationKey("teams", "tenant", PERSONAL, PERSONAL)

    async def turn(context: TurnContext) -> None:
        sink = TeamsReplySink(outbox=Outbox(context, FAST), streaming=True, options=FAST)
        await bot.handle(IncomingMessage(key, "m1", "U1", "how do I roll back?"), sink)

    await teams_bot.teams.adapter.continue_conversation(reference, turn, bot_app_id=APP_ID)
    (shown,) = teams_bot.connector.shown(PERSONAL)
    assert shown.final and shown.text.startswith("Run deployctl rollback [1].")
    assert shown.ai_generated
    ((claim),) = shown.citations
    assert claim["position"] == 1
    assert claim["appearance"]["url"] == DEPLOY.url
    assert claim["appearance"]["name"] == "Deploy runbook › Rollback"
