"""Which Slack events the bot answers, and how they map to conversations."""

from __future__ import annotations

from adapters.slack.events import to_inbound, to_question_text
from tests.support.slack_payloads import (
    BOT_USER,
    CHANNEL,
    TEAM,
    USER,
    channel_message,
    dm,
    load,
    mention,
)


def inbound(body: dict) -> object:
    return to_inbound(body["event"], team_id=body["team_id"], bot_user_id=BOT_USER)


def test_mention_in_channel_answers_in_that_messages_thread() -> None:
    result = inbound(mention("what is a monad?", "1700000000.000100"))
    assert result is not None
    assert result.kind == "mention"
    assert result.message.text == "what is a monad?"
    assert result.reply_thread_ts == "1700000000.000100"
    assert result.starts_thread
    assert (result.key.workspace, result.key.channel, result.key.thread) == (
        TEAM,
        CHANNEL,
        "1700000000.000100",
    )


def test_app_mention_and_message_events_for_one_mention_share_the_message_id() -> None:
    a = inbound(mention("hi", "1700000000.000100"))
    m = inbound(channel_message(f"<@{BOT_USER}> hi", "1700000000.000100"))
    assert a is not None and m is not None
    assert a.message.message_id == m.message.message_id
    assert a.key == m.key


def test_mention_inside_a_thread_keeps_the_threads_conversation() -> None:
    result = inbound(mention("and now?", "1700000000.000200", thread_ts="1700000000.000100"))
    assert result is not None
    assert result.key.thread == "1700000000.000100"
    assert not result.starts_thread


def test_thread_reply_without_mention_needs_an_engaged_thread() -> None:
    result = inbound(
        channel_message("follow up", "1700000000.000200", thread_ts="1700000000.000100")
    )
    assert result is not None and result.kind == "thread_reply"


def test_thread_reply_mentioning_someone_else_is_not_for_the_bot() -> None:
    body = channel_message(
        "<@U999OTHER> can you look?", "1700000000.000200", thread_ts="1700000000.000100"
    )
    assert inbound(body) is None


def test_top_level_channel_message_without_mention_is_ignored() -> None:
    assert inbound(channel_message("just chatting", "1700000000.000300")) is None


def test_dm_top_level_is_one_rolling_conversation_and_threads_are_their_own() -> None:
    first = inbound(dm("hello", "1700000000.000100"))
    second = inbound(dm("again", "1700000000.000500"))
    threaded = inbound(dm("in a thread", "1700000000.000600", thread_ts="1700000000.000100"))
    assert first is not None and second is not None and threaded is not None
    assert first.key == second.key and first.reply_thread_ts is None
    assert first.kind == "direct" and first.message.is_direct
    assert threaded.key != first.key and threaded.reply_thread_ts == "1700000000.000100"


def test_edits_deletions_joins_and_bots_are_ignored() -> None:
    for name in ("message_changed", "message_deleted", "channel_join", "bot_message"):
        assert inbound(load(name)) is None, name


def test_the_bots_own_messages_are_ignored() -> None:
    body = channel_message(
        "an answer", "1700000000.000200", thread_ts="1700000000.000100", user=BOT_USER
    )
    assert inbound(body) is None
    body = dm("echo", "1700000000.000200")
    body["event"]["bot_id"] = "B0LAN0Z89"
    assert inbound(body) is None


def test_question_text_unescapes_slack_markup() -> None:
    raw = (
        f"<@{BOT_USER}> why does `a &lt; b &amp;&amp; c &gt; d` fail? "
        "see <https://x.io/a|x.io/a> <@U777>"
    )
    assert to_question_text(raw, BOT_USER) == ("why does `a < b && c > d` fail? see x.io/a <@U777>")
    assert (
        to_question_text("<mailto:a@b.co|a@b.co> <http://e.com>", BOT_USER) == "a@b.co http://e.com"
    )


def test_payload_without_user_or_text_is_ignored_safely() -> None:
    body = mention("x", "1700000000.000100")
    del body["event"]["user"]
    assert inbound(body) is None
    body = mention("x", "1700000000.000100")
    body["event"]["text"] = None
    result = inbound(body)
    assert result is not None and result.message.text == ""
    assert USER
