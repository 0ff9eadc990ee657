"""A fake OpenAI server speaking the Chat Completions protocol on a real local port.

Implements what the bot uses of https://platform.openai.com/docs/api-reference/chat:
``POST /v1/chat/completions`` streamed as server-sent events (``data: {chunk}`` lines,
a final usage chunk with empty ``choices`` when ``stream_options.include_usage`` is
true, then ``data: [DONE]``) and not streamed, and ``GET /v1/models/{model}``. Errors
use OpenAI's JSON error bodies. Tests drive the real ``openai`` SDK and ``ChatOpenAI``
against it and steer it through plain attributes.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from typing import Any, Literal

from aiohttp import web

FailMode = Literal["disconnect", "error_event"]

API_KEY = "sk-test-fake0123456789abcdefghijklmnopqrstuvwxyz"

_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided: sk-wr***ong. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for gpt-4.1 in organization org-x on requests per min (RPM).",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ("server_error", None, "The engine is currently overloaded, please try again later"),
}


class FakeOpenAI:
    """A local HTTP server that behaves like api.openai.com with scripted answers.

    Attributes tests may set at any time (read per request):

    - ``models``: model ids it serves; others get 404 ``model_not_found``.
    - ``api_key``: the key it accepts (``Authorization: Bearer ...``); others get 401.
    - ``reply`` / ``reply_fn(messages)``: the answer text.
    - ``chunk_size``: characters per content chunk; ``token_delay`` between chunks;
      ``first_token_delay`` before the response starts.
    - ``status_override``: answer every completion with this HTTP status and OpenAI's
      error body for it (401, 403, 429, 500, 503 ...).
    - ``fail_after_chunks`` + ``fail_mode``: after that many content chunks, either drop
      the connection mid-body (``"disconnect"``) or send an SSE ``error`` event.
    - ``send_usage``: False to ignore ``stream_options.include_usage`` (like some
      compatible servers).
    - ``usage``: (prompt_tokens, completion_tokens) to report; default: characters of
      the messages // 4 and the number of content chunks.

    Recorded: ``requests`` (JSON bodies of completions, in order) and ``headers`` (their
    request headers).
    """

    def __init__(self, models: list[str] | None = None, *, api_key: str = API_KEY) -> None:
        self.models: list[str] = list(models if models is not None else ["gpt-4.1"])
        self.api_key = api_key
        self.reply: str = "Premium **answer**."
        self.reply_fn: Callable[[list[dict[str, Any]]], str] | None = None
        self.chunk_size: int = 6
        self.token_delay: float = 0.0
        self.first_token_delay: float = 0.0
        self.status_override: int | None = None
        self.fail_after_chunks: int | None = None
        self.fail_mode: FailMode = "disconnect"
        self.send_usage: bool = True
        self.usage: tuple[int, int] | None = None
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # -- lifecycle ---------------------------------------------------------

    @property
    def url(self) -> str:
        """The OPENAI_BASE_URL to use, e.g. ``http://127.0.0.1:54321/v1``."""
        if self._port is None:
            raise RuntimeError("FakeOpenAI is not started")
        return f"http://127.0.0.1:{self._port}/v1"

    async def start(self) -> None:
        """Bind a free port on 127.0.0.1 and begin serving."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        app.router.add_get("/v1/models/{model}", self._model)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(runner, sock).start()
        self._runner = runner

    async def stop(self) -> None:
        """Stop serving and free the port."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- what the client sent ----------------------------------------------

    def messages(self, index: int = -1) -> list[tuple[str, str]]:
        """The (role, content) pairs of one recorded request."""
        return [(m["role"], m["content"]) for m in self.requests[index]["messages"]]

    def sent_text(self) -> str:
        """Every message content of every request, joined: what left the machine."""
        return "\n".join(c for i in range(len(self.requests)) for _, c in self.messages(i))

    # -- helpers -------------------------------------------------------------

    @staticmethod
    def error(status: int, message: str | None = None, code: str | None = None) -> web.Response:
        """OpenAI's error body for ``status``."""
        kind, default_code, default_message = _ERRORS.get(
            status, ("server_error", None, "Unexpected error.")
        )
        body = {
            "error": {
                "message": message or default_message,
                "type": kind,
                "param": None,
                "code": code or default_code,
            }
        }
        return web.json_response(body, status=status)

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    def _model_missing(self, name: str) -> web.Response:
        return self.error(
            404,
            f"The model `{name}` does not exist or you do not have access to it.",
            "model_not_found",
        )

    # -- handlers ------------------------------------------------------------

    async def _model(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self.error(401)
        name = request.match_info["model"]
        if name not in self.models:
            return self._model_missing(name)
        return web.json_response(
            {"id": name, "object": "model", "created": 1744316542, "owned_by": "system"}
        )

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return self.error(400, "We could not parse the JSON body of your request.")
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        if not self._authorised(request):
            return self.error(401)
        if self.status_override is not None:
            return self.error(self.status_override)
        name = str(body.get("model") or "")
        if name not in self.models:
            return self._model_missing(name)
        messages: list[dict[str, Any]] = list(body.get("messages") or [])
        text = self.reply_fn(messages) if self.reply_fn is not None else self.reply
        size = max(1, self.chunk_size)
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        prompt_tokens, completion_tokens = self.usage or (
            sum(len(str(m.get("content") or "")) for m in messages) // 4,
            len(pieces),
        )
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        if self.first_token_delay:
            await asyncio.sleep(self.first_token_delay)
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": f"{name}-2025-04-14",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text, "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await self._stream(request, name, pieces, usage if include_usage else None)

    async def _stream(
        self,
        request: web.Request,
        name: str,
        pieces: list[str],
        usage: dict[str, Any] | None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={"Content-Type": "text/event-stream; charset=utf-8", "x-request-id": "req_1"},
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            return {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": f"{name}-2025-04-14",
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
                **({"usage": None} if usage is not None else {}),
            }

        async def event(data: dict[str, Any] | str, name: str | None = None) -> None:
            raw = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
            prefix = f"event: {name}\n" if name else ""
            await response.write(f"{prefix}data: {raw}\n\n".encode())

        try:
            await event(chunk({"role": "assistant", "content": "", "refusal": None}, None))
            for sent, piece in enumerate(pieces):
                if self.fail_after_chunks is not None and sent >= self.fail_after_chunks:
                    break
                if sent and self.token_delay:
                    await asyncio.sleep(self.token_delay)
                await event(chunk({"content": piece}, None))
            else:
                await event(chunk({}, "stop"))
                if usage is not None and self.send_usage:
                    await event(
                        {
                            "id": "chatcmpl-fake",
                            "object": "chat.completion.chunk",
                            "created": created,
                            "model": f"{name}-2025-04-14",
                            "system_fingerprint": "fp_fake",
                            "choices": [],
                            "usage": usage,
                        }
                    )
                await event("[DONE]")
                await response.write_eof()
                return response
            if self.fail_mode == "error_event":
                await event(
                    {"error": {"message": "The server had an error", "type": "server_error"}},
                    name="error",
                )
                await response.write_eof()
                return response
            # Let the written chunks reach the client, then cut the connection without
            # the terminating zero-length chunk.
            await asyncio.sleep(0.05)
            if request.transport is not None:
                request.transport.abort()
        except ConnectionResetError:
            pass
        return response
