"""Inline commands: a message whose text starts with `/name` is that command."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

CommandName = Literal["premium", "reset", "help", "model", "ask", "search", "unknown"]
KNOWN: dict[str, CommandName] = {
    "premium": "premium",
    "reset": "reset",
    "help": "help",
    "model": "model",
    "ask": "ask",
    "search": "search",
}
# `/word` followed by whitespace or the end; `/usr/bin/env` and `/tmp/x` are not commands.
_COMMAND = re.compile(r"^/([A-Za-z][A-Za-z_-]{0,30})(?=\s|$)\s*(.*)$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed command: its name and the rest of the text."""

    name: CommandName
    argument: str
    word: str


def parse_command(text: str) -> Command | None:
    """The command ``text`` starts with, or None when it is an ordinary question."""
    match = _COMMAND.match(text.strip())
    if match is None:
        return None
    word = match.group(1).lower()
    return Command(name=KNOWN.get(word, "unknown"), argument=match.group(2).strip(), word=word)


_INTRO = (
    "I answer questions with a self-hosted model ({local_model}); "
    "your code stays on company servers."
)
_PREMIUM = (
    "- `/premium <question>`: answer with the premium model ({premium_model}); "
    "text leaves the company"
)
_COMMON = (
    "- `/reset`: forget this conversation (only this one)\n"
    "- `/search <words>`: list the indexed team documents that match, without asking a model\n"
    "- `/model`: which models answer here, and your premium spend this month\n"
    "- `/help`: this list"
)
_WHERE = {
    "terminal": "**Commands** (type them at the prompt):",
    "chat": (
        "**Commands** (in a channel, mention me first; in a direct chat or a thread I'm part "
        "of, just type them):"
    ),
}
_TERMINAL_EXTRA = "- `/quit` or `/exit` (or Ctrl-D): end the chat"
_CHANNELS = (
    "In a channel, mention me and I answer in the message's thread, keeping the context of "
    "that thread."
)


def command_list(*, premium: bool) -> str:
    """The commands in one line, as the unknown-command reply names them: `/premium` only
    when a premium model is configured, as `/help` lists them."""
    names = ["`/premium <question>`"] if premium else []
    names += ["`/search <words>`", "`/reset`", "`/model`", "`/help`"]
    return ", ".join(names)


def help_text(*, terminal: bool, local_model: str, premium_model: str | None) -> str:
    """The `/help` reply: a terminal's wording (with `/quit` and `/exit`, no channels), or a
    chat platform's; `/premium` only when a premium model is configured (``premium_model``
    None means it is not)."""
    lines = [_WHERE["terminal" if terminal else "chat"]]
    if premium_model is not None:
        lines.append(_PREMIUM.format(premium_model=premium_model))
    lines.append(_COMMON)
    if terminal:
        lines.append(_TERMINAL_EXTRA)
    parts = [_INTRO.format(local_model=local_model), "\n".join(lines)]
    if not terminal:
        parts.append(_CHANNELS)
    return "\n\n".join(parts)
