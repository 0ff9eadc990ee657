"""The interface every chat model offers to the core."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of a conversation as the model sees it."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of generated text, in order."""

    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts reported by the model server for one generation."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class Queued:
    """The request waits for a free generation slot; ``position`` 1 is next."""

    position: int


StreamEvent = TextDelta | Usage | Queued


class InferenceError(Exception):
    """Root of every error raised by this package."""


class ModelUnavailable(InferenceError):
    """No server could be reached (refused connection, DNS, timeout before any text)."""


class ModelNotFound(InferenceError):
    """The server answered but does not have the model (Ollama's 404)."""


class Overloaded(InferenceError):
    """Every generation slot is busy and the waiting line is full."""


class GenerationFailed(InferenceError):
    """The server failed after generation began (mid-stream error or disconnect)."""


class ProviderAuthFailed(ModelUnavailable):
    """The provider refused the configured credentials (HTTP 401/403: a wrong or revoked key)."""


class ChatModel(Protocol):
    """A streaming chat model."""

    @property
    def name(self) -> str:
        """The model identifier, e.g. ``codellama:7b``."""
        ...

    @property
    def context_tokens(self) -> int:
        """How many tokens of prompt plus answer the model accepts."""
        ...

    def stream(self, turns: Sequence[Turn]) -> AsyncGenerator[StreamEvent]:
        """Generate an answer to ``turns``, yielding text deltas and finally usage.

        An async generator: close it (``contextlib.aclosing``) to stop generating early.
        Raises ``ModelUnavailable``, ``ModelNotFound`` or ``GenerationFailed``.
        """
        ...
