"""Builds the model prompt: system prompt + as much recent history as fits + the question."""

from __future__ import annotations

from collections.abc import Sequence

from inference.base import Turn

# Per-message overhead of chat templates (role markers, separators), in tokens.
_MESSAGE_OVERHEAD = 4


def estimate_tokens(text: str) -> int:
    """An approximate token count; code runs about 3 characters per token, prose 4."""
    return len(text) // 3 + _MESSAGE_OVERHEAD


def prompt_budget(context_tokens: int) -> int:
    """Tokens available to the prompt, leaving a quarter of the window for the answer."""
    return context_tokens - max(256, context_tokens // 4)


def build_prompt(
    *, system_prompt: str, history: Sequence[Turn], question: str, budget_tokens: int
) -> list[Turn]:
    """The turns to send: oldest history goes first when over budget; the system prompt
    and the newest question always stay."""
    used = estimate_tokens(system_prompt) + estimate_tokens(question)
    kept: list[Turn] = []
    for turn in reversed(history):
        cost = estimate_tokens(turn.content)
        if used + cost > budget_tokens:
            break
        kept.append(turn)
        used += cost
    kept.reverse()
    # A conversation should not open with an orphaned answer whose question was dropped.
    while kept and kept[0].role == "assistant":
        kept.pop(0)
    return [Turn("system", system_prompt), *kept, Turn("user", question)]
