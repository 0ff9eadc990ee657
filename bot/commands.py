"""Inline commands: a message whose text starts with `/name` is that command."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from bot import replies
from bot.conversation import IncomingMessage, ReplySink
from bot.search import search_reply
from bot.tokens import Owner, TokenCommand

if TYPE_CHECKING:
    from bot.admin import AdminSignIn
    from bot.admission import Admission
    from bot.premium import PremiumAccount
    from bot.replies import ProviderNames
    from bot.retrieval import Retriever
    from bot.state import ConversationState

CommandName = Literal[
    "premium", "reset", "help", "model", "ask", "search", "token", "admin", "unknown"
]
KNOWN: dict[str, CommandName] = {
    "premium": "premium",
    "reset": "reset",
    "help": "help",
    "model": "model",
    "ask": "ask",
    "search": "search",
    "token": "token",
    "admin": "admin",
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
_CHAT_EXTRA = (
    "- `/token`: in a direct message with me, a personal token to use me from your editor, "
    "terminal (`chatbot ask`) or coding agent\n"
    "- `/admin`: for the bot's admins, in a direct message: a sign-in link to the analytics page"
)
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
    lines.append(_TERMINAL_EXTRA if terminal else _CHAT_EXTRA)
    parts = [_INTRO.format(local_model=local_model), "\n".join(lines)]
    if not terminal:
        parts.append(_CHANNELS)
    return "\n\n".join(parts)


class CommandReplies:
    """The commands answered with text, without a model: `/help`, `/reset`, `/model`,
    `/search` and `/token` (`/ask` and `/premium` are questions: ``Assistant``)."""

    def __init__(
        self,
        *,
        state: ConversationState,
        names: ProviderNames,
        local_model: str,
        premium_model: str | None,
        premium_account: PremiumAccount | None,
        admission: Admission,
        retriever: Retriever | None,
        tokens: TokenCommand | None,
        admin: AdminSignIn | None,
        terminals: frozenset[str],
        now: Callable[[], datetime],
    ) -> None:
        """``premium_model`` None: premium is not configured."""
        self._state = state
        self._names = names
        self._local_model = local_model
        self._premium_model = premium_model
        self._premium_account = premium_account
        self._admission = admission
        self._retriever = retriever
        self._tokens = tokens
        self._admin = admin
        self._terminals = terminals
        self._now = now

    async def help(self, message: IncomingMessage, command: Command, sink: ReplySink) -> None:
        """`/help`: the commands, in a terminal's or a chat platform's words."""
        await sink.write(
            help_text(
                terminal=message.key.platform in self._terminals,
                local_model=self._local_model,
                premium_model=self._premium_model,
            )
        )

    async def reset(self, message: IncomingMessage, command: Command, sink: ReplySink) -> None:
        """`/reset`: forget the conversation it is sent in, and only that one."""
        await self._state.memory.forget(message.key)
        await sink.write(replies.RESET_DONE)

    async def model_info(self, message: IncomingMessage, command: Command, sink: ReplySink) -> None:
        """`/model`: the models here, and the sender's premium spend and budget this month."""
        line = (
            f"`{self._premium_model}` ({self._names.premium}; use `/premium <question>`)"
            if self._premium_model is not None
            else "not configured on this bot"
        )
        lines = [self._names.fill(replies.MODEL_INFO, local_model=self._local_model, premium=line)]
        if self._premium_account is not None:
            lines += await self._premium_account.spend_lines(message, self._now())
        await sink.write("\n".join(lines))

    async def search(self, message: IncomingMessage, command: Command, sink: ReplySink) -> None:
        """`/search <words>`: the best-matching indexed documents, without asking a model."""
        words = self._admission.check_text(command.argument)
        knowledge = self._retriever.knowledge if self._retriever is not None else None
        await sink.write(await search_reply(knowledge, message.key, words))

    async def token(self, message: IncomingMessage, command: Command, sink: ReplySink) -> None:
        """`/token ...`: the sender's personal API tokens (in a direct message only)."""
        if self._tokens is None:
            await sink.write(replies.UNKNOWN_COMMAND.format(word=command.word))
            return
        key = message.key
        owner = Owner(key.platform, key.workspace, message.sender)
        await sink.write(
            await self._tokens.reply(owner, command.argument, is_direct=message.is_direct)
        )

    async def admin_link(self, message: IncomingMessage, command: Command, sink: ReplySink) -> None:
        """`/admin`: a one-time sign-in link to the analytics page, to an admin in a DM."""
        if self._admin is None:
            await sink.write(replies.ADMIN_NOT_SET_UP)
        else:
            await sink.write(await self._admin.reply_to(message.sender, direct=message.is_direct))
