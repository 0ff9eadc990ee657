"""A chat model served by a self-hosted Ollama server, through LangChain's ChatOllama."""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import AsyncGenerator, Sequence

import httpx
from httpx_aiohttp import AiohttpTransport
from langchain_ollama import ChatOllama
from ollama import ResponseError

from inference.base import (
    GenerationFailed,
    InferenceError,
    ModelNotFound,
    ModelUnavailable,
    StreamEvent,
    Turn,
    Usage,
)
from inference.streaming import MALFORMED_RESPONSE, stream_chat

PING_TIMEOUT_SECONDS = 3.0

# What a failed exchange with Ollama surfaces as, below the ollama client:
# httpx.HTTPError covers connect errors/timeouts in streaming mode (the ollama client
# only wraps them for non-streaming calls), read timeouts and RemoteProtocolError on a
# dropped connection; ConnectionError is the ollama client's wrapper for non-streaming
# connect errors (and, as OSError, also TimeoutError); MALFORMED_RESPONSE covers
# undecodable lines, unexpected shapes and an empty body.
_EXCHANGE_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError, OSError, *MALFORMED_RESPONSE)
_PING_ERRORS: tuple[type[Exception], ...] = (ResponseError, *_EXCHANGE_ERRORS)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The TLS settings of every Ollama client in this process, as httpx makes them by
    default (certifi's CA bundle, or SSL_CERT_FILE / SSL_CERT_DIR), made once: loading the
    bundle costs tens of milliseconds, and each ChatOllama holds two clients. A process that
    forks workers makes it before, so that they share it."""
    return httpx.create_ssl_context()


def _normalise(model: str) -> str:
    """Ollama resolves ``codellama`` to ``codellama:latest``; compare names that way."""
    return model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"


def _is_model_missing(exc: ResponseError) -> bool:
    """Whether Ollama said it lacks the model (``model "x" not found, try pulling it first``).

    A bare 404 is not enough: a wrong base URL or a proxy in front of the server
    also answers 404, and that is an unusable server, not a missing model.
    """
    text = str(exc.error).lower()
    return "not found" in text and "model" in text


class OllamaChatModel:
    """One model on one Ollama server, streamed through LangChain's ``ChatOllama``.

    The ``ChatOllama`` (and the httpx connection pool inside it) is built once and
    shared by every generation, concurrent ones included.
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        num_ctx: int,
        request_timeout: float = 120.0,
        connect_timeout: float = 5.0,
    ) -> None:
        """Configure the model; makes no network call.

        ``request_timeout`` bounds each wait for data from the server, including the
        wait for the first token (model load plus prompt evaluation), not the whole
        answer. ``connect_timeout`` bounds establishing the TCP connection.
        """
        self._base_url = base_url
        self._model = model
        self._transport = AiohttpTransport(verify=tls_context())
        self._num_ctx = num_ctx
        self._chat = ChatOllama(
            base_url=base_url,
            model=model,
            num_ctx=num_ctx,
            client_kwargs={
                "timeout": httpx.Timeout(request_timeout, connect=connect_timeout),
                "verify": tls_context(),
            },
            # httpx's own connection pool costs more CPU per request than the whole rest of
            # the bot; the same httpx API over aiohttp's pool is several times cheaper.
            async_client_kwargs={"transport": self._transport},
        )

    @property
    def name(self) -> str:
        """The Ollama model name, e.g. ``codellama:7b``."""
        return self._model

    @property
    def context_tokens(self) -> int:
        """The context window (``num_ctx``) sent with every request."""
        return self._num_ctx

    @property
    def base_url(self) -> str:
        """The Ollama server this model is served by."""
        return self._base_url

    def __repr__(self) -> str:
        return f"OllamaChatModel(model={self._model!r}, num_ctx={self._num_ctx})"

    def stream(self, turns: Sequence[Turn]) -> AsyncGenerator[StreamEvent]:
        """Generate an answer to ``turns``: text deltas in order, then one ``Usage``.

        Raises ``ModelNotFound`` if the server lacks the model, ``ModelUnavailable``
        for any failure before the first text arrived, and ``GenerationFailed`` for
        any failure after it.
        """
        return stream_chat(
            self._chat,
            turns,
            errors=(ResponseError, *_EXCHANGE_ERRORS),
            translate=self._translate,
            usage_when_missing=lambda _turns, _parts: Usage(0, 0),
        )

    def _translate(self, exc: Exception, started: bool) -> InferenceError:
        """Ollama's failure as ours: before the first text the server is unusable (or lacks
        the model), after it the answer broke off."""
        if started:
            return GenerationFailed(f"Ollama failed mid-answer with {self._model}")
        # An HTTP error status before the body, or an {"error": ...} NDJSON line in it
        # (status_code -1), which is how Ollama reports a runner failure.
        if isinstance(exc, ResponseError) and _is_model_missing(exc):
            return ModelNotFound(f"Ollama does not have the model {self._model}")
        return ModelUnavailable(f"Ollama could not serve {self._model}")

    async def aclose(self) -> None:
        """Close the connection pool (at shutdown)."""
        await self._transport.aclose()

    async def ping(self) -> None:
        """Check that the server answers and has the model pulled.

        Raises ``ModelUnavailable`` if the server cannot be reached or answers with
        an error, ``ModelNotFound`` if the model is not among its local models.
        """
        try:
            async with asyncio.timeout(PING_TIMEOUT_SECONDS):
                # The ollama client ChatOllama already holds: same host, auth headers
                # and connection pool as generations.
                listing = await self._chat._async_client.list()
        except _PING_ERRORS as exc:
            raise ModelUnavailable(f"Ollama did not list its models for {self._model}") from exc
        pulled = {_normalise(m.model) for m in listing.models if m.model}
        if _normalise(self._model) not in pulled:
            raise ModelNotFound(f"Ollama does not have the model {self._model}")
