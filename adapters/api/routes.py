"""The team API's routes: `GET /v1/models` and `POST /v1/chat/completions`, OpenAI's shapes,
answered by the core's one answer path as the token's owner.

The answer runs in the process that holds the connection (the ingress process of
`serve --workers`): a server-sent event stream must be written by it. The ingress then
does a worker's share of model calls for API requests beside its acks; chat platforms'
work still goes through the queue to the answer workers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from adapters.api.sink import ApiSink
from adapters.api.wire import (
    MAX_BODY_BYTES,
    ApiError,
    ChatRequest,
    citations_json,
    completion_id,
    incoming,
    now,
    parse_chat_request,
    parse_json,
)
from bot.assistant import Assistant
from bot.database import DatabaseError
from bot.errors import ReplyCancelled, UserFacingError
from bot.tasks import TaskTracker
from bot.tokens import Owner, TokenStore
from bot.usage import UsageRecord
from inference.knowledge import Knowledge

if TYPE_CHECKING:  # the MCP SDK (and Starlette) is imported at the first request to /mcp
    from adapters.api.mcp import McpServer

log = logging.getLogger(__name__)

API = "api"
# The routes of the team API on the bot's HTTP server (method, path).
API_ROUTES = (
    ("GET", "/v1/models"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/mcp"),
    ("GET", "/mcp"),
    ("DELETE", "/mcp"),
)
# How each reason for no answer is said over HTTP.
STATUS = {
    "invalid": (400, "invalid_request_error", None),
    "forbidden": (403, "permission_error", "forbidden"),
    "rate_limited": (429, "rate_limit_error", "rate_limit_exceeded"),
    "busy": (429, "rate_limit_error", "conversation_busy"),
    "unavailable": (503, "server_error", "service_unavailable"),
    "error": (500, "server_error", "internal_error"),
}
NO_TOKEN = (
    "A personal token is required (Authorization: Bearer cbt_...): send `/token` to the bot "
    "in a direct message to get one."
)
BAD_TOKEN = (
    "This token is not valid (unknown, expired or revoked): send `/token` to the bot in a "
    "direct message for a new one."
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_for(error: UserFacingError) -> ApiError:
    """A core refusal or failure as the API's error."""
    status, kind, code = STATUS.get(error.reason, STATUS["error"])
    return ApiError(status, error.text, type=kind, code=code, retry_after=error.retry_after)


def guarded(handler: Handler) -> Handler:
    """Every answer of a route is OpenAI's shape: refusals as error bodies, and a bug a 500
    that says nothing of the code (the traceback goes to the log)."""

    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response()
        except web.HTTPException:
            raise
        except Exception:
            log.exception("team API: unexpected error")
            return ApiError(500, "internal error", type="server_error").response()

    return run


@dataclass(frozen=True, slots=True)
class Models:
    """The model ids the API offers: the local route, and the premium one when configured."""

    local: str
    premium: str | None
    premium_allows: Callable[[str], bool]

    def for_owner(self, owner: Owner) -> list[str]:
        """The ids ``owner`` may use."""
        ids = [self.local]
        if self.premium is not None and self.premium_allows(owner.user):
            ids.append(self.premium)
        return ids


class TeamApi:
    """OpenAI's Chat Completions API in front of the assistant."""

    def __init__(
        self,
        *,
        assistant: Assistant,
        tokens: TokenStore,
        models: Models,
        tracker: TaskTracker,
        knowledge: Knowledge | None = None,
    ) -> None:
        self._assistant = assistant
        self._tracker = tracker
        self._tokens = tokens
        self._models = models
        self._knowledge = knowledge
        self._mcp: McpServer | None = None

    async def mcp(self) -> McpServer:
        """The MCP door, built at the first request to /mcp: its SDK costs a good part of a
        second and tens of MB to import, in every bot, most never asked over MCP. Imported
        in a thread, so that the acks of this process go on meanwhile."""
        if self._mcp is None:
            server = await asyncio.to_thread(_mcp_server_class)
            if self._mcp is None:  # another request may have built it meanwhile
                self._mcp = server(
                    assistant=self._assistant, knowledge=self._knowledge, authenticate=self.owner
                )
        return self._mcp

    async def close(self) -> None:
        """Stop the MCP door, if a request started it."""
        if self._mcp is not None:
            await self._mcp.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer a request to one of ``API_ROUTES``."""
        if request.path == "/mcp":
            return await (await self.mcp()).handle(request)
        if request.path == "/v1/models":
            return await guarded(self.list_models)(request)
        return await guarded(self.chat_completions)(request)

    async def owner(self, request: web.Request) -> Owner:
        """Who the request's Bearer token acts as; 401 without a valid one."""
        header = request.headers.get("Authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise ApiError(401, NO_TOKEN, type="authentication_error", code="invalid_api_key")
        try:
            owner = await self._tokens.authenticate(secret.strip())
        except DatabaseError:
            raise ApiError(
                503, "the bot cannot check tokens now (its database is down)", type="server_error"
            ) from None
        if owner is None:
            raise ApiError(401, BAD_TOKEN, type="authentication_error", code="invalid_api_key")
        return owner

    async def token_user(self, secret: str) -> str | None:
        """The user id a personal token acts as (None: unknown, expired, revoked, or the
        database is down): how the analytics page knows an admin's script."""
        try:
            owner = await self._tokens.authenticate(secret)
        except DatabaseError:
            return None
        return owner.user if owner is not None else None

    async def list_models(self, request: web.Request) -> web.StreamResponse:
        owner = await self.owner(request)
        created = now()
        data = [
            {"id": model, "object": "model", "created": created, "owned_by": "chatbot"}
            for model in self._models.for_owner(owner)
        ]
        return web.json_response({"object": "list", "data": data})

    async def read(self, request: web.Request) -> ChatRequest:
        """The request body, parsed; 413 over 1 MB, 400 when malformed."""
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise ApiError(413, "the request body is over 1 MB", code="request_too_large")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(413, "the request body is over 1 MB", code="request_too_large") from None
        return parse_chat_request(parse_json(body))

    def route(self, model: str) -> bool:
        """Whether ``model`` is the premium route; 404 for a model not offered here."""
        if model == self._models.local:
            return False
        if self._models.premium is not None and model == self._models.premium:
            return True
        raise ApiError(
            404,
            f"The model {model!r} does not exist here; GET /v1/models lists the models",
            code="model_not_found",
            param="model",
        )

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        owner = await self.owner(request)
        chat = await self.read(request)
        premium = self.route(chat.model)
        id, created = completion_id(), now()
        message = incoming(
            owner,
            id,
            chat.question,
            via=API,
            transcript=chat.transcript,
            instructions=chat.instructions,
        )
        sink = ApiSink(
            request=request, stream=chat.stream, id=id, model=chat.model, created=created
        )
        # The answer runs as a task of its own (drained on shutdown like every answer): a
        # client that leaves cancels this handler, not the answer, which stops at its next
        # write and is recorded as cancelled.
        answering = self._tracker.spawn(
            self._assistant.answer(message, sink, premium=premium), name="api-answer"
        )
        try:
            record = await asyncio.shield(answering)
        except asyncio.CancelledError:
            sink.gone = True
            raise
        if sink.error is not None:
            raise error_for(sink.error)
        if chat.stream:
            return await self._end_stream(sink, record, include_usage=chat.include_usage)
        body = {
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": chat.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": sink.text},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage(record),
            "citations": citations_json(sink.citations),
        }
        return web.json_response(body, dumps=lambda o: json.dumps(o, ensure_ascii=False))

    async def _end_stream(
        self, sink: ApiSink, record: UsageRecord | None, *, include_usage: bool
    ) -> web.StreamResponse:
        if sink.response is None:
            if sink.gone:  # the client left before the first text: nobody to answer
                return web.Response(status=499)
            try:  # an answer without text (the core always writes or fails): still a stream
                await sink.event({"content": ""})
            except ReplyCancelled:
                return web.Response(status=499)
        assert sink.response is not None
        await sink.send(sink.chunk({}, finish="stop"))
        if include_usage:
            await sink.send(sink.chunk(None, usage=usage(record)))
        await sink.send(b"data: [DONE]\n\n")
        if not sink.gone:
            try:
                await sink.response.write_eof()
            except ConnectionError:
                pass
        return sink.response


def usage(record: UsageRecord | None) -> dict[str, int]:
    """OpenAI's `usage` object from the core's usage record."""
    prompt = record.prompt_tokens if record is not None else 0
    completion = record.completion_tokens if record is not None else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _mcp_server_class() -> type[McpServer]:
    from adapters.api.mcp import McpServer

    return McpServer
