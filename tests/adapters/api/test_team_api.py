"""The team API end to end: a token made with `/token` in a Slack DM, then the real `openai`
client (sync and async, streamed and not) against the running bot, with the fake Ollama and
OpenAI behind it, real Redis and a real ledger (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.tokens import Owner, TokenStore
from tests.fakes.openai import API_KEY, FakeOpenAI
from tests.support.fixtures_db import recorded
from tests.support.harness import SlackBotUnderTest
from tests.support.slack_payloads import TEAM, USER, dm, slash

DM_CHANNEL = "D024BE91L"
TOKEN = re.compile(r"cbt_[A-Za-z0-9_-]{40,}")


@pytest.fixture
def bot_overrides(fake_openai: FakeOpenAI) -> dict[str, Any]:
    return {
        "openai_api_key": API_KEY,
        "openai_base_url": fake_openai.url,
        "premium_model": "gpt-4.1",
        "premium_users": USER,
        "public_url": "https://bot.example.com",
    }


async def token_by_slash_command(bot: SlackBotUnderTest, name: str = "laptop") -> str:
    """`/token NAME` as the Slack slash command, used in the DM: the token in the reply."""
    url = bot.slack.response_url("tok", channel=DM_CHANNEL, user=USER)
    form = slash("/token", name, response_url=url, channel=DM_CHANNEL, channel_name="directmessage")
    resp = await bot.post_command(form)
    assert resp.status == 200
    await bot.settle()
    [reply] = bot.slack.responses_to("tok")
    assert reply.get("response_type", "ephemeral") == "ephemeral"  # to the asker alone
    found = TOKEN.search(reply["text"])
    assert found, reply["text"]
    assert "https://bot.example.com/v1" in reply["text"]
    return found.group(0)


def client(bot: SlackBotUnderTest, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{bot.url}/v1", api_key=token, max_retries=0, timeout=20)


def async_client(bot: SlackBotUnderTest, token: str) -> openai.AsyncOpenAI:
    """An async client whose connections close with the bot's session (no leaked loop)."""
    made = openai.AsyncOpenAI(base_url=f"{bot.url}/v1", api_key=token, max_retries=0, timeout=20)
    CLIENTS.append(made)
    return made


CLIENTS: list[openai.AsyncOpenAI] = []


@pytest.fixture(autouse=True)
async def close_clients() -> Any:
    yield
    while CLIENTS:
        await CLIENTS.pop().close()


async def test_a_slack_dm_token_answers_through_the_sync_client_with_usage(
    slack_bot: SlackBotUnderTest,
) -> None:
    token = await token_by_slash_command(slack_bot)
    slack_bot.ollama.reply = "Use `git revert`."

    def ask() -> Any:
        return client(slack_bot, token).chat.completions.create(
            model="codellama:7b",
            messages=[
                {"role": "system", "content": "Answer in one line."},
                {"role": "user", "content": "how do I undo a commit?"},
                {"role": "assistant", "content": "Which one?"},
                {"role": "user", "content": [{"type": "text", "text": "the last pushed one"}]},
            ],
            temperature=0.2,
            max_completion_tokens=200,
            tools=[{"type": "function", "function": {"name": "noop", "parameters": {}}}],
        )

    response = await asyncio.to_thread(ask)
    assert response.object == "chat.completion" and response.model == "codellama:7b"
    assert response.choices[0].message.content == "Use `git revert`."
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is not None and response.usage.completion_tokens > 0
    assert response.model_extra is not None and response.model_extra["citations"] == []
    sent = slack_bot.ollama.requests[-1]["messages"]
    assert sent[0]["role"] == "system" and sent[0]["content"].endswith("Answer in one line.")
    assert [(m["role"], m["content"]) for m in sent[1:]] == [
        ("user", "how do I undo a commit?"),
        ("assistant", "Which one?"),
        ("user", "the last pushed one"),
    ]
    # The request's conversation is the client's: nothing was kept in memory.
    keys = await slack_bot.runtime.redis.keys("chatbot:mem:*")  # type: ignore[union-attr]
    assert keys == []


async def test_streamed_answer_ends_with_usage_and_done(slack_bot: SlackBotUnderTest) -> None:
    token = await token_by_slash_command(slack_bot)
    slack_bot.ollama.reply = "A long streamed answer about rebasing safely."
    slack_bot.ollama.chunk_size = 5
    stream = await async_client(slack_bot, token).chat.completions.create(
        model="codellama:7b",
        messages=[{"role": "user", "content": "rebase?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "A long streamed answer about rebasing safely."
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 3
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


async def test_the_raw_stream_is_server_sent_events_ending_with_done(
    slack_bot: SlackBotUnderTest,
) -> None:
    token = await token_by_slash_command(slack_bot)
    body = {
        "model": "codellama:7b",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }
    async with slack_bot.http.post(
        f"{slack_bot.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        raw = (await resp.read()).decode()
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["object"] == "chat.completion.chunk"


async def test_models_lists_premium_only_for_people_allowed_it(
    slack_bot: SlackBotUnderTest, fake_openai: FakeOpenAI
) -> None:
    token = await token_by_slash_command(slack_bot)
    models = await async_client(slack_bot, token).models.list()
    assert [m.id for m in models.data] == ["codellama:7b", "gpt-4.1"]
    store = TokenStore(engine=slack_bot.runtime.engine, lifetime_days=90)
    other = await store.create(Owner("slack", TEAM, "U0NOTALLOWED"))
    others = await async_client(slack_bot, other.secret).models.list()
    assert [m.id for m in others.data] == ["codellama:7b"]
    with pytest.raises(openai.PermissionDeniedError):
        await async_client(slack_bot, other.secret).chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "premium please"}]
        )
    assert fake_openai.requests == []


async def test_premium_answers_for_an_allowed_owner_and_is_recorded_under_them(
    slack_bot: SlackBotUnderTest, fake_openai: FakeOpenAI
) -> None:
    token = await token_by_slash_command(slack_bot)
    fake_openai.reply = "Premium says hi."
    response = await async_client(slack_bot, token).chat.completions.create(
        model="gpt-4.1", messages=[{"role": "user", "content": "hello"}]
    )
    assert (response.choices[0].message.content or "").startswith("Premium says hi.")
    await slack_bot.settle()
    rows = await recorded(slack_bot.runtime.engine)
    assert [(r.platform, r.workspace, r.user, r.route, r.via) for r in rows] == [
        ("slack", TEAM, USER, "premium", "api")
    ]
    assert rows[0].cost_usd > 0


async def test_unknown_revoked_and_expired_tokens_get_401(slack_bot: SlackBotUnderTest) -> None:
    token = await token_by_slash_command(slack_bot)
    store = TokenStore(engine=slack_bot.runtime.engine, lifetime_days=90)
    [info] = await store.list(Owner("slack", TEAM, USER))
    assert await store.revoke(id=info.id) == 1
    later = datetime.now(UTC) + timedelta(days=91)
    expiring = TokenStore(engine=slack_bot.runtime.engine, lifetime_days=90)
    fresh = await expiring.create(Owner("slack", TEAM, USER), "old")
    expired_view = TokenStore(engine=slack_bot.runtime.engine, lifetime_days=90, now=lambda: later)
    assert await expired_view.authenticate(fresh.secret) is None
    for bad in (token, "cbt_" + "x" * 43, "sk-not-ours"):
        with pytest.raises(openai.AuthenticationError) as caught:
            await async_client(slack_bot, bad).models.list()
        assert "/token" in str(caught.value)
    async with slack_bot.http.get(f"{slack_bot.url}/v1/models") as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["type"] == "authentication_error"
    assert slack_bot.ollama.requests == []


async def test_token_in_a_channel_is_refused_and_makes_nothing(
    slack_bot: SlackBotUnderTest,
) -> None:
    url = slack_bot.slack.response_url("chan")
    await slack_bot.post_command(slash("/token", "", response_url=url))
    await slack_bot.settle()
    [reply] = slack_bot.slack.responses_to("chan")
    assert "direct message" in reply["text"] and not TOKEN.search(reply["text"])
    store = TokenStore(engine=slack_bot.runtime.engine, lifetime_days=90)
    assert await store.list() == []


async def test_a_dm_message_makes_lists_and_revokes_tokens(slack_bot: SlackBotUnderTest) -> None:
    await slack_bot.post_event(dm("/token laptop", "1700000000.000100"))
    await slack_bot.settle()
    await slack_bot.post_event(dm("/token list", "1700000000.000200"))
    await slack_bot.settle()
    await slack_bot.post_event(dm("/token revoke laptop", "1700000000.000300"))
    await slack_bot.settle()
    texts = [m.text for m in slack_bot.slack.messages(DM_CHANNEL)]
    made, listed, revoked = texts[-3:]
    secret = TOKEN.search(made)
    assert secret is not None
    assert "laptop" in listed and secret.group(0) not in listed
    assert "Revoked" in revoked
    with pytest.raises(openai.AuthenticationError):
        await async_client(slack_bot, secret.group(0)).models.list()


async def test_rate_limit_gives_429_with_retry_after(
    slack_bot: SlackBotUnderTest, redis_url: str
) -> None:
    token = await token_by_slash_command(slack_bot)
    body = {"model": "codellama:7b", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {token}"}
    statuses = []
    for _ in range(11):  # RATE_LIMIT_PER_MINUTE defaults to 10
        async with slack_bot.http.post(
            f"{slack_bot.url}/v1/chat/completions", json=body, headers=headers
        ) as resp:
            statuses.append(resp.status)
            last = resp
            payload = await resp.json()
    assert statuses == [200] * 10 + [429]
    assert int(last.headers["Retry-After"]) >= 1
    assert payload["error"]["type"] == "rate_limit_error"


async def test_bad_requests_get_openai_errors_never_500(slack_bot: SlackBotUnderTest) -> None:
    token = await token_by_slash_command(slack_bot)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    url = f"{slack_bot.url}/v1/chat/completions"
    cases: list[tuple[bytes, int]] = [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (b'{"model": "codellama:7b"}', 400),
        (b'{"model": "codellama:7b", "messages": []}', 400),
        (b'{"model": "codellama:7b", "messages": [{"role": "user", "content": "a"}], "n": 2}', 400),
        (b'{"model": "nope", "messages": [{"role": "user", "content": "a"}]}', 404),
        (b'{"model": "codellama:7b", "messages": [{"role": "assistant", "content": "a"}]}', 400),
        (b'{"model": "codellama:7b", "messages": [{"role": "user", "content": "   "}]}', 400),
        (b"[" * 100_000 + b"]" * 100_000, 400),
        (
            b'{"model": "codellama:7b", "messages": [{"role": "user", "content": "x'
            + b"y" * 9000
            + b'"}]}',
            400,
        ),
        (b"{" + b" " * (1024 * 1024 + 10) + b"}", 413),
    ]
    for raw, status in cases:
        async with slack_bot.http.post(url, data=raw, headers=headers) as resp:
            body = await resp.json()
            assert resp.status == status, (raw[:80], body)
            assert set(body["error"]) >= {"message", "type", "code"}
            assert "Traceback" not in body["error"]["message"]
    assert slack_bot.ollama.requests == []


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=st.fixed_dictionaries(
        {},
        optional={
            "model": st.sampled_from(["codellama:7b", "gpt-4.1"]) | JSONISH,
            "messages": st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "role": st.sampled_from(["user", "system", "assistant", "tool"]) | JSONISH,
                        "content": JSONISH,
                    },
                ),
                max_size=3,
            )
            | JSONISH,
            "stream": JSONISH,
            "n": JSONISH,
            "stream_options": JSONISH,
        },
    )
)
async def test_fuzzed_bodies_get_an_openai_answer_or_error_never_500(
    slack_bot: SlackBotUnderTest, body: dict[str, Any]
) -> None:
    token = getattr(slack_bot, "api_token", None)
    if token is None:
        store = TokenStore(engine=slack_bot.runtime.engine, lifetime_days=90)
        token = (await store.create(Owner("slack", TEAM, USER))).secret
        slack_bot.api_token = token  # type: ignore[attr-defined]
    async with slack_bot.http.post(
        f"{slack_bot.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    ) as resp:
        raw = await resp.read()
    assert resp.status in (200, 400, 403, 404, 429), (resp.status, body, raw[:200])
    if resp.status != 200:
        assert "error" in json.loads(raw)


async def test_llm_with_an_extra_openai_model_prints_the_answer(
    slack_bot: SlackBotUnderTest, tmp_path: Any
) -> None:
    """The `llm` command-line tool, configured as docs/api.md says, against the bot."""
    import shutil
    import sys
    from pathlib import Path

    llm = shutil.which("llm") or str(Path(sys.executable).with_name("llm"))
    token = await token_by_slash_command(slack_bot)
    slack_bot.ollama.reply = "Answered for llm."
    home = tmp_path / "llm"
    home.mkdir()
    (home / "extra-openai-models.yaml").write_text(
        f"- model_id: team\n  model_name: codellama:7b\n  api_base: {slack_bot.url}/v1\n"
        "  api_key_name: team\n"
    )
    (home / "keys.json").write_text(json.dumps({"team": token}))
    proc = await asyncio.create_subprocess_exec(
        llm, "-m", "team", "--no-log", "how do we deploy?",
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LLM_USER_PATH": str(home)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip() == "Answered for llm."
    assert slack_bot.ollama.requests[-1]["messages"][-1]["content"] == "how do we deploy?"


async def test_a_client_gone_mid_stream_stops_the_generation_and_is_recorded(
    slack_bot: SlackBotUnderTest,
) -> None:
    token = await token_by_slash_command(slack_bot)
    slack_bot.ollama.reply = "word " * 400
    slack_bot.ollama.chunk_size = 5
    slack_bot.ollama.token_delay = 0.02  # 400 chunks: eight seconds if nobody stopped it
    body = {"model": "codellama:7b", "messages": [{"role": "user", "content": "go"}]}
    body["stream"] = True
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{slack_bot.url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )
        async for line in resp.content:
            if b'"content":"word' in line:
                break  # the answer is streaming: hang up
        resp.close()
    await asyncio.wait_for(slack_bot.ollama.client_disconnected.wait(), 5)
    # The request's handler records the answer as it ends (the ledger is written in batches).
    deadline = asyncio.get_running_loop().time() + 5
    while not (rows := await recorded(slack_bot.runtime.engine)):
        assert asyncio.get_running_loop().time() < deadline, "no ledger row"
        await asyncio.sleep(0.05)
    assert [(r.outcome, r.via) for r in rows] == [("cancelled", "api")]
    assert len(slack_bot.ollama.requests) == 1


async def test_a_question_over_the_api_is_never_read_as_a_command(
    slack_bot: SlackBotUnderTest,
) -> None:
    token = await token_by_slash_command(slack_bot)
    slack_bot.ollama.reply = "It resets a thread."
    async with async_client(slack_bot, token) as api:
        answer = await api.chat.completions.create(
            model="codellama:7b", messages=[{"role": "user", "content": "/reset"}]
        )
    assert answer.choices[0].message.content == "It resets a thread."
    assert slack_bot.ollama.requests[-1]["messages"][-1]["content"] == "/reset"
