"""The premium model client: the real ChatOpenAI and openai SDK against a fake OpenAI server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from inference.base import (
    GenerationFailed,
    ModelNotFound,
    ModelUnavailable,
    ProviderAuthFailed,
    StreamEvent,
    TextDelta,
    Turn,
    Usage,
)
from inference.openai import OpenAIChatModel
from tests.fakes.openai import API_KEY, FakeOpenAI

TURNS = [Turn("system", "be brief"), Turn("user", "what is a monad?")]


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(models=["gpt-4.1", "gpt-4o-mini"]) as fake:
        yield fake


def model(fake: FakeOpenAI, **overrides: object) -> OpenAIChatModel:
    options: dict[str, object] = {
        "api_key": API_KEY,
        "model": "gpt-4.1",
        "base_url": fake.url,
        "max_retries": 0,
        "request_timeout": 5.0,
    }
    options.update(overrides)
    return OpenAIChatModel(**options)  # type: ignore[arg-type]


async def collect(chat: OpenAIChatModel, turns: list[Turn] = TURNS) -> list[StreamEvent]:
    return [event async for event in chat.stream(turns)]


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_streams_text_then_the_usage_the_server_reported(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply = "A monad is a monoid in the category of endofunctors."
    fake_openai.usage = (1234, 56)
    events = await collect(model(fake_openai))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 1  # streamed, not one block
    assert text_of(events) == fake_openai.reply
    assert events[-1] == Usage(prompt_tokens=1234, completion_tokens=56)
    assert sum(isinstance(e, Usage) for e in events) == 1


async def test_the_request_is_a_streamed_chat_completion_asking_for_usage(
    fake_openai: FakeOpenAI,
) -> None:
    await collect(model(fake_openai), [*TURNS[:1], Turn("assistant", "hi"), *TURNS[1:]])
    (body,) = fake_openai.requests
    assert body["model"] == "gpt-4.1"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_completion_tokens"] == 4096
    assert fake_openai.messages() == [
        ("system", "be brief"),
        ("assistant", "hi"),
        ("user", "what is a monad?"),
    ]
    assert fake_openai.headers[0]["Authorization"] == f"Bearer {API_KEY}"


async def test_one_client_serves_concurrent_generations(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply_fn = lambda messages: f"re: {messages[-1]['content']}"
    fake_openai.token_delay = 0.01
    chat = model(fake_openai)
    results = await asyncio.gather(*(collect(chat, [Turn("user", f"q{i}")]) for i in range(5)))
    assert [text_of(r) for r in results] == [f"re: q{i}" for i in range(5)]


async def test_usage_is_estimated_when_the_server_reports_none(fake_openai: FakeOpenAI) -> None:
    fake_openai.send_usage = False
    fake_openai.reply = "x" * 40
    events = await collect(model(fake_openai))
    usage = events[-1]
    assert isinstance(usage, Usage)
    assert usage.completion_tokens == 14  # 40 characters, at 3 per token rounded up
    assert usage.prompt_tokens > 0


async def test_a_refused_key_is_an_auth_failure(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(ProviderAuthFailed) as caught:
        await collect(model(fake_openai, api_key="sk-wrong-0000000000000000000000"))
    assert "401" in str(caught.value)
    assert isinstance(caught.value, ModelUnavailable)  # callers that only know "down" cope


async def test_a_forbidden_key_is_an_auth_failure(fake_openai: FakeOpenAI) -> None:
    fake_openai.status_override = 403
    with pytest.raises(ProviderAuthFailed):
        await collect(model(fake_openai))


async def test_an_unknown_model_is_model_not_found(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(ModelNotFound) as caught:
        await collect(model(fake_openai, model="gpt-9"))
    assert "gpt-9" in str(caught.value)


async def test_a_wrong_base_url_is_unavailable_not_a_missing_model(
    fake_openai: FakeOpenAI,
) -> None:
    # aiohttp answers an unknown route with a plain 404, as a proxy or wrong path would.
    with pytest.raises(ModelUnavailable) as caught:
        await collect(model(fake_openai, base_url=fake_openai.url + "/wrong"))
    assert not isinstance(caught.value, ModelNotFound)


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_errors_before_the_first_token_are_unavailable(
    fake_openai: FakeOpenAI, status: int
) -> None:
    fake_openai.status_override = status
    with pytest.raises(ModelUnavailable) as caught:
        await collect(model(fake_openai))
    assert not isinstance(caught.value, ProviderAuthFailed)
    assert str(status) in str(caught.value)
    assert len(fake_openai.requests) == 1  # max_retries=0


async def test_retries_are_bounded(fake_openai: FakeOpenAI) -> None:
    fake_openai.status_override = 500
    with pytest.raises(ModelUnavailable):
        await collect(model(fake_openai, max_retries=1))
    assert len(fake_openai.requests) == 2


async def test_an_unreachable_server_is_unavailable(fake_openai: FakeOpenAI) -> None:
    url = fake_openai.url
    await fake_openai.stop()
    with pytest.raises(ModelUnavailable):
        await collect(model(fake_openai, base_url=url))


async def test_a_slow_first_token_times_out_as_unavailable(fake_openai: FakeOpenAI) -> None:
    fake_openai.first_token_delay = 2
    with pytest.raises(ModelUnavailable):
        await asyncio.wait_for(collect(model(fake_openai, request_timeout=0.3)), 10)


@pytest.mark.parametrize("mode", ["disconnect", "error_event"])
async def test_failure_mid_stream_keeps_the_text_and_estimates_usage(
    fake_openai: FakeOpenAI, mode: str
) -> None:
    fake_openai.reply = "The first part of a long answer, then more."
    fake_openai.chunk_size = 5
    fake_openai.fail_after_chunks = 3
    fake_openai.fail_mode = mode  # type: ignore[assignment]
    events: list[StreamEvent] = []
    with pytest.raises(GenerationFailed):
        async for event in model(fake_openai).stream(TURNS):
            events.append(event)
    assert text_of(events) == "The first part "
    assert isinstance(events[-1], Usage) and events[-1].completion_tokens > 0


async def test_ping(fake_openai: FakeOpenAI) -> None:
    await model(fake_openai).ping()
    with pytest.raises(ModelNotFound):
        await model(fake_openai, model="gpt-9").ping()
    with pytest.raises(ProviderAuthFailed):
        await model(fake_openai, api_key="sk-nope").ping()
    url = fake_openai.url
    await fake_openai.stop()
    with pytest.raises(ModelUnavailable):
        await model(fake_openai, base_url=url).ping()


def test_the_key_never_shows_in_the_repr(fake_openai: FakeOpenAI) -> None:
    chat = model(fake_openai)
    assert API_KEY not in repr(chat)
    assert chat.name == "gpt-4.1" and chat.context_tokens == 32_768
