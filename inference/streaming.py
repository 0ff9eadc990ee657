"""The one LangChain streaming loop, shared by every LangChain-backed chat model: our turns
in, text deltas and usage out, and the provider's exceptions translated where they enter."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing

import pydantic
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessageChunk

from inference.base import InferenceError, StreamEvent, TextDelta, Turn, Usage
from inference.messages import to_langchain
from inference.tokens import estimate_message_tokens, estimate_tokens


class EmptyStream(Exception):
    """The server answered with no generation chunk at all: a failed exchange."""


# Malformed data from a model server: a line that is not JSON, a chunk of the wrong shape
# (the clients parse with pydantic), or nothing at all. Not ValueError as a whole: a bug of
# ours raising ValueError must not look like an outage.
MALFORMED_RESPONSE: tuple[type[Exception], ...] = (
    json.JSONDecodeError,
    pydantic.ValidationError,
    EmptyStream,
)

# Turns a provider's exception into ours; ``started``: text was already yielded.
Translate = Callable[[Exception, bool], InferenceError]


def estimated_usage(turns: Sequence[Turn], parts: Sequence[str]) -> Usage:
    """Usage estimated from the text, for a provider that reported none."""
    return Usage(
        prompt_tokens=sum(estimate_message_tokens(t.content) for t in turns),
        completion_tokens=estimate_tokens("".join(parts)),
    )


async def stream_chat(
    chat: BaseChatModel,
    turns: Sequence[Turn],
    *,
    errors: tuple[type[Exception], ...],
    translate: Translate,
    usage_when_missing: Callable[[Sequence[Turn], Sequence[str]], Usage],
    usage_on_failure: bool = False,
) -> AsyncGenerator[StreamEvent]:
    """Stream ``chat``'s answer to ``turns``: text deltas in order, then one ``Usage``.

    ``errors`` raised by the provider become ``translate(exc, started)``. With
    ``usage_on_failure`` a failure after text first yields the estimated usage (tokens
    generated before it are billed). Closing this generator drops the HTTP stream, so the
    server stops generating.
    """
    usage: Usage | None = None
    parts: list[str] = []
    try:
        # The provider's own streaming (`_astream`, what `astream` wraps): `astream` adds
        # LangChain's callback and tracing run around every answer (a callback manager, each
        # chunk kept and merged at the end), a sixth of the bot's CPU per answer, for
        # nothing the bot uses; and with LANGSMITH_TRACING set in the environment it would
        # send prompts and answers to LangSmith, when code must never leave the company.
        stream = chat._astream(to_langchain(turns))
        received = False
        async with aclosing(stream) as chunks:  # type: ignore[type-var]
            async for generated in chunks:
                received = True
                chunk = generated.message
                if isinstance(chunk, AIMessageChunk) and chunk.usage_metadata is not None:
                    usage = Usage(
                        prompt_tokens=chunk.usage_metadata["input_tokens"],
                        completion_tokens=chunk.usage_metadata["output_tokens"],
                    )
                text = str(chunk.text)
                if text:
                    parts.append(text)
                    yield TextDelta(text)
        if not received:  # an empty body: a failed exchange (as `astream` would say)
            raise EmptyStream("No generation chunks were returned")
    except errors as exc:
        if parts and usage_on_failure:
            yield estimated_usage(turns, parts)
        raise translate(exc, bool(parts)) from exc
    yield usage if usage is not None else usage_when_missing(turns, parts)
