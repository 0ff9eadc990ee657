"""`chatbot chat`: the same core in a terminal.

stdout carries only the conversation: log lines go to stderr, or to a file while stderr is
the same terminal (`adapters.cli`). On a terminal, questions are read with prompt_toolkit's
line editor (history, editing, arrow keys; a paste of many lines, or of 100 KB, is one
question: the bot's own limit applies, not the terminal's line buffer) and answers are
rendered as Markdown by rich. Piped, lines are read by a daemon thread (each line one
question) and answers are plain text. Ctrl-C at the prompt ends the chat at once.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

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


class RenderedSink(ConsoleSink):
    """On a terminal: the answer rendered as Markdown (rich) while it streams."""

    def __init__(self, out: TextIO) -> None:
        super().__init__(out)
        from rich.console import Console

        self._console = Console(file=out, highlight=False)
        self._text = ""
        self._live: Any = None

    def _show(self) -> None:
        from rich.live import Live
        from rich.markdown import Markdown

        if self._live is None:
            self._live = Live(console=self._console, refresh_per_second=10, transient=False)
            self._live.start()
        self._live.update(Markdown(self._text))

    async def status(self, text: str) -> None:
        """A passing status, shown in place until the answer's text comes."""
        if not self._text:
            from rich.text import Text

            if self._live is None:
                self._show()
            self._live.update(Text(f"({text})", style="dim"))

    async def write(self, text: str) -> None:
        """Add to the answer and show it rendered."""
        self._text += text
        self._show()

    async def cite(self, citations: Sequence[Citation], *, searched: bool, answer_id: str) -> None:
        """The sources as a list under the answer, their links shown."""
        if citations:
            label = "Searched" if searched else "Sources"
            lines = [
                f"{c.number}. {c.title} <{c.url}>" if c.url else f"{c.number}. {c.title}"
                for c in citations
            ]
            self._text += f"\n\n**{label}:**\n\n" + "\n".join(lines)
            self._show()

    async def close(self) -> None:
        """Stop rendering; a blank line before the next prompt."""
        if self._live is not None:
            self._live.stop()
        self._out.write("\n")
        self._out.flush()


class TerminalReader:
    """Questions typed at a terminal, through prompt_toolkit's line editor."""

    def __init__(self, history: Path | None) -> None:
        # No cursor-position requests: a terminal (or a test's pty) that does not answer
        # them would get a warning printed into the conversation.
        os.environ.setdefault("PROMPT_TOOLKIT_NO_CPR", "1")
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory

        store = FileHistory(str(history)) if history is not None else InMemoryHistory()
        self._session: Any = PromptSession(history=store)

    async def next(self) -> str | None:
        """The next question (a paste of many lines is one); None at Ctrl-D."""
        try:
            text: str = await self._session.prompt_async("you> ")
        except EOFError:
            return None
        return text


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
    history: Path | None = None,
) -> None:
    """Read questions until EOF (Ctrl-D), `/quit` or `/exit`, answering each. ``history``:
    the file of what was typed at a terminal (arrow up recalls it)."""
    user = getpass.getuser()
    key = ConversationKey(PLATFORM, "local", user, "terminal")
    terminal = stdin.isatty() and stdout.isatty()
    stdout.write(
        "Chatting with the bot. /help lists commands, /reset forgets, /quit or Ctrl-D ends.\n"
    )
    for note in notes:
        stdout.write(f"({note})\n")
    remembered = await assistant.remembered(key)
    if remembered:
        stdout.write(
            f"(continuing your last conversation: {remembered} messages remembered; "
            "/reset starts over)\n"
        )
    stdout.write("\n")
    stdout.flush()
    reader = TerminalReader(history) if terminal else None
    lines = _read_lines(stdin) if reader is None else None
    while True:
        if reader is not None:
            question = await reader.next()
            if question is None:  # Ctrl-D: leave the shell's prompt on a line of its own
                stdout.write("\n")
                stdout.flush()
                break
        else:
            assert lines is not None
            question = await lines.get()
            if not question:
                break
        text = question.strip()
        if not text:
            continue
        if text.lower() in QUIT:
            break
        stdout.write("bot> \n" if terminal else "bot> ")
        stdout.flush()
        message = IncomingMessage(key, uuid.uuid4().hex, user, text, is_direct=True)
        sink = RenderedSink(stdout) if terminal else ConsoleSink(stdout)
        await assistant.handle(message, sink)
