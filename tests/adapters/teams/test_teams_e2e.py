"""Teams end to end: activities shaped like Microsoft's samples POSTed to /api/messages of
the real aiohttp app, through botbuilder's real authentication and CloudAdapter, answered
through a fake Bot Connector; fake Ollama, real Redis and a real database."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest
from botbuilder.core import TurnContext
from botbuilder.schema import Activity

from adapters.app.builders import teams_credentials
from adapters.teams.app import build_teams_bot
from adapters.teams.sink import Outbox, TeamsReplySink
from bot import replies
from bot.tasks import TaskTracker
from tests.fakes.ollama import FakeOllama
from tests.fakes.teams import FakeBotConnector, FakeBotFrameworkLogin, rsa_key
from tests.support.fixtures_db import recorded, votes_on
from tests.support.harness import bot_settings
from tests.support.teams import (
    APP_ID,
    APP_PASSWORD,
    CHANNEL_THREAD,
    FAST,
    GROUP,
    PERSONAL,
    SQLITE_ONLY,
    TeamsBotUnderTest,
    activity,
    running_teams_bot,
)

# -- answering -------------------------------------------------------------------------


async def test_channel_mention_is_acked_at_once_and_answered_in_its_thread(
    teams_bot: TeamsBotUnderTest,
) -> None:
    teams_bot.ollama.reply = "Use `reversed()` or **slicing**: `items[::-1]`."
    teams_bot.ollama.first_token_delay = 0.4  # a slow model must not delay the ack
    started = time.monotonic()
    resp = await teams_bot.post(teams_bot.message("channel_mention"))
    assert resp.status == 202
    assert time.monotonic() - started < 0.35
    await teams_bot.settle()

    assert teams_bot.question() == "how do I reverse a list in Python?"
    assert teams_bot.connector.texts(CHANNEL_THREAD) == [teams_bot.ollama.reply]
    # One final message in a channel, posted as a reply to the message that asked.
    answer = [c for c in teams_bot.connector.calls if c.type == "message"]
    assert len(answer) == 1 and answer[0].stream_info is None
    assert answer[0].activity_id == "1730825891594"
    assert answer[0].body["textFormat"] == "markdown"
    assert teams_bot.connector.typing(CHANNEL_THREAD), "no typing indicator while the model works"
    # Every reply carried a token the (fake) Entra ID endpoint issued for this bot.
    assert {c.authorization for c in teams_bot.connector.calls} <= {
        f"Bearer {t}"
        for t in teams_bot.login.issued_tokens  # type: ignore[union-attr]
    }
    token_request = teams_bot.login.token_requests[0]  # type: ignore[union-attr]
    assert token_request["tenant"] == "botframework.com"
    assert token_request["scope"] == "https://api.botframework.com/.default"


async def test_personal_chat_streams_the_answer_with_teams_streaming_protocol(
    teams_bot: TeamsBotUnderTest,
) -> None:
    reply = "# Rebasing\n\nIt replays your commits **onto** another base.\n\n---\n\nDone."
    teams_bot.ollama.reply = reply
    teams_bot.ollama.chunk_size = 4
    teams_bot.ollama.token_delay = 0.02
    teams_bot.ollama.first_token_delay = 0.15
    resp = await teams_bot.post(teams_bot.message("personal_message"))
    assert resp.status == 202
    await teams_bot.settle()

    assert teams_bot.question() == "What does `git rebase --onto` do?"
    calls = teams_bot.connector.stream_calls(PERSONAL)
    updates = [c for c in calls if c.stream_info and c.stream_info["streamType"] == "streaming"]
    assert len(updates) >= 3, "the answer was not streamed"
    assert all(c.type == "typing" for c in updates)
    sequences = [c.stream_info["streamSequence"] for c in updates if c.stream_info]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    stream_id = teams_bot.connector.shown(PERSONAL)[0].id
    assert "streamId" not in (updates[0].stream_info or {})  # Teams assigns it on the first
    assert all((c.stream_info or {}).get("streamId") == stream_id for c in calls[1:])
    final = calls[-1]
    assert final.type == "message" and final.stream_info == {
        "type": "streaminfo",
        "streamId": stream_id,
        "streamType": "final",
    }
    # The fake refuses any update that does not extend the previous one; the final message
    # carries the whole answer in the Markdown Teams renders (no headings, no rules).
    expected = "**Rebasing**\n\nIt replays your commits **onto** another base.\n\n———\n\nDone."
    assert final.text == expected
    assert [(m.text, m.final) for m in teams_bot.connector.shown(PERSONAL)] == [(expected, True)]
    # The typing indicator showed while the model was loading, before the stream began.
    first_stream = teams_bot.connector.calls.index(calls[0])
    assert teams_bot.connector.typing(PERSONAL)
    assert all(
        teams_bot.connector.calls.index(t) < first_stream for t in teams_bot.connector.typing()
    )


async def test_group_chat_mention_gets_one_message_and_only_the_bots_mention_is_removed(
    teams_bot: TeamsBotUnderTest,
) -> None:
    teams_bot.ollama.chunk_size = 2
    await teams_bot.post(teams_bot.message("group_chat_mention"))
    await teams_bot.settle()
    assert teams_bot.question() == r"explain this regex: Adele Vance wrote ^\d{3}-\d{4}$"
    assert teams_bot.connector.texts(GROUP) == [teams_bot.ollama.reply]
    assert not teams_bot.connector.stream_calls(), "group chats get one final message"


async def test_a_redelivered_activity_is_answered_once(teams_bot: TeamsBotUnderTest) -> None:
    body = teams_bot.message("personal_message")
    responses = await asyncio.gather(*(teams_bot.post(body) for _ in range(3)))
    assert all(r.status == 202 for r in responses)
    await teams_bot.settle()
    assert (await teams_bot.post(body)).status == 202  # Teams retrying after a timeout
    await teams_bot.settle()
    assert len(teams_bot.ollama.requests) == 1
    assert len(teams_bot.connector.shown(PERSONAL)) == 1


async def test_each_conversation_and_channel_thread_has_its_own_memory(
    teams_bot: TeamsBotUnderTest,
) -> None:
    teams_bot.ollama.reply_fn = lambda messages: f"answer to {messages[-1]['content']}"
    await teams_bot.post(teams_bot.message("personal_message", "my name is Megan", id="1"))
    await teams_bot.settle()
    await teams_bot.post(teams_bot.message("personal_message", "what is my name?", id="2"))
    await teams_bot.settle()
    history = [(m["role"], m["content"]) for m in teams_bot.ollama.requests[1]["messages"][1:]]
    assert history == [
        ("user", "my name is Megan"),
        ("assistant", "answer to my name is Megan"),
        ("user", "what is my name?"),
    ]
    # A channel thread, and another thread of the same channel, start fresh.
    await teams_bot.post(teams_bot.message("channel_mention", "what is my name?"))
    other_thread = CHANNEL_THREAD.replace("1730825891594", "1730830000000")
    other = teams_bot.message("channel_mention", "and here?", id="1730830000000")
    other["conversation"]["id"] = other_thread
    await teams_bot.post(other)
    await teams_bot.settle()
    for request in teams_bot.ollama.requests[2:]:
        assert [m["role"] for m in request["messages"]] == ["system", "user"]
    assert teams_bot.connector.texts(other_thread) == ["answer to and here?"]


async def test_reset_help_and_model_commands_typed_after_the_mention(
    teams_bot: TeamsBotUnderTest,
) -> None:
    async def say(name: str, text: str, message_id: str) -> str:
        conversation = CHANNEL_THREAD if name == "channel_mention" else PERSONAL
        await teams_bot.post(teams_bot.message(name, text, id=message_id))
        await teams_bot.settle()
        return teams_bot.connector.texts(conversation)[-1]

    await say("channel_mention", "remember 42", "1730825899000")
    await say("personal_message", "remember 7", "10")
    assert await say("channel_mention", "/reset", "1730825899001") == replies.RESET_DONE
    help_text = await say("channel_mention", "/help", "1730825899002")
    assert all(command in help_text for command in ("/search", "/reset", "/help"))
    assert "codellama:7b" in await say("channel_mention", "/model", "1730825899003")
    assert len(teams_bot.ollama.requests) == 2, "commands do not reach the model"

    await say("channel_mention", "what did I say?", "1730825899004")
    await say("personal_message", "what did I say?", "11")
    channel, personal = (
        [m["content"] for m in r["messages"]] for r in teams_bot.ollama.requests[2:]
    )
    assert "remember 42" not in channel, "the channel thread was reset"
    assert "remember 7" in personal, "and only that conversation"


@SQLITE_ONLY
async def test_edits_joins_and_messages_without_a_mention_are_ignored(
    teams_bot: TeamsBotUnderTest,
) -> None:
    unmentioned = teams_bot.message("channel_mention", entities=[])
    unmentioned["text"] = "just chatting with colleagues"
    from_bot = teams_bot.message("personal_message")
    from_bot["from"] = {"id": f"28:{APP_ID}", "name": "Code Helper"}
    for body in (
        teams_bot.message("conversation_update"),
        teams_bot.message("message_update"),
        unmentioned,
        from_bot,
    ):
        assert (await teams_bot.post(body)).status == 200
    await teams_bot.settle()
    assert not teams_bot.ollama.requests
    assert not teams_bot.connector.calls


# -- authentication -------------------------------------------------------------------


def _bad_token(bot: TeamsBotUnderTest, kind: str) -> str | None:
    login = bot.login
    assert login is not None
    url = bot.connector.service_url
    return {
        "none": None,
        "garbage": "not-a-jwt",
        "wrong key": login.channel_token(url, key=rsa_key("intruder")),
        "expired": login.channel_token(url, lifetime=-3600),
        "other bot": login.channel_token(url, audience="00000000-1111-2222-3333-444444444444"),
        "other issuer": login.channel_token(url, issuer="https://sts.example.com/"),
        "other service url": login.channel_token("https://smba.trafficmanager.net/amer/"),
    }[kind]


@SQLITE_ONLY
@pytest.mark.parametrize(
    "kind",
    [
        "none",
        "garbage",
        "wrong key",
        "expired",
        "other bot",
        "other issuer",
        "other service url",
    ],
)
async def test_requests_failing_bot_framework_authentication_get_401_and_reach_nothing(
    teams_bot: TeamsBotUnderTest, kind: str
) -> None:
    resp = await teams_bot.post(
        teams_bot.message("personal_message"), token=_bad_token(teams_bot, kind)
    )
    assert resp.status == 401
    await teams_bot.settle()
    assert not teams_bot.ollama.requests
    assert not teams_bot.connector.calls


@SQLITE_ONLY
async def test_authentication_comes_before_the_body_is_parsed(
    teams_bot: TeamsBotUnderTest,
) -> None:
    login = teams_bot.login
    assert login is not None
    url = teams_bot.connector.service_url
    assert (await teams_bot.post("{not json", token="forged.token.here")).status == 401
    assert (await teams_bot.post("{not json", token=login.channel_token(url))).status == 400
    assert (await teams_bot.post("[1, 2]", token=login.channel_token(url))).status == 400
    no_type = teams_bot.message("personal_message")
    del no_type["type"]
    assert (await teams_bot.post(no_type)).status == 400
    resp = await teams_bot.post("{}", token=None, headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert resp.status == 401
    huge = json.dumps({**teams_bot.message("personal_message"), "text": "x" * 2_000_000})
    assert (await teams_bot.post(huge, token="forged.token.here")).status == 401
    assert (await teams_bot.post(huge, token=login.channel_token(url))).status == 413
    await teams_bot.settle()
    assert not teams_bot.ollama.requests and not teams_bot.connector.calls


@SQLITE_ONLY
async def test_without_an_app_id_teams_is_off(
    connector: FakeBotConnector, fake_ollama: FakeOllama, redis_url: str, database_url: str
) -> None:
    async for bot in running_teams_bot({}, connector, None, fake_ollama, redis_url, database_url):
        assert bot.runtime.teams is None
        resp = await bot.post(bot.message("personal_message"), token=None)
        assert resp.status == 401
        await bot.settle()
    assert not fake_ollama.requests and not connector.calls


@SQLITE_ONLY
async def test_local_testing_mode_accepts_unsigned_activities_from_this_machine_only(
    connector: FakeBotConnector,
    fake_ollama: FakeOllama,
    redis_url: str,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    overrides = {"teams_allow_unauthenticated": True}
    with caplog.at_level(logging.WARNING, logger="adapters.teams.app"):
        async for bot in running_teams_bot(
            overrides, connector, None, fake_ollama, redis_url, database_url
        ):
            assert any("UNSIGNED" in r.getMessage() for r in caplog.records)
            remote = bot.message(
                "personal_message", serviceUrl="https://smba.trafficmanager.net/amer/"
            )
            assert (await bot.post(remote, token=None)).status == 401
            assert (await bot.post(bot.message("channel_mention"), token=None)).status == 202
            await bot.settle()
            assert connector.texts(CHANNEL_THREAD) == [fake_ollama.reply]
            assert len(fake_ollama.requests) == 1
            assert all(c.authorization == "" for c in connector.calls)


# -- streaming limits, failures and long answers ------------------------------------------

LONG_ANSWER = " ".join(f"word{i}" for i in range(80))


def _slow_long_answer(bot: TeamsBotUnderTest) -> None:
    bot.ollama.reply = LONG_ANSWER
    bot.ollama.chunk_size = 12
    bot.ollama.token_delay = 0.006


@SQLITE_ONLY
async def test_the_users_stop_ends_the_stream_with_the_text_so_far(
    teams_bot: TeamsBotUnderTest,
) -> None:
    _slow_long_answer(teams_bot)
    teams_bot.connector.stop_after_updates = 2
    await teams_bot.post(teams_bot.message("personal_message"))
    await teams_bot.settle()
    refused = [c for c in teams_bot.connector.calls if c.status == 403]
    assert len(refused) == 1, "nothing more is sent once Teams says the stream was stopped"
    assert teams_bot.connector.calls[-1] is refused[0]
    [shown] = teams_bot.connector.shown(PERSONAL)
    assert shown.text and LONG_ANSWER.startswith(shown.text) and shown.text != LONG_ANSWER
    assert "wrong" not in shown.text.lower()
    # The model stopped generating too: the bot hung up on Ollama mid-answer.
    assert teams_bot.ollama.client_disconnects == 1
    rows = await recorded(teams_bot.runtime.engine)
    assert [r.outcome for r in rows] == ["cancelled"]


@SQLITE_ONLY
async def test_a_stream_near_teams_two_minute_limit_continues_in_a_new_message(
    teams_bot: TeamsBotUnderTest,
) -> None:
    _slow_long_answer(teams_bot)
    teams_bot.teams.options.stream_budget = 0.05  # stands in for Teams' two minutes
    await teams_bot.post(teams_bot.message("personal_message"))
    await teams_bot.settle()
    shown = teams_bot.connector.shown(PERSONAL)
    assert len(shown) >= 2
    assert all(m.streamed and m.final for m in shown)
    assert "".join(m.text for m in shown) == LONG_ANSWER
    assert not [c for c in teams_bot.connector.calls if c.status != 200]


@SQLITE_ONLY
async def test_a_stream_teams_ends_at_its_time_limit_keeps_its_text_and_the_answer_goes_on(
    teams_bot: TeamsBotUnderTest,
) -> None:
    _slow_long_answer(teams_bot)
    teams_bot.connector.stream_time_limit = 0.08  # Teams' clock runs out before ours
    await teams_bot.post(teams_bot.message("personal_message"))
    await teams_bot.settle()
    assert [c for c in teams_bot.connector.calls if c.status == 403], "the limit was not hit"
    shown = teams_bot.connector.shown(PERSONAL)
    assert len(shown) >= 2
    assert "".join(m.text for m in shown) == LONG_ANSWER


@SQLITE_ONLY
async def test_without_streaming_in_a_conversation_the_answer_is_one_message(
    teams_bot: TeamsBotUnderTest,
) -> None:
    _slow_long_answer(teams_bot)
    teams_bot.connector.streaming_enabled = False
    await teams_bot.post(teams_bot.message("personal_message"))
    await teams_bot.settle()
    assert teams_bot.connector.texts(PERSONAL) == [LONG_ANSWER]
    assert not any(m.streamed for m in teams_bot.connector.shown())


@SQLITE_ONLY
async def test_throttled_and_transient_failures_are_retried(teams_bot: TeamsBotUnderTest) -> None:
    def is_message(body: dict[str, Any]) -> bool:
        return body.get("type") == "message"

    def is_stream_update(body: dict[str, Any]) -> bool:
        return any(e.get("streamType") == "streaming" for e in body.get("entities") or [])

    teams_bot.connector.fail_next(429, code="Throttled", retry_after="0", when=is_message)
    teams_bot.connector.fail_next(412, code="PreconditionFailed", when=is_message)
    teams_bot.connector.fail_next(504, code="GatewayTimeout", when=is_message)
    await teams_bot.post(teams_bot.message("channel_mention"))
    await teams_bot.settle()
    assert teams_bot.connector.texts(CHANNEL_THREAD) == [teams_bot.ollama.reply]
    attempts = [c.status for c in teams_bot.connector.calls if c.type == "message"]
    assert attempts == [429, 412, 504, 200]

    teams_bot.connector.fail_next(502, code="BadGateway", when=is_stream_update)
    await teams_bot.post(teams_bot.message("personal_message"))
    await teams_bot.settle()
    assert [c.status for c in teams_bot.connector.calls if c.status != 200] == [429, 412, 504, 502]
    assert [(m.text, m.final) for m in teams_bot.connector.shown(PERSONAL)] == [
        (teams_bot.ollama.reply, True)
    ]


@SQLITE_ONLY
async def test_a_refused_message_is_not_retried(teams_bot: TeamsBotUnderTest) -> None:
    teams_bot.connector.fail_next(
        403, code="BotNotInConversationRoster", when=lambda body: body.get("type") == "message"
    )
    await teams_bot.post(teams_bot.message("channel_mention"))
    await teams_bot.settle()
    assert [c.status for c in teams_bot.connector.calls if c.type == "message"] == [403]


CODE_ANSWER = (
    "Here is how.\n\n"
    + "\n\n".join(f"Paragraph {i}: " + "lorem ipsum " * 6 for i in range(4))
    + "\n\n```python\n"
    + "\n".join(f"print({i})  # line {i}" for i in range(12))
    + "\n```\n\nThat's all. 🎉"
)


@SQLITE_ONLY
async def test_long_answers_are_split_below_the_message_limit_with_code_blocks_intact(
    teams_bot: TeamsBotUnderTest,
) -> None:
    teams_bot.teams.options.message_limit = 160
    teams_bot.ollama.reply = CODE_ANSWER
    teams_bot.ollama.chunk_size = 50
    await teams_bot.post(teams_bot.message("channel_mention"))
    await teams_bot.post(teams_bot.message("personal_message"))
    await teams_bot.settle()
    for conversation in (CHANNEL_THREAD, PERSONAL):
        texts = teams_bot.connector.texts(conversation)
        assert len(texts) >= 4
        assert all(len(t.encode("utf-16-le")) // 2 <= 160 for t in texts)
        assert all(t.count("```") % 2 == 0 for t in texts), "a code block left open"
        joined = "\n".join(texts)
        for i in range(12):
            assert f"print({i})  # line {i}" in joined
        assert texts[-1].endswith("That's all. 🎉")
    assert not [m for m in teams_bot.connector.shown(PERSONAL) if m.streamed and not m.final]


# -- the reply sink's status (queue position) ----------------------------------------------


async def _reply_directly(bot: TeamsBotUnderTest, name: str, streaming: bool) -> None:
    """Drive one TeamsReplySink as the core does for a queued question."""
    reference = TurnContext.get_conversation_reference(Activity().deserialize(bot.message(name)))

    async def turn(context: TurnContext) -> None:
        sink = TeamsReplySink(outbox=Outbox(context, FAST), streaming=streaming, options=FAST)
        await sink.status("Queued — #2 in line.")
        await sink.status("Queued — #1 in line.")
        await sink.write("Hello")
        await sink.write(" **world**")
        await sink.close()

    await bot.teams.adapter.continue_conversation(reference, turn, bot_app_id=APP_ID)


@SQLITE_ONLY
async def test_queue_position_is_an_informative_update_in_a_personal_chat(
    teams_bot: TeamsBotUnderTest,
) -> None:
    await _reply_directly(teams_bot, "personal_message", streaming=True)
    calls = teams_bot.connector.stream_calls(PERSONAL)
    kinds = [(c.stream_info or {}).get("streamType") for c in calls]
    assert kinds[:2] == ["informative", "informative"] and kinds[-1] == "final"
    assert calls[0].text == "Queued — #2 in line."
    assert teams_bot.connector.texts(PERSONAL) == ["Hello **world**"]


@SQLITE_ONLY
async def test_queue_position_in_a_channel_is_a_message_the_answer_replaces(
    teams_bot: TeamsBotUnderTest,
) -> None:
    await _reply_directly(teams_bot, "channel_mention", streaming=False)
    updates = [c for c in teams_bot.connector.calls if c.method == "PUT"]
    assert [c.text for c in updates] == ["_Queued — #1 in line._", "Hello **world**"]
    assert teams_bot.connector.texts(CHANNEL_THREAD) == ["Hello **world**"]


# -- credentials -----------------------------------------------------------------------------


@SQLITE_ONLY
async def test_single_tenant_bots_get_their_tokens_from_their_own_tenant(
    connector: FakeBotConnector,
    login: FakeBotFrameworkLogin,
    fake_ollama: FakeOllama,
    redis_url: str,
    database_url: str,
) -> None:
    tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    connector.accepted_tokens = lambda: login.issued_tokens
    overrides = {
        "microsoft_app_id": APP_ID,
        "microsoft_app_password": APP_PASSWORD,
        "microsoft_app_type": "SingleTenant",
        "microsoft_app_tenant_id": tenant,
    }
    async for bot in running_teams_bot(
        overrides, connector, login, fake_ollama, redis_url, database_url
    ):
        await bot.post(bot.message("channel_mention"))
        await bot.post(bot.message("personal_message"))
        await bot.settle()
        assert connector.texts(CHANNEL_THREAD) == [fake_ollama.reply]
        assert connector.texts(PERSONAL) == [fake_ollama.reply]
    assert [r["tenant"] for r in login.token_requests] == [tenant], "one token, reused"


@SQLITE_ONLY
async def test_a_wrong_client_secret_is_logged_with_what_to_fix(
    connector: FakeBotConnector,
    login: FakeBotFrameworkLogin,
    fake_ollama: FakeOllama,
    redis_url: str,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    overrides = {"microsoft_app_id": APP_ID, "microsoft_app_password": "wrong"}
    async for bot in running_teams_bot(
        overrides, connector, login, fake_ollama, redis_url, database_url
    ):
        assert (await bot.post(bot.message("personal_message"))).status == 202
        await bot.settle()
    assert not connector.calls
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("AADSTS7000215" in m and "MICROSOFT_APP_PASSWORD" in m for m in errors)
    assert not any("wrong" in m for m in errors), "the secret is never logged"


@SQLITE_ONLY
async def test_unreachable_signing_keys_refuse_requests_with_503(
    teams_bot: TeamsBotUnderTest,
) -> None:
    assert teams_bot.login is not None
    token = teams_bot.login.channel_token(teams_bot.connector.service_url)
    await teams_bot.login.stop()  # login.botframework.com is down before the first request
    resp = await teams_bot.post(teams_bot.message("personal_message"), token=token)
    assert resp.status == 503
    await teams_bot.settle()
    assert not teams_bot.ollama.requests and not teams_bot.connector.calls


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"microsoft_app_type": "SingleTenant"}, "MICROSOFT_APP_TENANT_ID"),
        (
            {"microsoft_app_type": "SingleTenant", "microsoft_app_password": None},
            "MICROSOFT_APP_PASSWORD",
        ),
        ({"microsoft_app_type": "UserAssignedMSI"}, "MICROSOFT_APP_TENANT_ID"),
    ],
)
def test_an_incomplete_configuration_turns_teams_off_and_says_why(
    overrides: dict[str, Any], problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = bot_settings(
        **{"microsoft_app_id": APP_ID, "microsoft_app_password": APP_PASSWORD, **overrides}
    )
    bot = build_teams_bot(
        credentials=teams_credentials(settings),
        allow_unauthenticated=False,
        assistant=None,  # type: ignore[arg-type]
        tracker=TaskTracker(),
    )
    assert bot is None
    assert any(problem in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


async def test_a_replica_taking_over_replaces_the_partial_answer_it_finds(
    teams_bot: TeamsBotUnderTest, redis_url: str
) -> None:
    from redis.asyncio import Redis

    from bot.jobs import ReplyTo, TeamsActivity
    from bot.workqueue import Job, JobProgress, WorkQueue

    body = teams_bot.message("group_chat_mention", "what is a monad?")
    teams_bot.ollama.reply = "A monoid in the category of endofunctors."
    await teams_bot.post(body)
    await teams_bot.settle()
    (partial,) = teams_bot.connector.shown(GROUP)
    # The replica that answered died before acknowledging: another one takes the job over
    # with the message ids that were recorded as they were posted.
    client = Redis.from_url(redis_url)
    queue = WorkQueue(redis=client, tracker=teams_bot.runtime.tracker)
    work = TeamsActivity(activity=body, reply_to=ReplyTo("teams", conversation=body))
    job = Job("1-0", work, True, (partial.id,), deliveries=2)
    await teams_bot.teams.handle_job(job, JobProgress(queue, job.id))
    await client.aclose()
    shown = teams_bot.connector.shown(GROUP)
    assert [m.text for m in shown] == ["A monoid in the category of endofunctors."]
    assert shown[0].id != partial.id
    assert [c.activity_id for c in teams_bot.connector.calls if c.method == "DELETE"] == [
        partial.id
    ]


# -- feedback --------------------------------------------------------------------------


def feedback_invoke(
    bot: TeamsBotUnderTest, name: str, reply_to_id: str, reaction: str
) -> dict[str, Any]:
    """The `message/submitAction` invoke Teams sends when someone rates a bot message with
    its feedback buttons (and submits the optional form)."""
    base = bot.message(name)
    for field in ("text", "textFormat", "entities"):
        base.pop(field, None)
    return {
        **base,
        "type": "invoke",
        "name": "message/submitAction",
        "id": f"f:{reply_to_id}:{reaction}",
        "replyToId": reply_to_id,
        "value": {
            "actionName": "feedback",
            "actionValue": {
                "reaction": reaction,
                "feedback": json.dumps({"feedbackText": "short and right"}),
            },
        },
    }


@pytest.mark.parametrize(
    ("name", "conversation"), [("personal_message", PERSONAL), ("channel_mention", CHANNEL_THREAD)]
)
async def test_teams_votes_are_recorded_against_the_answer_and_replaced(
    teams_bot: TeamsBotUnderTest, name: str, conversation: str
) -> None:
    teams_bot.ollama.reply = "Use `git rebase --onto new old`."
    await teams_bot.post(teams_bot.message(name))
    await teams_bot.settle()
    (answer,) = teams_bot.connector.shown(conversation)
    assert answer.ai_generated and answer.feedback, "no feedback buttons under the answer"
    (row,) = await recorded(teams_bot.runtime.engine)
    assert row.answer_id

    resp = await teams_bot.post(feedback_invoke(teams_bot, name, answer.id, "like"))
    assert resp.status == 200 and resp.headers.get("Content-Length") == "0"
    voter = "teams:e1b3d7b9-48d3-4ab3-9f3b-0a0e6d3c2a11"
    if name == "channel_mention":
        data = activity(name)
        voter = f"teams:{data['from']['aadObjectId']}"
    assert await votes_on(teams_bot.runtime.engine, row.answer_id) == {voter: "up"}

    # The same person changes their mind: one vote, the latest.
    resp = await teams_bot.post(feedback_invoke(teams_bot, name, answer.id, "dislike"))
    assert resp.status == 200
    assert await votes_on(teams_bot.runtime.engine, row.answer_id) == {voter: "down"}
    # Nothing was posted in the conversation for the votes, and no model was asked.
    assert len(teams_bot.connector.shown(conversation)) == 1
    assert len(teams_bot.ollama.requests) == 1


@SQLITE_ONLY
async def test_teams_commands_carry_no_feedback_and_a_vote_on_them_is_not_recorded(
    teams_bot: TeamsBotUnderTest,
) -> None:
    await teams_bot.post(teams_bot.message("personal_message", "/help"))
    await teams_bot.settle()
    (help_reply,) = teams_bot.connector.shown(PERSONAL)
    assert not help_reply.feedback and not help_reply.ai_generated
    resp = await teams_bot.post(
        feedback_invoke(teams_bot, "personal_message", help_reply.id, "like")
    )
    assert resp.status == 200
    engine = teams_bot.runtime.ledger._engine
    async with engine.connect() as connection:
        from sqlalchemy import text

        assert (await connection.execute(text("SELECT count(*) FROM votes"))).scalar() == 0
