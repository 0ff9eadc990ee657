"""OpenAI's Chat Completions shapes, as the team API reads and writes them.

Requests are untrusted wire data: parsed with pydantic, every problem a 400 with a message a
person can act on. Fields clients send casually (temperature, top_p, max_tokens and
max_completion_tokens, stop, user, tools, tool_choice, response_format...) are accepted and
ignored: the answer is text from the team's assistant.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.wire.jsonbody import MalformedJson, json_object
from bot.conversation import Citation, ConversationKey, IncomingMessage
from bot.tokens import Owner
from inference.base import Turn

MAX_BODY_BYTES = 1024 * 1024
MAX_MESSAGES = 1000


class ApiError(Exception):
    """A request the API refuses: the HTTP status and OpenAI's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.retry_after = retry_after

    def response(self) -> web.Response:
        """OpenAI's error body, with `Retry-After` when asking again later may work."""
        headers = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, int(self.retry_after + 0.999)))
        body = {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }
        return web.json_response(body, status=self.status, headers=headers)


class _TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[_TextPart] | None = None


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    messages: list[_Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: _StreamOptions | None = None
    n: int | None = Field(default=None, ge=1)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A chat completion request as the core needs it."""

    model: str
    question: str  # the newest user message
    transcript: tuple[Turn, ...]  # the user and assistant turns before it
    instructions: str  # the client's system (and developer) messages
    stream: bool
    include_usage: bool


def _text(message: _Message, index: int) -> str:
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if part.type != "text" or part.text is None:
            raise ApiError(
                400,
                f"messages[{index}].content: only text parts are supported, not {part.type!r}",
                param=f"messages[{index}].content",
            )
        texts.append(part.text)
    return "\n".join(texts)


def parse_json(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object; 400 for anything else (not JSON, too deep)."""
    try:
        return json_object(body, "the request body")
    except MalformedJson as exc:
        raise ApiError(400, str(exc)) from None


def parse_chat_request(data: Any) -> ChatRequest:
    """The request, or an ``ApiError`` (400) saying what is wrong with it."""
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    try:
        request = _Request.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise ApiError(400, f"{where}: {first['msg']}", param=where) from None
    if request.n is not None and request.n > 1:
        raise ApiError(400, "n: only one choice (n = 1) is supported", param="n")
    instructions: list[str] = []
    turns: list[Turn] = []
    for index, message in enumerate(request.messages):
        text = _text(message, index)
        if message.role in ("system", "developer"):
            if text.strip():
                instructions.append(text)
        elif message.role in ("user", "assistant"):
            turns.append(Turn(message.role, text))
        # tool and function results: this API never calls tools, so there are none of ours
    if not turns or turns[-1].role != "user":
        raise ApiError(
            400, "messages: the last message must be the user's question", param="messages"
        )
    options = request.stream_options
    return ChatRequest(
        model=request.model,
        question=turns[-1].content,
        transcript=tuple(turns[:-1]),
        instructions="\n\n".join(instructions),
        stream=request.stream,
        include_usage=bool(options and options.include_usage),
    )


def sources_text(citations: Sequence[Citation], *, searched: bool) -> str:
    """The sources under an answer, as text every client shows."""
    label = "Searched (not cited):" if searched else "Sources:"
    lines = [f"[{c.number}] {c.title}" + (f" ({c.url})" if c.url else "") for c in citations]
    return "\n\n" + label + "\n" + "\n".join(lines)


def citations_json(citations: Sequence[Citation]) -> list[dict[str, Any]]:
    """The `citations` list of a response."""
    return [{"number": c.number, "title": c.title, "url": c.url} for c in citations]


def completion_id() -> str:
    """A response id in OpenAI's style."""
    return "chatcmpl-" + secrets.token_hex(12)


def now() -> int:
    """`created`: seconds since the epoch."""
    return int(time.time())


def owner_key(owner: Owner, thread: str) -> ConversationKey:
    """Where a token's question is asked: the owner's platform and workspace, and no channel,
    so only sources open to everyone or to the owner's workspace match."""
    return ConversationKey(owner.platform, owner.workspace, "", thread)


def incoming(
    owner: Owner,
    id: str,
    text: str,
    *,
    via: str,
    transcript: tuple[Turn, ...] = (),
    instructions: str = "",
) -> IncomingMessage:
    """A question of the team API or MCP as the core's message: asked as its owner, the
    conversation the client's own (never memory's)."""
    return IncomingMessage(
        key=owner_key(owner, f"{via}-{secrets.token_hex(8)}"),
        message_id=id,
        sender=owner.user,
        text=text,
        transcript=transcript,
        instructions=instructions,
        via=via,
    )
