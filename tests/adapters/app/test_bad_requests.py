"""Bad requests with a valid signature get a 4xx at once, never a 500 or a traceback, and the
bot keeps answering: targeted cases, then property-based fuzzing (hypothesis) of the Slack
and Teams routes over the payload shapes each platform documents."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.harness import SIGNING_SECRET, SlackBotUnderTest, sign
from tests.support.slack_payloads import mention, slash
from tests.support.teams import TeamsBotUnderTest

TS = "1700000000.000100"


async def _post_slack(
    bot: SlackBotUnderTest, raw: bytes, content_type: str = "application/json"
) -> tuple[int, str]:
    """POST ``raw`` signed as Slack signs: an HMAC over the bytes, whatever they hold."""
    ts = str(int(time.time()))
    digest = hmac.new(SIGNING_SECRET.encode(), f"v0:{ts}:".encode() + raw, hashlib.sha256)
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest.hexdigest()}",
    }
    async with bot.http.post(f"{bot.url}/slack/events", data=raw, headers=headers) as resp:
        return resp.status, await resp.text()


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert bad == [], [r.getMessage() for r in bad]


def test_the_test_signature_is_slacks() -> None:
    raw = json.dumps(mention("hi", TS))
    headers = sign(raw)
    base = f"v0:{headers['X-Slack-Request-Timestamp']}:{raw}".encode()
    expected = hmac.new(SIGNING_SECRET.encode(), base, hashlib.sha256).hexdigest()
    assert headers["X-Slack-Signature"] == f"v0={expected}"


async def test_signed_event_whose_event_is_not_an_object_is_400(
    slack_bot: SlackBotUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    for event in ([1, 2], "text", None, 3, {"no": "type"}):
        body = {"type": "event_callback", "team_id": "T1", "event": event}
        status, text = await _post_slack(slack_bot, json.dumps(body).encode())
        assert status == 400 and "Traceback" not in text, event
    _no_tracebacks(caplog)


async def test_signed_body_that_is_not_utf8_is_400_not_401(slack_bot: SlackBotUnderTest) -> None:
    status, text = await _post_slack(slack_bot, b'{"type": "event_callback", "x": "\xff\xfe"}')
    assert status == 400 and "UTF-8" in text


async def test_signed_mention_or_command_missing_fields_is_400_at_once(
    slack_bot: SlackBotUnderTest,
) -> None:
    event = mention("hi", TS)
    for field in ("user", "channel", "ts"):
        broken = {**event, "event": {k: v for k, v in event["event"].items() if k != field}}
        status, text = await _post_slack(slack_bot, json.dumps(broken).encode())
        assert status == 400 and field in text, field
    form = slash("/ask", "hi", response_url=slack_bot.slack.response_url())
    for field in ("user_id", "channel_id", "team_id", "response_url"):
        raw = urlencode({k: v for k, v in form.items() if k != field}).encode()
        status, text = await _post_slack(slack_bot, raw, "application/x-www-form-urlencoded")
        assert status == 400 and field in text, field
    await slack_bot.settle()
    assert slack_bot.slack.calls_to("chat.postMessage") == []
    assert slack_bot.ollama.requests == []


# -- fuzzing ---------------------------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_json = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_maybe = st.one_of(st.just(None), _json)


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


_slack_event = st.builds(
    lambda kind, user, channel, ts, text, thread, subtype, extra: _drop_none(
        {
            "type": kind,
            "user": user,
            "channel": channel,
            "ts": ts,
            "text": text,
            "thread_ts": thread,
            "subtype": subtype,
            "channel_type": extra,
        }
    ),
    st.sampled_from(["app_mention", "message", "reaction_added"]) | _json,
    st.just("U1") | _maybe,
    st.just("C1") | _maybe,
    st.just(TS) | _maybe,
    st.text(max_size=40) | _maybe,
    _maybe,
    st.sampled_from([None, "bot_message", "message_changed"]) | _json,
    st.sampled_from([None, "im", "channel"]) | _json,
)
_slack_json = st.builds(
    lambda kind, event, team: _drop_none({"type": kind, "event": event, "team_id": team}),
    st.sampled_from(["event_callback", "url_verification", "app_rate_limited"]) | _json,
    _slack_event | _json,
    _maybe,
).map(lambda d: json.dumps(d).encode())
_slack_form = st.builds(
    lambda fields: urlencode(fields).encode(),
    st.fixed_dictionaries(
        {},
        optional={
            name: st.text(max_size=20)
            for name in (
                "command",
                "text",
                "team_id",
                "user_id",
                "channel_id",
                "channel_name",
                "response_url",
                "trigger_id",
            )
        },
    ),
)
_slack_payload_form = _json.map(lambda v: urlencode({"payload": json.dumps(v)}).encode())
_slack_bodies = st.one_of(
    _slack_json.map(lambda b: (b, "application/json")),
    _slack_form.map(lambda b: (b, "application/x-www-form-urlencoded")),
    _slack_payload_form.map(lambda b: (b, "application/x-www-form-urlencoded")),
    st.binary(max_size=64).map(lambda b: (b, "application/json")),
)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(body=_slack_bodies)
async def test_fuzz_the_slack_route_with_signed_malformed_bodies(
    slack_bot: SlackBotUnderTest, caplog: pytest.LogCaptureFixture, body: tuple[bytes, str]
) -> None:
    raw, content_type = body
    status, text = await _post_slack(slack_bot, raw, content_type)
    assert status < 500, (status, raw)
    assert "Traceback" not in text
    _no_tracebacks(caplog)
    async with slack_bot.http.get(f"{slack_bot.url}/healthz") as resp:
        assert resp.status == 200


_teams_activity = st.builds(
    lambda kind, text, conversation, sender, recipient, service, entities, extra: _drop_none(
        {
            "type": kind,
            "id": "1",
            "text": text,
            "conversation": conversation,
            "from": sender,
            "recipient": recipient,
            "serviceUrl": service,
            "channelId": "msteams",
            "entities": entities,
            "channelData": extra,
        }
    ),
    st.sampled_from(["message", "conversationUpdate", "invoke"]) | _json,
    st.text(max_size=40) | _maybe,
    st.just({"id": "a:1", "conversationType": "personal"}) | _maybe,
    st.just({"id": "29:1", "aadObjectId": "x"}) | _maybe,
    st.just({"id": "28:bot"}) | _maybe,
    st.just("SERVICE") | _maybe,
    st.lists(_json, max_size=3) | _maybe,
    _maybe,
)


@FUZZ
@given(activity=_teams_activity | _json)
async def test_fuzz_the_teams_route_with_authenticated_malformed_activities(
    teams_bot: TeamsBotUnderTest, caplog: pytest.LogCaptureFixture, activity: Any
) -> None:
    if isinstance(activity, dict) and activity.get("serviceUrl") == "SERVICE":
        activity["serviceUrl"] = teams_bot.connector.service_url
    resp = await teams_bot.post(json.dumps(activity))
    assert resp.status < 500, (resp.status, activity)
    _no_tracebacks(caplog)


DEEP = b'{"type": "event_callback", "event": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"


async def test_signed_json_nested_10000_deep_is_400_on_the_slack_route(
    slack_bot: SlackBotUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    for raw, content_type in [
        (DEEP, "application/json"),
        (urlencode({"payload": DEEP.decode()}).encode(), "application/x-www-form-urlencoded"),
    ]:
        status, text = await _post_slack(slack_bot, raw, content_type)
        assert status == 400, text
        assert "nests deeper than 64 levels" in text
    _no_tracebacks(caplog)


async def test_json_nested_10000_deep_is_400_on_the_teams_route(
    teams_bot: TeamsBotUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    raw = b'{"type": "message", "channelData": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    resp = await teams_bot.post(raw)
    assert resp.status == 400
    _no_tracebacks(caplog)
