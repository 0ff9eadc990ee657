"""A fake Ollama server speaking Ollama's REST protocol on a real local port.

Implements the parts of https://github.com/ollama/ollama/blob/main/docs/api.md that
the bot uses: ``POST /api/chat`` (streamed NDJSON and single JSON), ``POST /api/embed``,
``GET /api/tags``, ``GET /api/version`` and ``POST /api/show``. Tests drive the real
``ollama`` client and ``ChatOllama`` against it and steer its behaviour through plain attributes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from aiohttp import web

FailMode = Literal["error_line", "disconnect", "end"]

_DIGEST = "9f438cb9cd581fc025612d27f7c1a6669ff83a8bb0ed86c94fcf4c5440555697"


def _normalise(name: str) -> str:
    """Ollama treats ``codellama`` and ``codellama:latest`` as the same model."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class FakeOllama:
    """A local HTTP server that behaves like ``ollama serve`` with scripted answers.

    Attributes tests may set at any time (read per request):

    - ``reply``: the answer text (default ``"Hello **world**"``).
    - ``reply_fn``: if set, ``reply_fn(messages)`` computes the answer from the
      request's ``messages`` (list of ``{"role", "content"}`` dicts).
    - ``chunk_size``: characters of answer per NDJSON content line.
    - ``token_delay``: seconds between content lines.
    - ``first_token_delay``: seconds before the response starts (headers included,
      like a real server loading the model / evaluating the prompt).
    - ``fail_after_chunks``: after that many content lines, fail per ``fail_mode``.
    - ``fail_mode``: ``"error_line"`` writes ``{"error": ...}`` and ends the body (what
      Ollama does when the runner dies mid-generation); ``"disconnect"`` drops the
      TCP connection in the middle of the chunked body; ``"end"`` just ends the body
      (with ``fail_after_chunks=0``: a 200 with an empty body).
    - ``status_override``: answer ``/api/chat`` with this HTTP status and
      ``{"error": "server busy"}``.

    Recorded: ``requests`` (every ``/api/chat`` JSON body, in arrival order),
    ``client_disconnects`` (how many streams the client abandoned before the last
    line) and ``client_disconnected`` (an ``asyncio.Event`` set at the first one);
    ``chat_started`` is set at the first ``/api/chat`` request.

    Embeddings (``/api/embed``): ``embed_requests`` records every request body;
    ``embed_fn(text) -> list[float]`` computes a vector (default: ``bag_of_words``, a
    deterministic hashed bag of words of ``embed_dimension`` dimensions, so texts sharing
    words are similar); ``embed_status_override`` answers with that status instead;
    ``embed_held[model]`` (an event) holds that model's requests until it is set
    (``embed_holding`` is set once one is held);
    ``embed_dimensions[model]`` gives one model vectors of its own size.

    Usage numbers are deterministic: ``prompt_eval_count`` is the total number of
    characters of the request's message contents // 4 and ``eval_count`` is the
    number of content lines sent.
    """

    def __init__(self, models: list[str] | None = None, *, version: str = "0.6.5") -> None:
        self.models: list[str] = list(models if models is not None else ["codellama:7b"])
        self.version = version
        self.reply: str = "Hello **world**"
        self.reply_fn: Callable[[list[dict[str, Any]]], str] | None = None
        self.chunk_size: int = 8
        self.token_delay: float = 0.0
        self.first_token_delay: float = 0.0
        self.fail_after_chunks: int | None = None
        self.fail_mode: FailMode = "error_line"
        self.error_message: str = "an error was encountered while running the model"
        self.status_override: int | None = None
        self.embed_dimension: int = 64
        self.embed_fn: Callable[[str], list[float]] | None = None
        self.embed_status_override: int | None = None
        self.embed_requests: list[dict[str, Any]] = []
        self.embed_held: dict[str, asyncio.Event] = {}
        self.embed_dimensions: dict[str, int] = {}
        self.embed_holding = asyncio.Event()
        self.requests: list[dict[str, Any]] = []
        self.client_disconnects: int = 0
        self.generating: int = 0  # streamed answers in progress now
        self.most_generating: int = 0  # the most at once so far
        self.last_token_at: float = 0.0  # time.monotonic() when the last stream ended
        self.client_disconnected = asyncio.Event()
        self.chat_started = asyncio.Event()  # set at the first /api/chat request
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # -- lifecycle ---------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``; only valid after ``start()``."""
        if self._port is None:
            raise RuntimeError("FakeOllama is not started")
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> None:
        """Bind a free port on 127.0.0.1 (the same one again after ``stop()``) and serve."""
        app = web.Application()
        app.router.add_post("/api/chat", self._chat)
        app.router.add_post("/api/embed", self._embed)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_get("/api/version", self._version)
        app.router.add_post("/api/show", self._show)
        app.router.add_get("/", self._root)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port or 0))
        self._port = sock.getsockname()[1]
        site = web.SockSite(runner, sock)
        await site.start()
        self._runner = runner

    async def stop(self) -> None:
        """Stop serving and free the port."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for_requests(self, count: int, timeout: float = 5.0) -> None:
        """Poll until ``count`` chat requests have arrived; fail after ``timeout`` seconds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.requests) < count:
            if asyncio.get_running_loop().time() >= deadline:
                raise AssertionError(
                    f"FakeOllama: {len(self.requests)} of {count} requests within {timeout}s"
                )
            await asyncio.sleep(0.01)

    async def __aenter__(self) -> FakeOllama:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- helpers -----------------------------------------------------------

    def has_model(self, name: str) -> bool:
        """Whether ``name`` is one of the pulled models (``:latest`` normalised)."""
        wanted = _normalise(name)
        return any(_normalise(m) == wanted for m in self.models)

    @staticmethod
    def _error(status: int, message: str) -> web.Response:
        return web.json_response({"error": message}, status=status)

    @staticmethod
    def _not_found(name: str) -> web.Response:
        return web.json_response(
            {"error": f'model "{name}" not found, try pulling it first'}, status=404
        )

    def _chunks(self, text: str) -> list[str]:
        size = max(1, self.chunk_size)
        return [text[i : i + size] for i in range(0, len(text), size)]

    @staticmethod
    def _prompt_tokens(messages: list[dict[str, Any]]) -> int:
        return sum(len(str(m.get("content") or "")) for m in messages) // 4

    def _final_stats(self, prompt_tokens: int, eval_count: int) -> dict[str, Any]:
        return {
            "done_reason": "stop",
            "total_duration": 1_000_000 + 1000 * eval_count,
            "load_duration": 500_000,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": 100_000,
            "eval_count": eval_count,
            "eval_duration": 1000 * eval_count,
        }

    @property
    def embed_calls(self) -> int:
        """How many ``/api/embed`` requests arrived."""
        return len(self.embed_requests)

    @property
    def embedded_texts(self) -> list[str]:
        """Every text embedded, in arrival order."""
        texts: list[str] = []
        for body in self.embed_requests:
            value = body.get("input")
            texts.extend([value] if isinstance(value, str) else list(value or []))
        return texts

    def bag_of_words(self, text: str, dimension: int | None = None) -> list[float]:
        """A deterministic unit vector: each lower-cased word adds 1 to a hashed dimension."""
        size = dimension or self.embed_dimension
        vector = [0.0] * size
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            slot = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big")
            vector[slot % size] += 1.0
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        return [x / norm for x in vector]

    # -- handlers ----------------------------------------------------------

    async def _embed(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return self._error(400, "invalid character looking for beginning of value")
        if not isinstance(body, dict):
            return self._error(400, "json: cannot unmarshal into Go value of type api.EmbedRequest")
        self.embed_requests.append(body)
        if self.embed_status_override is not None:
            return self._error(self.embed_status_override, "server busy")
        name = body.get("model") or ""
        if not name:
            return self._error(400, "model is required")
        if not self.has_model(name):
            return self._not_found(name)
        if name in self.embed_held:
            self.embed_holding.set()
            await self.embed_held[name].wait()
        value = body.get("input")
        texts = [value] if isinstance(value, str) else list(value or [])
        dimension = self.embed_dimensions.get(name)
        embed = self.embed_fn or (lambda text: self.bag_of_words(text, dimension))
        answer = {
            "model": name,
            "embeddings": [embed(str(t)) for t in texts],
            "total_duration": 1_000_000,
            "load_duration": 100_000,
            "prompt_eval_count": sum(len(str(t)) // 4 for t in texts),
        }
        # orjson, as Ollama's own encoder is fast: the stdlib's json takes 23 ms for a batch
        # of 48 vectors of 768 dimensions, which the indexing benchmark would measure as ours.
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def _root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": self.version})

    async def _tags(self, request: web.Request) -> web.Response:
        models = []
        for name in self.models:
            full = _normalise(name)
            family = full.split(":", 1)[0].rsplit("/", 1)[-1]
            models.append(
                {
                    "name": full,
                    "model": full,
                    "modified_at": "2024-06-04T14:38:31.83753-07:00",
                    "size": 3825819519,
                    "digest": _DIGEST,
                    "details": {
                        "parent_model": "",
                        "format": "gguf",
                        "family": family,
                        "families": None,
                        "parameter_size": "7B",
                        "quantization_level": "Q4_0",
                    },
                }
            )
        return web.json_response({"models": models})

    async def _show(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return self._error(400, "invalid character looking for beginning of value")
        name = body.get("model") or body.get("name") or ""
        if not name:
            return self._error(400, "model is required")
        if not self.has_model(name):
            return self._not_found(name)
        return web.json_response(
            {
                "modelfile": f"FROM {_normalise(name)}\n",
                "parameters": "stop [INST]\nstop [/INST]",
                "template": "[INST] {{ .System }} {{ .Prompt }} [/INST]",
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": "llama",
                    "families": ["llama"],
                    "parameter_size": "7B",
                    "quantization_level": "Q4_0",
                },
                "model_info": {"general.architecture": "llama", "llama.context_length": 16384},
                "capabilities": ["completion"],
                "modified_at": "2024-06-04T14:38:31.83753-07:00",
            }
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return self._error(400, "invalid character looking for beginning of value")
        if not isinstance(body, dict):
            return self._error(400, "json: cannot unmarshal into Go value of type api.ChatRequest")
        self.requests.append(body)
        self.chat_started.set()

        if self.status_override is not None:
            return self._error(self.status_override, "server busy")
        name = body.get("model") or ""
        if not name:
            return self._error(400, "model is required")
        if not self.has_model(name):
            return self._not_found(name)

        messages: list[dict[str, Any]] = list(body.get("messages") or [])
        text = self.reply_fn(messages) if self.reply_fn is not None else self.reply
        chunks = self._chunks(text)
        prompt_tokens = self._prompt_tokens(messages)

        if self.first_token_delay:
            await asyncio.sleep(self.first_token_delay)

        if body.get("stream", True) is False:
            if self.fail_after_chunks is not None:
                return self._error(500, self.error_message)
            return web.json_response(
                {
                    "model": name,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": text},
                    "done": True,
                    **self._final_stats(prompt_tokens, len(chunks)),
                }
            )
        self.generating += 1
        self.most_generating = max(self.most_generating, self.generating)
        try:
            return await self._stream(request, name, chunks, prompt_tokens)
        finally:
            self.generating -= 1
            self.last_token_at = time.monotonic()

    async def _stream(
        self, request: web.Request, name: str, chunks: list[str], prompt_tokens: int
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/x-ndjson"})
        response.enable_chunked_encoding()
        await response.prepare(request)

        async def line(obj: dict[str, Any]) -> None:
            await response.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

        fail_at = self.fail_after_chunks
        try:
            for sent, piece in enumerate(chunks):
                if fail_at is not None and sent >= fail_at:
                    break
                if sent and self.token_delay:
                    await asyncio.sleep(self.token_delay)
                await line(
                    {
                        "model": name,
                        "created_at": _now(),
                        "message": {"role": "assistant", "content": piece},
                        "done": False,
                    }
                )
            if fail_at is None:
                await line(
                    {
                        "model": name,
                        "created_at": _now(),
                        "message": {"role": "assistant", "content": ""},
                        "done": True,
                        **self._final_stats(prompt_tokens, len(chunks)),
                    }
                )
            elif self.fail_mode == "error_line":
                await line({"error": self.error_message})
            elif self.fail_mode == "end":
                pass
            else:
                # Let the written lines reach the client, then cut the connection
                # without the terminating zero-length chunk.
                await asyncio.sleep(0.05)
                if request.transport is not None:
                    request.transport.abort()
                return response
            await response.write_eof()
        except ConnectionResetError:
            # The client went away mid-stream (a real Ollama stops generating then).
            self._count_disconnect()
        except asyncio.CancelledError:
            self._count_disconnect()
            raise
        return response

    def _count_disconnect(self) -> None:
        self.client_disconnects += 1
        self.client_disconnected.set()
