"""`chatbot chat`: the same core in a terminal."""

from __future__ import annotations

import asyncio
import getpass
import sys
import uuid
from collections.abc import Sequence
from typing import TextIO

from bot.assistant import Assistant
from bot.conversation import Citation, ConversationKey, IncomingMessage

PLATFORM = "console"


class ConsoleSink:
    """Prints the reply as it streams."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    async def status(self, text: str) -> None:
        """Print the status on its own line."""
        self._out.write(f"({text})\n")
        self._out.flush()

    async def write(self, text: str) -> None:
        """Print text at once."""
        self._out.write(text)
        self._out.flush()

    async def cite(self, citations: Sequence[Citation], *, searched: bool) -> None:
        """Print the sources as a numbered list under the answer."""
        if citations:
            lines = [f"  [{c.number}] {c.title} <{c.url}>" for c in citations]
            label = "Searched" if searched else "Sources"
            self._out.write(f"\n\n{label}:\n" + "\n".join(lines))
            self._out.flush()

    async def close(self) -> None:
        """End the reply with a blank line."""
        self._out.write("\n\n")
        self._out.flush()


async def run_chat(
    assistant: Assistant, *, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout
) -> None:
    """Read questions line by line until EOF (Ctrl-D) or `/quit`, answering each."""
    user = getpass.getuser()
    key = ConversationKey(PLATFORM, "local", user, "terminal")
    interactive = stdin.isatty()
    stdout.write("Chatting with the bot. /help lists commands, /reset forgets, Ctrl-D quits.\n\n")
    while True:
        if interactive:
            stdout.write("you> ")
            stdout.flush()
        # Reading a terminal blocks; a thread keeps the event loop free.
        line = await asyncio.to_thread(stdin.readline)
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            break
        stdout.write("bot> ")
        message = IncomingMessage(key, uuid.uuid4().hex, user, text, is_direct=True)
        await assistant.handle(message, ConsoleSink(stdout))
