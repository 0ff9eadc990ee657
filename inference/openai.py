"""The premium chat model: OpenAI (or any OpenAI-compatible endpoint) through ChatOpenAI."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Sequence

import httpx
import openai
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from inference.base import (
    GenerationFailed,
    InferenceError,
    ModelNotFound,
    ModelUnavailable,
    ProviderAuthFailed,
    StreamEvent,
    Turn,
    Usage,
)
from inference.streaming import MALFORMED_RESPONSE, estimated_usage, stream_chat

log = logging.getLogger(__name__)

PING_TIMEOUT_SECONDS = 5.0
# History sent to the premium model is trimmed to this window (a quarter is left for the
# answer): every prompt token is paid for, and a long thread must not cost dollars.
DEFAULT_CONTEXT_TOKENS = 32_768
DEFAULT_MAX_ANSWER_TOKENS = 4_096


def _transport_errors() -> tuple[type[Exception], ...]:
    """httpx errors the openai SDK lets through while reading a stream (a dropped
    connection mid-body); newer SDKs are built on httpx2, older ones on httpx."""
    errors: list[type[Exception]] = [httpx.HTTPError]
    try:
        import httpx2  # type: ignore[import-not-found, unused-ignore]
    except ImportError:  # pragma: no cover - depends on the installed openai SDK
        pass
    else:
        errors.append(httpx2.HTTPError)
    return tuple(errors)


# openai.OpenAIError covers every status error (401, 404, 429, 5xx), connection errors and
# timeouts and `{"error": ...}` events inside the stream; OSError covers socket errors and
# langchain-openai's StreamChunkTimeoutError (a TimeoutError); MALFORMED_RESPONSE covers
# undecodable or misshapen chunks and an empty stream.
_EXCHANGE_ERRORS: tuple[type[Exception], ...] = (
    openai.OpenAIError,
    *_transport_errors(),
    OSError,
    *MALFORMED_RESPONSE,
)


def _is_model_missing(exc: openai.NotFoundError) -> bool:
    """Whether OpenAI said it lacks the model (``code: model_not_found``).

    A bare 404 is not enough: a wrong OPENAI_BASE_URL (or a proxy) answers 404 for the
    route too, and that is an unusable endpoint, not a missing model.
    """
    if exc.code == "model_not_found":
        return True
    message = str(exc.message).lower()
    return "model" in message and ("does not exist" in message or "not found" in message)


class OpenAIChatModel:
    """One OpenAI model, streamed through LangChain's ``ChatOpenAI`` with usage in the stream.

    The ``ChatOpenAI`` (and its HTTP connection pool) is built once and shared by every
    generation, concurrent ones included. Requests go to ``/v1/chat/completions``.
    """

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str | None = None,
        context_tokens: int = DEFAULT_CONTEXT_TOKENS,
        max_answer_tokens: int = DEFAULT_MAX_ANSWER_TOKENS,
        request_timeout: float = 60.0,
        connect_timeout: float = 5.0,
        max_retries: int = 1,
    ) -> None:
        """Configure the model; makes no network call.

        ``base_url`` None means OpenAI's API. ``request_timeout`` bounds each wait for
        data (the first token included); ``max_retries`` is how often the SDK retries a
        request that failed before streaming began (connection errors, 429, 5xx).
        """
        self._model = model
        self._base_url = base_url
        self._context_tokens = context_tokens
        self._chat = ChatOpenAI(
            model=model,
            api_key=SecretStr(api_key),
            base_url=base_url,
            streaming=True,
            stream_usage=True,
            max_completion_tokens=max_answer_tokens,
            timeout=openai.Timeout(request_timeout, connect=connect_timeout),
            max_retries=max_retries,
            # Chat Completions, which every OpenAI-compatible server speaks.
            use_responses_api=False,
        )

    @property
    def name(self) -> str:
        """The model name as configured, e.g. ``gpt-4.1``."""
        return self._model

    @property
    def context_tokens(self) -> int:
        """The prompt-plus-answer window the bot uses with this model."""
        return self._context_tokens

    def __repr__(self) -> str:
        return f"OpenAIChatModel(model={self._model!r}, base_url={self._base_url!r})"

    def stream(self, turns: Sequence[Turn]) -> AsyncGenerator[StreamEvent]:
        """Generate an answer to ``turns``: text deltas in order, then one ``Usage``.

        Raises ``ProviderAuthFailed`` when the key is refused, ``ModelNotFound`` when the
        endpoint lacks the model, ``ModelUnavailable`` for any other failure before the
        first text and ``GenerationFailed`` after it (preceded by an estimated ``Usage``,
        since tokens generated before the failure are billed).
        """
        return stream_chat(
            self._chat,
            turns,
            errors=_EXCHANGE_ERRORS,
            translate=self._translate,
            usage_when_missing=self._usage_when_missing,
            usage_on_failure=True,
        )

    def _translate(self, exc: Exception, started: bool) -> InferenceError:
        """OpenAI's failure as ours."""
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return ProviderAuthFailed(
                f"the OpenAI endpoint refused the API key (HTTP {exc.status_code})"
            )
        if started:
            return GenerationFailed(f"OpenAI failed mid-answer with {self._model}")
        if isinstance(exc, openai.NotFoundError):
            if _is_model_missing(exc):
                return ModelNotFound(f"the OpenAI endpoint has no model {self._model}")
            return ModelUnavailable(f"the OpenAI endpoint answered 404 for {self._model}")
        status = getattr(exc, "status_code", None)
        return ModelUnavailable(
            f"OpenAI could not serve {self._model}"
            + (f" (HTTP {status})" if status else f" ({type(exc).__name__})")
        )

    def _usage_when_missing(self, turns: Sequence[Turn], parts: Sequence[str]) -> Usage:
        # Some compatible servers ignore stream_options: estimate, so budgets still hold.
        log.warning("%s reported no token usage; estimating it from the text", self._model)
        return estimated_usage(turns, parts)

    async def ping(self) -> None:
        """Check that the endpoint accepts the key and serves the model (GET /models/{id}).

        Raises ``ProviderAuthFailed``, ``ModelNotFound`` or ``ModelUnavailable``.
        """
        try:
            async with asyncio.timeout(PING_TIMEOUT_SECONDS):
                await self._chat.root_async_client.models.retrieve(self._model)
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise ProviderAuthFailed(
                f"the OpenAI endpoint refused the API key (HTTP {exc.status_code})"
            ) from exc
        except openai.NotFoundError as exc:
            raise ModelNotFound(f"the OpenAI endpoint has no model {self._model}") from exc
        except _EXCHANGE_ERRORS as exc:
            raise ModelUnavailable(f"the OpenAI endpoint did not answer for {self._model}") from exc
