"""OllamaChatModel through the real ChatOllama and ollama client against FakeOllama."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from inference.base import (
    GenerationFailed,
    ModelNotFound,
    ModelUnavailable,
    TextDelta,
    Turn,
    Usage,
)
from inference.ollama import OllamaChatModel
from tests.fakes.ollama import FakeOllama

MODEL = "codellama:7b"

CONVERSATION = [
    Turn("system", "You are a concise coding assistant."),
    Turn("user", "What does `ls -la` do?"),
    Turn("assistant", "It lists all files, including hidden ones, in long format."),
    Turn("user", "And `ls -lh`?"),
]


@pytest.fixture
async def fake() -> AsyncIterator[FakeOllama]:
    async with FakeOllama(models=[MODEL]) as server:
        yield server


def make_model(url: str, *, model: str = MODEL, **kwargs: Any) -> OllamaChatModel:
    return OllamaChatModel(base_url=url, model=model, num_ctx=2048, **kwargs)


def unused_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def collect(model: OllamaChatModel, turns: Sequence[Turn]) -> tuple[list[str], list[Usage]]:
    deltas: list[str] = []
    usages: list[Usage] = []
    async for event in model.stream(turns):
        if isinstance(event, TextDelta):
            assert not usages, "text arrived after usage"
            deltas.append(event.text)
        else:
            usages.append(event)
    return deltas, usages


async def collect_until_error(
    model: OllamaChatModel, turns: Sequence[Turn]
) -> tuple[list[str], BaseException]:
    deltas: list[str] = []
    with pytest.raises(Exception) as caught:
        async for event in model.stream(turns):
            if isinstance(event, TextDelta):
                deltas.append(event.text)
    return deltas, caught.value


# -- happy path ---------------------------------------------------------------


async def test_streamed_text_reassembles_to_the_reply_in_several_deltas(
    fake: FakeOllama,
) -> None:
    fake.reply = "Use `ls -lh` for **human-readable** sizes, e.g. 4.0K.\n```sh\nls -lh\n```"
    fake.chunk_size = 5

    deltas, usages = await collect(make_model(fake.url), CONVERSATION)

    assert "".join(deltas) == fake.reply
    assert len(deltas) > 1
    assert all(deltas)
    assert len(usages) == 1


async def test_request_carries_the_turns_in_order_the_model_and_num_ctx(
    fake: FakeOllama,
) -> None:
    model = OllamaChatModel(base_url=fake.url, model=MODEL, num_ctx=3072)

    await collect(model, CONVERSATION)

    assert len(fake.requests) == 1
    request = fake.requests[0]
    assert request["model"] == MODEL
    assert request["options"]["num_ctx"] == 3072
    assert request.get("stream", True) is True
    assert [(m["role"], m["content"]) for m in request["messages"]] == [
        (t.role, t.content) for t in CONVERSATION
    ]


async def test_usage_is_what_the_server_reported(fake: FakeOllama) -> None:
    fake.reply = "abcdefghij" * 3  # 30 chars
    fake.chunk_size = 4  # -> 8 content lines

    deltas, usages = await collect(make_model(fake.url), CONVERSATION)

    prompt_chars = sum(len(t.content) for t in CONVERSATION)
    assert usages == [Usage(prompt_tokens=prompt_chars // 4, completion_tokens=8)]
    assert len(deltas) == 8


async def test_properties(fake: FakeOllama) -> None:
    model = OllamaChatModel(base_url=fake.url, model=MODEL, num_ctx=4096)
    assert model.name == MODEL
    assert model.context_tokens == 4096
    assert model.base_url == fake.url


# -- failures before any text -------------------------------------------------


async def test_unknown_model_raises_model_not_found(fake: FakeOllama) -> None:
    model = make_model(fake.url, model="llama3:70b")

    with pytest.raises(ModelNotFound) as caught:
        await collect(model, CONVERSATION)

    # The provider's text stays in the cause, out of the message.
    assert "try pulling" not in str(caught.value)
    assert caught.value.__cause__ is not None
    assert fake.requests[0]["model"] == "llama3:70b"


async def test_server_not_running_raises_model_unavailable_quickly() -> None:
    model = make_model(unused_url())

    async with asyncio.timeout(10):  # a guard against hanging, not a benchmark
        with pytest.raises(ModelUnavailable):
            await collect(model, CONVERSATION)


async def test_a_404_that_is_not_about_the_model_raises_model_unavailable(
    fake: FakeOllama,
) -> None:
    # A wrong base URL (or a proxy) answers 404 too; that server is unusable,
    # which is not the same as "pull the model".
    with pytest.raises(ModelUnavailable):
        await collect(make_model(fake.url + "/wrong-prefix"), CONVERSATION)


async def test_busy_server_raises_model_unavailable(fake: FakeOllama) -> None:
    fake.status_override = 503

    with pytest.raises(ModelUnavailable) as caught:
        await collect(make_model(fake.url), CONVERSATION)

    assert "server busy" not in str(caught.value)


async def test_error_line_before_any_text_raises_model_unavailable(fake: FakeOllama) -> None:
    fake.fail_after_chunks = 0

    deltas, error = await collect_until_error(make_model(fake.url), CONVERSATION)

    assert deltas == []
    assert isinstance(error, ModelUnavailable)


async def test_an_empty_body_raises_model_unavailable(fake: FakeOllama) -> None:
    """A 200 with nothing in it is a failed exchange (the pool fails over), not an answer."""
    fake.fail_after_chunks = 0
    fake.fail_mode = "end"

    deltas, error = await collect_until_error(make_model(fake.url), CONVERSATION)

    assert deltas == []
    assert isinstance(error, ModelUnavailable)


async def test_first_token_slower_than_request_timeout_raises_model_unavailable(
    fake: FakeOllama,
) -> None:
    fake.first_token_delay = 1.0

    with pytest.raises(ModelUnavailable):
        await collect(make_model(fake.url, request_timeout=0.2), CONVERSATION)


# -- failures after text began ------------------------------------------------


@pytest.mark.parametrize("fail_mode", ["error_line", "disconnect"])
async def test_mid_stream_failure_raises_generation_failed_after_first_deltas(
    fake: FakeOllama, fail_mode: str
) -> None:
    fake.reply = "x" * 40
    fake.chunk_size = 4
    fake.fail_after_chunks = 3
    fake.fail_mode = fail_mode  # type: ignore[assignment]

    deltas, error = await collect_until_error(make_model(fake.url), CONVERSATION)

    assert deltas == ["xxxx"] * 3
    assert isinstance(error, GenerationFailed)
    assert fake.error_message not in str(error)
    assert error.__cause__ is not None


# -- ping ---------------------------------------------------------------------


async def test_ping_succeeds_when_the_model_is_pulled(fake: FakeOllama) -> None:
    await make_model(fake.url).ping()


async def test_ping_normalises_the_latest_tag() -> None:
    async with FakeOllama(models=["codellama:latest", "mistral"]) as server:
        await make_model(server.url, model="codellama").ping()
        await make_model(server.url, model="mistral:latest").ping()
        with pytest.raises(ModelNotFound):
            await make_model(server.url, model="codellama:7b").ping()


async def test_ping_raises_model_not_found_for_a_missing_model(fake: FakeOllama) -> None:
    with pytest.raises(ModelNotFound):
        await make_model(fake.url, model="llama3:70b").ping()


async def test_ping_raises_model_unavailable_when_no_server_listens() -> None:
    async with asyncio.timeout(10):
        with pytest.raises(ModelUnavailable):
            await make_model(unused_url()).ping()


async def test_ping_raises_model_unavailable_for_a_server_that_is_not_ollama() -> None:
    # Right port, wrong service: the server answers /api/tags with 404.
    async with FakeOllama() as server:
        with pytest.raises(ModelUnavailable):
            await make_model(server.url + "/not-ollama").ping()


# -- one instance, many generations -------------------------------------------


def echo(messages: list[dict[str, Any]]) -> str:
    return f"You asked: {messages[-1]['content']}"


async def test_one_instance_serves_sequential_streams(fake: FakeOllama) -> None:
    fake.reply_fn = echo
    model = make_model(fake.url)

    first, _ = await collect(model, [Turn("user", "first question")])
    second, usage = await collect(model, [Turn("user", "second question")])

    assert "".join(first) == "You asked: first question"
    assert "".join(second) == "You asked: second question"
    assert usage[0].prompt_tokens == len("second question") // 4
    assert [r["messages"][-1]["content"] for r in fake.requests] == [
        "first question",
        "second question",
    ]


async def test_one_instance_serves_concurrent_streams(fake: FakeOllama) -> None:
    fake.reply_fn = echo
    fake.chunk_size = 3
    fake.token_delay = 0.01  # keeps the five streams open at the same time
    model = make_model(fake.url)
    questions = [f"question number {i}" for i in range(5)]

    results = await asyncio.gather(*(collect(model, [Turn("user", q)]) for q in questions))

    for question, (deltas, usages) in zip(questions, results, strict=True):
        assert "".join(deltas) == f"You asked: {question}"
        assert len(deltas) > 1
        assert len(usages) == 1
    assert len(fake.requests) == 5


async def test_a_failed_stream_does_not_spoil_the_next_one(fake: FakeOllama) -> None:
    model = make_model(fake.url)
    fake.fail_after_chunks = 1
    fake.fail_mode = "disconnect"
    with pytest.raises(GenerationFailed):
        await collect(model, CONVERSATION)

    fake.fail_after_chunks = None
    deltas, _ = await collect(model, CONVERSATION)
    assert "".join(deltas) == fake.reply


async def test_abandoning_a_stream_closes_the_request(fake: FakeOllama) -> None:
    # A caller that stops reading (e.g. shutdown) must not leave Ollama generating.
    fake.reply = "y" * 400
    fake.chunk_size = 2
    fake.token_delay = 0.01
    stream = make_model(fake.url).stream(CONVERSATION)

    first = await anext(stream)
    assert isinstance(first, TextDelta)
    await stream.aclose()  # type: ignore[attr-defined]

    async with asyncio.timeout(5):
        await fake.client_disconnected.wait()
    assert fake.client_disconnects == 1


_TRACED_ANSWER = """
import asyncio, sys
from langchain_core.tracers.langchain import wait_for_all_tracers
from inference.base import Turn
from inference.ollama import OllamaChatModel

async def main() -> None:
    model = OllamaChatModel(base_url=sys.argv[1], model="codellama:7b", num_ctx=4096)
    async for _ in model.stream([Turn(role="user", content="our secret code")]):
        pass
    await model.aclose()

asyncio.run(main())
wait_for_all_tracers()  # what LangChain's tracing would send, sent now
"""


async def test_langsmith_tracing_left_in_the_environment_sends_nothing_out(
    fake: FakeOllama,
) -> None:
    """Code never leaves the company: LANGSMITH_TRACING set for some other LangChain app on
    the machine does not send the bot's prompts and answers to LangSmith."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    received: list[str] = []

    async def record(request: web.Request) -> web.Response:
        await request.read()
        received.append(f"{request.method} {request.path}")
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    async with TestServer(app) as langsmith:
        env = {
            **os.environ,
            "LANGSMITH_TRACING": "true",
            "LANGSMITH_API_KEY": "lsv2_pt_test",
            "LANGSMITH_ENDPOINT": str(langsmith.make_url("")).rstrip("/"),
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _TRACED_ANSWER, fake.url, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()
    assert fake.requests, "the answer was not asked for"
    assert [r for r in received if r.startswith("POST")] == []
