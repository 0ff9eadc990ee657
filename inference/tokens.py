"""One token estimate for the whole bot: prompt trimming and the usage of a provider that
reports none. Code runs about 3 characters per token and prose about 4; the estimate errs
high, so prompts fit and budgets hold."""

from __future__ import annotations

CHARS_PER_TOKEN = 3
# Per-message overhead of chat templates (role markers, separators), in tokens.
MESSAGE_OVERHEAD = 4


def estimate_tokens(text: str) -> int:
    """Approximate tokens of ``text`` (rounded up)."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def estimate_message_tokens(text: str) -> int:
    """Approximate tokens of one chat message with ``text``, template overhead included."""
    return estimate_tokens(text) + MESSAGE_OVERHEAD
