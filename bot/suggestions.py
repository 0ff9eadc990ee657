"""Suggested prompts: what the bot offers to ask when someone opens a chat with it (Slack's
suggested prompts in the DM, Teams' prompt starters). An operator can replace them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MAX_SUGGESTIONS = 4  # Slack shows at most four suggested prompts
TITLE_LIMIT = 32  # short enough for a Teams prompt starter's title


@dataclass(frozen=True, slots=True)
class Suggestion:
    """One suggested prompt: a short title, and the message it sends."""

    title: str
    message: str


DEFAULTS = (
    Suggestion("Explain some code", "Explain what this code does:"),
    Suggestion("Write tests", "Write unit tests for this code:"),
    Suggestion("Debug an error", "Why does this error happen?"),
)
REVIEW = Suggestion("Review a change", "Review this diff for bugs:")
SEARCH = Suggestion("Search the docs", "/search how do we deploy")


def parse_suggestion(text: str) -> Suggestion | None:
    """An operator's ``Title | message`` (or just ``message``, its own title); None when
    blank."""
    title, bar, message = text.partition("|")
    title, message = title.strip(), message.strip()
    if not bar:
        title, message = title[:TITLE_LIMIT].strip(), title
    if not message:
        return None
    return Suggestion(title or message[:TITLE_LIMIT].strip(), message)


def suggestions(configured: Sequence[str] | None, *, knowledge: bool) -> list[Suggestion]:
    """Up to four suggested prompts: the operator's (``SUGGESTED_PROMPTS``) when set, else
    the defaults, one of them a `/search` of the docs when knowledge sources are set."""
    if configured is not None:
        parsed = (parse_suggestion(text) for text in configured)
        return [s for s in parsed if s is not None][:MAX_SUGGESTIONS]
    return [*DEFAULTS, SEARCH if knowledge else REVIEW]
