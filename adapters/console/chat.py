"""`chatbot chat`: the same core in a terminal.

stdout carries only the conversation: log lines go to stderr, or to a file while stderr is
the same terminal (`adapters.cli`). Lines are read by a daemon thread, so Ctrl-C at the
prompt ends the chat at once instead of waiting for Enter.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
import threading
import uuid
from collections.abc import Sequence
from typing import TextIO

from bot.assistant import Assistant
from bot.conversation import Citation, ConversationKey, IncomingMessage
from bot.errors import UserFacingError

PLATFORM = "console"
QUIT = ("/quit", "/exit")
_BOLD, _PLAIN = "\033[1m", "\033[0m"


class TerminalMarkdown:
    """Turns the `**bold**` of streamed Markdown into terminal bold (or nothing when the
    output is not a terminal), leaving code (between backticks) exactly as written."""

    def __init__(self, *, ansi: bool) -> None:
        self._ansi = ansi
        self._in_code = False
        self._bold = False
        self._held = ""  # a `*` at the end of a chunk: the next chunk says what it is

    def feed(self, text: str) -> str:
        """The terminal form of the next piece of the stream."""
        text, self._held = self._held + text, ""
        out: list[str] = []
        i = 0
        while i < len(text):
            char = text[i]
            if char == "`":
                self._in_code = not self._in_code
            elif char == "*" and not self._in_code:
                if i + 1 == len(text):
                    self._held = "*"
                    break
                if text[i + 1] == "*":
                    self._bold = not self._bold
                    if self._ansi:
                        out.append(_BOLD if self._bold else _PLAIN)
                    i += 2
                    continue
            out.append(char)
            i += 1
        return "".join(out)

    def end(self) -> str:
        """What is left at the end of a reply (a held `*`, closing an open bold)."""
        rest, self._held = self._held, ""
        if self._bold and self._ansi:
            rest += _PLAIN
        self._bold = self._in_code = False
        return rest


class ConsoleSink:
    """Prints the reply as it streams."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._markdown = TerminalMarkdown(ansi=out.isatty())

    async def status(self, text: str) -> None:
        """Print the status on its own line."""
        self._out.write(f"({text})\n")
        self._out.flush()

    async def write(self, text: str) -> None:
        """Print text at once."""
        self._out.write(self._markdown.feed(text))
        self._out.flush()

    async def fail(self, error: UserFacingError) -> None:
        """No answer: the reason is shown like any other text."""
        await self.write(error.text)

    async def cite(self, citations: Sequence[Citation], *, searched: bool, answer_id: str) -> None:
        """Print the sources as a numbered list under the answer (no feedback here)."""
        if citations:
            lines = [f"  [{c.number}] {c.title} <{c.url}>" for c in citations]
            label = "Searched" if searched else "Sources"
            self._out.write(f"\n\n{label}:\n" + "\n".join(lines))
            self._out.flush()

    async def close(self) -> None:
        """End the reply with a blank line."""
        self._out.write(self._markdown.end() + "\n\n")
        self._out.flush()


def _read_lines(stdin: TextIO) -> asyncio.Queue[str]:
    """Lines of ``stdin`` ("" at the end), read by a daemon thread that never holds up exit."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def pump() -> None:
        while True:
            try:
                line = stdin.readline()
            except (OSError, ValueError):  # closed underneath us
                line = ""
            try:
                loop.call_soon_threadsafe(lines.put_nowait, line)
            except RuntimeError:  # the loop is gone: the chat ended
                return
            if not line:
                return

    threading.Thread(target=pump, name="chat-stdin", daemon=True).start()
    return lines


async def run_chat(
    assistant: Assistant,
    *,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
    notes: Sequence[str] = (),
) -> None:
    """Read questions line by line until EOF (Ctrl-D), `/quit` or `/exit`, answering each."""
    user = getpass.getuser()
    key = ConversationKey(PLATFORM, "local", user, "terminal")
    interactive = stdin.isatty()
    stdout.write(
        "Chatting with the bot. /help lists commands, /reset forgets, /quit or Ctrl-D ends.\n"
    )
    for note in notes:
        stdout.write(f"({note})\n")
    stdout.write("\n")
    lines = _read_lines(stdin)
    while True:
        if interactive:
            stdout.write("you> ")
            stdout.flush()
        line = await lines.get()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text.lower() in QUIT:
            break
        stdout.write("bot> ")
        message = IncomingMessage(key, uuid.uuid4().hex, user, text, is_direct=True)
        await assistant.handle(message, ConsoleSink(stdout))
