"""Translation of Teams activities (Microsoft's documented sample shapes) into the core's
values: who asked what, in which conversation, and which activities the bot ignores."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from botbuilder.schema import Activity

from adapters.teams.events import TeamsInbound, to_inbound, to_question_text
from bot.conversation import ConversationKey
from tests.support import FIXTURES as ALL_FIXTURES

FIXTURES = ALL_FIXTURES / "teams"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
MEGAN = "e1b3d7b9-48d3-4ab3-9f3b-0a0e6d3c2a11"
BOT = "28:c9e8c047-2a74-40a2-b28a-b162d5f5327c"
CHANNEL = "19:d3e5ad0a4cba4ba7a8c5c2a8f1d2a3b4@thread.tacv2"


def raw(name: str) -> dict[str, Any]:
    return copy.deepcopy(json.loads((FIXTURES / f"{name}.json").read_text()))


def parse(data: dict[str, Any]) -> Activity:
    return Activity().deserialize(data)


def inbound(data: dict[str, Any]) -> TeamsInbound:
    result = to_inbound(parse(data))
    assert result is not None
    return result


def test_channel_mention_is_a_question_in_its_thread() -> None:
    message = inbound(raw("channel_mention"))
    thread = f"{CHANNEL};messageid=1730825891594"
    assert message.message.key == ConversationKey("teams", TENANT, CHANNEL, thread)
    assert message.message.text == "how do I reverse a list in Python?"
    assert message.message.sender == MEGAN
    assert message.message.message_id == f"{thread}:1730825891594"
    assert not message.message.is_direct and not message.streams
    assert message.activity_id == "1730825891594"
    assert message.reference.conversation.id == thread
    assert message.reference.service_url == "https://smba.trafficmanager.net/amer/"
    assert message.reference.bot.id == BOT


def test_a_reply_in_the_thread_is_the_same_conversation_and_another_thread_is_not() -> None:
    first = inbound(raw("channel_mention")).message.key
    reply = raw("channel_mention")
    reply["id"] = "1730825999999"
    assert inbound(reply).message.key == first
    other = raw("channel_mention")
    other["conversation"]["id"] = f"{CHANNEL};messageid=1730826000000"
    assert inbound(other).message.key != first
    assert inbound(other).message.key.channel == first.channel


def test_personal_chat_is_direct_and_streams() -> None:
    message = inbound(raw("personal_message"))
    assert message.message.is_direct and message.streams
    assert message.message.text == "What does `git rebase --onto` do?"
    assert message.message.key.workspace == TENANT
    assert message.message.key.thread == raw("personal_message")["conversation"]["id"]


def test_group_chat_keeps_other_peoples_mentions_as_names() -> None:
    message = inbound(raw("group_chat_mention"))
    assert message.message.text == r"explain this regex: Adele Vance wrote ^\d{3}-\d{4}$"
    assert not message.streams


def test_only_the_bots_mention_markup_is_removed_not_its_name() -> None:
    data = raw("channel_mention")
    data["text"] = "<at>Code Helper</at> is Code Helper a good name for a bot?"
    assert to_question_text(parse(data)) == "is Code Helper a good name for a bot?"


def test_a_command_after_the_mention_is_the_command() -> None:
    data = raw("channel_mention")
    data["text"] = "<at>Code Helper</at>&nbsp;/reset"
    assert inbound(data).message.text == "/reset"


def test_a_mention_without_its_entity_is_removed_by_the_bots_name() -> None:
    data = raw("personal_message")
    data["text"] = "<at>Code Helper</at> /help"
    assert inbound(data).message.text == "/help"


def test_tenant_falls_back_to_the_conversation() -> None:
    data = raw("personal_message")
    del data["channelData"]
    assert inbound(data).message.key.workspace == TENANT


@pytest.mark.parametrize(
    "change",
    [
        "edit",
        "join",
        "no mention in a channel",
        "no mention in a group chat",
        "from this bot",
        "from another bot",
        "bot role",
        "no conversation",
    ],
)
def test_activities_the_bot_does_not_answer(change: str) -> None:
    data = raw("channel_mention")
    if change == "edit":
        data = raw("message_update")
    elif change == "join":
        data = raw("conversation_update")
    elif change == "no mention in a channel":
        data["entities"] = data["entities"][1:]
        data["text"] = "lunch anyone?"
    elif change == "no mention in a group chat":
        data = raw("group_chat_mention")
        data["entities"] = []
    elif change == "from this bot":
        data["from"] = {"id": BOT, "name": "Code Helper"}
    elif change == "from another bot":
        data["from"] = {"id": "28:0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d", "name": "Other bot"}
    elif change == "bot role":
        data["from"]["role"] = "bot"
    elif change == "no conversation":
        del data["conversation"]
    assert to_inbound(parse(data)) is None
