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


HELP_TEXT = """\
I answer questions with a self-hosted model ({local_model}); your code stays on company servers.

**Commands** (type them after mentioning me, in a direct chat, or in a thread I'm part of):
- `/premium <question>`: answer with the premium model ({premium_model}); text leaves the company
- `/reset`: forget this conversation (only this one)
- `/search <words>`: list the indexed team documents that match, without asking a model
- `/model`: which models answer here, and your premium spend this month
- `/help`: this list

In a channel, mention me and I answer in the message's thread, keeping the context of that \
thread."""
