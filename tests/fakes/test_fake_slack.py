"""FakeSlack driven through the real slack_sdk AsyncWebClient, as the product drives Slack."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.models.messages.chunk import MarkdownTextChunk
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from tests.fakes.slack import FakeSlack

TOKEN = "xoxb-test"
CHANNEL = "C0CHANNEL"
USER = "U0PERSON"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(bot_token=TOKEN, team_id="T1", bot_user_id="UBOT", bot_id="BBOT")
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def client(fake: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=TOKEN, base_url=fake.api_url)


def start_ts(fake: FakeSlack) -> str:
    """The ts chat.startStream answered with (the streamed reply's ts)."""
    (reply,) = [m for m in fake.messages(CHANNEL, "1700000000.000001") if m.is_stream]
    return reply.ts


def _error(exc: pytest.ExceptionInfo[SlackApiError]) -> str:
    return str(exc.value.response["error"])


async def test_api_url_looks_like_slacks(fake: FakeSlack) -> None:
    assert fake.api_url.startswith("http://127.0.0.1:")
    assert fake.api_url.endswith("/api/")


async def test_auth_test_names_the_bot(fake: FakeSlack, client: AsyncWebClient) -> None:
    resp = await client.auth_test()
    assert resp["ok"] is True
    assert (resp["team_id"], resp["user_id"], resp["bot_id"]) == ("T1", "UBOT", "BBOT")
    assert resp["url"].startswith("https://")
    (call,) = fake.calls
    assert call.method == "auth.test" and call.error is None and "token" not in call.args


async def test_wrong_or_missing_token(fake: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as wrong:
        await AsyncWebClient(token="xoxb-wrong", base_url=fake.api_url).auth_test()
    assert _error(wrong) == "invalid_auth"
    with pytest.raises(SlackApiError) as missing:
        await AsyncWebClient(base_url=fake.api_url).chat_postMessage(channel=CHANNEL, text="x")
    assert _error(missing) == "not_authed"
    assert fake.messages(CHANNEL) == []


async def test_unknown_method(fake: FakeSlack, client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as exc:
        await client.api_call("chat.nonsense", json={"channel": CHANNEL})
    assert _error(exc) == "unknown_method"


async def test_post_and_update_show_the_final_text(fake: FakeSlack, client: AsyncWebClient) -> None:
    first = await client.chat_postMessage(channel=CHANNEL, text="thinking…")
    second = await client.chat_postMessage(channel=CHANNEL, text="another")
    assert float(second["ts"]) > float(first["ts"])
    assert first["channel"] == CHANNEL and first["message"]["text"] == "thinking…"
    await client.chat_update(channel=CHANNEL, ts=first["ts"], text="*done*")
    assert [(m.text, m.user, m.edited) for m in fake.messages(CHANNEL)] == [
        ("*done*", "UBOT", True),
        ("another", "UBOT", False),
    ]
    assert fake.calls_to("chat.update")[0].args["text"] == "*done*"


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
async def test_post_message_errors(fake: FakeSlack, client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as no_text:
        await client.chat_postMessage(channel=CHANNEL, text="")
    assert _error(no_text) == "no_text"
    with pytest.raises(SlackApiError) as conflict:
        await client.chat_postMessage(channel=CHANNEL, text="a", markdown_text="**a**")
    assert _error(conflict) == "markdown_text_conflict"
    with pytest.raises(SlackApiError) as too_long:
        await client.chat_postMessage(channel=CHANNEL, markdown_text="x" * 12_001)
    assert _error(too_long) == "msg_too_long"
    assert fake.messages(CHANNEL) == []
    assert [c.error for c in fake.calls] == ["no_text", "markdown_text_conflict", "msg_too_long"]


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
async def test_markdown_text_and_blocks_are_what_people_read(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    await client.chat_postMessage(channel=CHANNEL, markdown_text="**hello**")
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "from *blocks*"}}]
    await client.chat_postMessage(channel=CHANNEL, text="fallback", blocks=blocks)
    md, with_blocks = fake.messages(CHANNEL)
    assert (md.text, md.markdown) == ("**hello**", True)
    assert (with_blocks.text, with_blocks.blocks) == ("from *blocks*", tuple(blocks))


async def test_update_and_delete_unknown_or_foreign_messages(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    with pytest.raises(SlackApiError) as unknown:
        await client.chat_update(channel=CHANNEL, ts="1600000000.000001", text="x")
    assert _error(unknown) == "message_not_found"
    theirs = fake.add_message(CHANNEL, "a person's words", user=USER)
    with pytest.raises(SlackApiError) as foreign:
        await client.chat_update(channel=CHANNEL, ts=theirs, text="x")
    assert _error(foreign) == "cant_update_message"
    with pytest.raises(SlackApiError) as not_ours:
        await client.chat_delete(channel=CHANNEL, ts=theirs)
    assert _error(not_ours) == "cant_delete_message"
    mine = await client.chat_postMessage(channel=CHANNEL, text="oops")
    await client.chat_delete(channel=CHANNEL, ts=mine["ts"])
    assert [m.text for m in fake.messages(CHANNEL)] == ["a person's words"]


async def test_threads_replies_and_conversations_replies(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    parent = fake.add_message(CHANNEL, "question?", user=USER)
    await client.chat_postMessage(channel=CHANNEL, thread_ts=parent, text="answer 1")
    await client.chat_postMessage(channel=CHANNEL, thread_ts=parent, text="answer 2")
    await client.chat_postMessage(
        channel=CHANNEL, thread_ts=parent, text="also in channel", reply_broadcast=True
    )
    assert fake.thread_text(CHANNEL, parent) == "answer 1\nanswer 2\nalso in channel"
    assert [m.text for m in fake.messages(CHANNEL)] == ["question?", "also in channel"]
    assert all(m.thread_ts == parent for m in fake.messages(CHANNEL, parent))

    resp = await client.conversations_replies(channel=CHANNEL, ts=parent)
    texts = [m["text"] for m in resp["messages"]]
    assert texts == ["question?", "answer 1", "answer 2", "also in channel"]
    assert resp["messages"][0]["reply_count"] == 3
    assert fake.calls_to("conversations.replies")[0].args == {"channel": CHANNEL, "ts": parent}
    with pytest.raises(SlackApiError) as missing:
        await client.conversations_replies(channel=CHANNEL, ts="1600000000.000009")
    assert _error(missing) == "thread_not_found"


async def test_replies_to_a_thread_the_fake_never_saw(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    # Events come from fixtures, so the parent is usually unknown to the fake.
    await client.chat_postMessage(channel=CHANNEL, thread_ts="1699999999.000001", text="hi")
    assert fake.thread_text(CHANNEL, "1699999999.000001") == "hi"
    assert fake.messages(CHANNEL) == []


async def test_one_429_is_survived_with_the_rate_limit_retry_handler(fake: FakeSlack) -> None:
    client = AsyncWebClient(
        token=TOKEN,
        base_url=fake.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    fake.fail_next("chat.postMessage", retry_after=1)
    resp = await client.chat_postMessage(channel=CHANNEL, text="eventually")
    assert resp["ok"] is True
    refused, accepted = fake.calls_to("chat.postMessage")
    assert (refused.status, refused.error) == (429, "ratelimited")
    assert (accepted.status, accepted.error) == (200, None)
    assert accepted.at - refused.at >= 1.0  # Retry-After was honoured
    assert [m.text for m in fake.messages(CHANNEL)] == ["eventually"]


async def test_429_without_a_retry_handler_is_an_error_with_retry_after(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    fake.fail_next("chat.update", retry_after=7)
    with pytest.raises(SlackApiError) as exc:
        await client.chat_update(channel=CHANNEL, ts="1700000000.000100", text="x")
    assert exc.value.response.status_code == 429
    assert exc.value.response.headers["Retry-After"] == "7"
    assert _error(exc) == "ratelimited"


async def test_fail_next_with_an_api_error(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.fail_next("chat.postMessage", error="channel_not_found", status=200, times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as exc:
            await client.chat_postMessage(channel=CHANNEL, text="x")
        assert exc.value.response.status_code == 200 and _error(exc) == "channel_not_found"
    await client.chat_postMessage(channel=CHANNEL, text="third time")
    assert [m.text for m in fake.messages(CHANNEL)] == ["third time"]


async def test_a_stream_is_one_reply_with_all_its_text(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    parent = fake.add_message(CHANNEL, "explain", user=USER)
    started = await client.chat_startStream(
        channel=CHANNEL,
        thread_ts=parent,
        recipient_team_id="T1",
        recipient_user_id=USER,
        markdown_text="Hello",
    )
    ts = started["ts"]
    (live,) = fake.messages(CHANNEL, parent)
    assert (live.text, live.is_stream, live.streaming) == ("Hello", True, True)
    await client.chat_appendStream(channel=CHANNEL, ts=ts, markdown_text=", **wor")
    await client.chat_appendStream(
        channel=CHANNEL, ts=ts, chunks=[{"type": "markdown_text", "text": "ld**"}]
    )
    await client.chat_stopStream(channel=CHANNEL, ts=ts, chunks=[MarkdownTextChunk(text="!")])
    (reply,) = fake.messages(CHANNEL, parent)
    assert (reply.ts, reply.text, reply.is_stream, reply.streaming) == (
        ts,
        "Hello, **world**!",
        True,
        False,
    )
    assert reply.user == "UBOT" and reply.markdown
    assert fake.calls_to("chat.startStream")[0].args["recipient_user_id"] == USER

    with pytest.raises(SlackApiError) as late:
        await client.chat_appendStream(channel=CHANNEL, ts=ts, markdown_text="more")
    assert _error(late) == "message_not_in_streaming_state"
    assert fake.thread_text(CHANNEL, parent) == "Hello, **world**!"


async def test_stream_argument_errors(fake: FakeSlack, client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as no_recipient:
        await client.chat_startStream(channel=CHANNEL, thread_ts="1700000000.000001")
    assert _error(no_recipient) == "missing_recipient_team_id"
    with pytest.raises(SlackApiError) as no_user:
        await client.chat_startStream(
            channel=CHANNEL, thread_ts="1700000000.000001", recipient_team_id="T1"
        )
    assert _error(no_user) == "missing_recipient_user_id"
    with pytest.raises(SlackApiError) as no_thread:
        await client.api_call("chat.startStream", json={"channel": CHANNEL})
    assert _error(no_thread) == "invalid_arguments"
    assert "thread_ts" in no_thread.value.response["response_metadata"]["messages"][0]
    with pytest.raises(SlackApiError) as bad_chunk:
        await client.chat_startStream(
            channel=CHANNEL,
            thread_ts="1700000000.000001",
            recipient_team_id="T1",
            recipient_user_id=USER,
            chunks=[{"text": "no type"}],
        )
    assert _error(bad_chunk) == "invalid_chunks"
    with pytest.raises(SlackApiError) as unknown:
        await client.chat_appendStream(channel=CHANNEL, ts="1600000000.000001", markdown_text="x")
    assert _error(unknown) == "message_not_found"
    assert fake.messages(CHANNEL, "1700000000.000001") == []


async def test_refused_streaming_is_unknown_method(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.refuse_streaming = True
    with pytest.raises(SlackApiError) as exc:
        await client.chat_startStream(
            channel=CHANNEL,
            thread_ts="1700000000.000001",
            recipient_team_id="T1",
            recipient_user_id=USER,
            markdown_text="hi",
        )
    assert _error(exc) == "unknown_method"
    streamer = await client.chat_stream(
        channel=CHANNEL,
        thread_ts="1700000000.000001",
        recipient_team_id="T1",
        recipient_user_id=USER,
    )
    with pytest.raises(SlackApiError) as helper:
        await streamer.append(markdown_text="x" * 300)  # past the buffer: startStream
    assert _error(helper) == "unknown_method"
    assert fake.messages(CHANNEL, "1700000000.000001") == []
    # Plain messages still work: the fallback path.
    await client.chat_postMessage(channel=CHANNEL, thread_ts="1700000000.000001", text="ok")
    assert fake.thread_text(CHANNEL, "1700000000.000001") == "ok"


async def test_chat_stream_helper_end_to_end(fake: FakeSlack, client: AsyncWebClient) -> None:
    parent = "1700000000.000001"
    streamer = await client.chat_stream(
        channel=CHANNEL,
        thread_ts=parent,
        recipient_team_id="T1",
        recipient_user_id=USER,
        buffer_size=20,
    )
    pieces = ["Use ", "`reversed()` ", "or ", "**slicing**", ": ", "`xs[::-1]`", "."]
    for piece in pieces:
        await streamer.append(markdown_text=piece)
    # The helper buffers: a call goes out only once 20 characters have accumulated.
    start, append = fake.calls
    assert (start.method, append.method) == ("chat.startStream", "chat.appendStream")
    assert start.args["chunks"] == [{"type": "markdown_text", "text": "Use `reversed()` or "}]
    assert append.args["chunks"] == [{"type": "markdown_text", "text": "**slicing**: `xs[::-1]`"}]
    assert streamer.ts == start_ts(fake)
    await streamer.stop()  # flushes the buffered "."
    assert [c.method for c in fake.calls][2:] == ["chat.stopStream"]
    assert fake.calls[2].args["chunks"] == [{"type": "markdown_text", "text": "."}]
    (reply,) = fake.messages(CHANNEL, parent)
    assert reply.ts == streamer.ts
    assert reply.text == "".join(pieces)
    assert not reply.streaming
    with pytest.raises(SlackRequestError):
        await streamer.append(markdown_text="late")


async def test_chat_stream_helper_with_short_text_starts_at_stop(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    streamer = await client.chat_stream(
        channel=CHANNEL,
        thread_ts="1700000000.000001",
        recipient_team_id="T1",
        recipient_user_id=USER,
    )
    await streamer.append(markdown_text="short")
    assert fake.calls == []  # under the default 256-character buffer
    await streamer.stop()
    start, stop = fake.calls
    assert (start.method, stop.method) == ("chat.startStream", "chat.stopStream")
    assert "chunks" not in start.args and "markdown_text" not in start.args
    assert stop.args["chunks"] == [{"type": "markdown_text", "text": "short"}]
    assert fake.thread_text(CHANNEL, "1700000000.000001") == "short"


async def test_assistant_status_is_recorded_and_cleared_by_a_reply(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    thread = "1700000000.000001"
    await client.assistant_threads_setStatus(
        channel_id=CHANNEL, thread_ts=thread, status="is thinking…"
    )
    assert fake.status(CHANNEL, thread) == "is thinking…"
    await client.chat_postMessage(channel=CHANNEL, thread_ts=thread, text="done")
    assert fake.status(CHANNEL, thread) == ""


async def test_users_info(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.add_user(USER, real_name="Ada Lovelace", tz="Europe/London")
    ada = (await client.users_info(user=USER))["user"]
    assert (ada["id"], ada["real_name"], ada["is_bot"]) == (USER, "Ada Lovelace", False)
    bot = (await client.users_info(user="UBOT"))["user"]
    assert bot["is_bot"] is True
    with pytest.raises(SlackApiError) as exc:
        await client.users_info(user="not-a-user")
    assert _error(exc) == "user_not_found"


async def test_form_encoded_and_get_requests_carry_their_arguments(fake: FakeSlack) -> None:
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        form = {"channel": CHANNEL, "text": "via form"}
        async with http.post(f"{fake.api_url}chat.postMessage", data=form, headers=headers) as r:
            posted = await r.json()
        async with http.post(
            f"{fake.api_url}chat.postMessage", data={"token": TOKEN, **form, "text": "token"}
        ) as r:
            assert (await r.json())["ok"] is True
        async with http.get(
            f"{fake.api_url}conversations.replies",
            params={"channel": CHANNEL, "ts": posted["ts"]},
            headers=headers,
        ) as r:
            replies = await r.json()
    assert posted["ok"] is True
    assert [m["text"] for m in replies["messages"]] == ["via form"]
    assert [m.text for m in fake.messages(CHANNEL)] == ["via form", "token"]


async def test_response_url_records_posts(fake: FakeSlack) -> None:
    url = fake.response_url()
    webhook = AsyncWebhookClient(url)
    resp = await webhook.send(text="only you can see this", response_type="ephemeral")
    assert resp.status_code == 200
    assert fake.responses == [{"text": "only you can see this", "response_type": "ephemeral"}]
    assert fake.responses_to("r1") == fake.responses
    assert fake.messages(CHANNEL) == []


async def test_in_channel_response_shows_in_its_channel_and_url_expires(fake: FakeSlack) -> None:
    webhook = AsyncWebhookClient(fake.response_url("cmd", channel=CHANNEL, user=USER))
    await webhook.send(text="for everyone", response_type="in_channel")
    await webhook.send(text="edited", replace_original=True)
    assert [m.text for m in fake.messages(CHANNEL)] == ["edited"]
    for _ in range(3):
        await webhook.send(text="again", response_type="ephemeral")
    expired = await webhook.send(text="sixth")
    assert expired.status_code == 404 and expired.body == "used_url"


async def test_wait_for(fake: FakeSlack, client: AsyncWebClient) -> None:
    await client.chat_postMessage(channel=CHANNEL, text="hi")
    await fake.wait_for(lambda f: f.messages(CHANNEL), timeout=1)
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"chat\.postMessage -> ok"):
        await fake.wait_for(lambda f: len(f.calls) > 5, timeout=0.2)
    assert time.monotonic() - started < 1
