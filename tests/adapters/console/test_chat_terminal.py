"""`chatbot chat` in a terminal: Ctrl-C ends it at once, log lines never land inside an
answer, piped questions all reach the usage ledger, and the bot's Markdown reads as text."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from adapters.console.chat import TerminalMarkdown
from bot.commands import help_text
from tests.fakes.ollama import FakeOllama
from tests.support.processes import CHATBOT, free_port


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LOG_LEVEL", "REDIS_URL")}
    return {
        **env,
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "DATABASE_URL": f"sqlite:///{tmp_path}/chat.db",
        # A Redis that is down: the shared test Redis on localhost stays untouched.
        "REDIS_URL": "redis://127.0.0.1:1/0",
        **extra,
    }


async def _start_chat(
    tmp_path: Path, ollama_url: str, *, unset: tuple[str, ...] = ()
) -> asyncio.subprocess.Process:
    """`chatbot chat` with stdin, stdout and stderr on pipes (``unset``: variables left out)."""
    env = _env(tmp_path, OLLAMA_BASE_URL=ollama_url)
    return await asyncio.create_subprocess_exec(
        CHATBOT,
        "chat",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in env.items() if k not in unset},
        cwd=tmp_path,
    )


async def test_ctrl_c_at_the_prompt_ends_the_chat_at_once(tmp_path: Path) -> None:
    async with FakeOllama() as ollama:
        proc = await _start_chat(tmp_path, ollama.url)  # stdin left open: it waits for a line
        assert proc.stdout is not None
        banner = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert b"Chatting with the bot" in banner
        async with asyncio.timeout(30):  # the blank line before the prompt: reading stdin next
            while (line := await proc.stdout.readline()) != b"\n":
                assert line, "the chat ended before its prompt"
        proc.send_signal(signal.SIGINT)
        try:
            _, err = await asyncio.wait_for(proc.communicate(), 15)
        finally:
            if proc.returncode is None:
                proc.kill()
        assert proc.returncode == 0
        assert b"Traceback" not in err and b"KeyboardInterrupt" not in err


async def test_piped_questions_all_reach_the_usage_ledger(tmp_path: Path) -> None:
    async with FakeOllama() as ollama:
        proc = await _start_chat(tmp_path, ollama.url)
        questions = b"one?\ntwo?\nthree?\n"
        out, err = await asyncio.wait_for(proc.communicate(questions), 60)
    assert proc.returncode == 0, err.decode()
    with sqlite3.connect(tmp_path / "chat.db") as db:
        (rows,) = db.execute("SELECT count(*) FROM requests").fetchone()
    assert rows == 3, out.decode()


async def test_without_database_url_chat_and_usage_share_one_ledger(tmp_path: Path) -> None:
    """Unset, DATABASE_URL means one SQLite file in the data folder: the tables `chat`
    creates at start are the ones its answers are written to, whatever the folder."""
    async with FakeOllama() as ollama:
        proc = await _start_chat(tmp_path, ollama.url, unset=("DATABASE_URL",))
        out, err = await asyncio.wait_for(proc.communicate(b"one?\n"), 60)
    assert proc.returncode == 0, err.decode()
    assert not (tmp_path / "chatbot.db").exists()  # nothing beside the working folder
    with sqlite3.connect(tmp_path / "data" / "chatbot" / "chatbot.db") as db:
        (rows,) = db.execute("SELECT count(*) FROM requests").fetchone()
    assert rows == 1, out.decode()


def _read_until(
    fd: int, marker: bytes, seen: bytes, timeout: float, *, until_eof: bool = False
) -> bytes:
    """Read the terminal until ``marker`` shows (or, ``until_eof``, until it closes)."""
    deadline = time.monotonic() + timeout
    while until_eof or marker not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {marker!r} in {seen!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_in_a_terminal_log_lines_go_to_a_file_not_into_answers(tmp_path: Path) -> None:
    """Ollama is down, so the pool and the core log warnings while the bot answers: with
    stdout and stderr on one terminal, none of them may show up there."""
    master, slave = pty.openpty()
    env = _env(tmp_path, OLLAMA_BASE_URL=f"http://127.0.0.1:{free_port()}")
    proc = subprocess.Popen(
        [CHATBOT, "chat"], stdin=slave, stdout=slave, stderr=slave, env=env, cwd=tmp_path
    )
    os.close(slave)
    try:
        # The line editor draws its prompt with cursor moves: "you>" is what is certain.
        seen = _read_until(master, b"you>", b"", 30)
        os.write(master, b"hello?\r")
        seen = _read_until(master, b"bot> ", seen, 30)
        answer_start = len(seen)
        seen = _read_until(master, b"you>", seen[answer_start:], 30)
        os.write(master, b"/quit\r")
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert b"not reachable" in seen  # the user was told, in the reply
    assert b"WARNING" not in seen and b"ERROR" not in seen
    log = (tmp_path / "data" / "chatbot" / "chat.log").read_text()
    assert "WARNING" in log


def test_terminal_markdown_bold_is_shown_as_text_and_code_is_left_alone() -> None:
    plain = TerminalMarkdown(ansi=False)
    chunks = ["**Com", "mands*", "* and `**kwargs` stay", "\n```\nx = 2 ** 3\n```\n"]
    assert "".join(plain.feed(c) for c in chunks) + plain.end() == (
        "Commands and `**kwargs` stay\n```\nx = 2 ** 3\n```\n"
    )
    bold = TerminalMarkdown(ansi=True)
    assert bold.feed("**hi**") == "\033[1mhi\033[0m"


async def test_help_in_the_terminal_has_no_raw_markdown(tmp_path: Path) -> None:
    async with FakeOllama() as ollama:
        proc = await _start_chat(tmp_path, ollama.url)
        out, err = await asyncio.wait_for(proc.communicate(b"/help\n"), 60)
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    reply = text.split("bot> ", 1)[1]
    assert "Commands" in reply and "**" not in reply
    # The terminal's wording: how to end the chat, no Slack mentions, and no /premium on a
    # bot without a premium model.
    assert "/quit" in reply and "/exit" in reply
    assert "mention" not in reply and "/premium" not in reply


def test_help_text_fits_the_place_and_what_is_configured() -> None:
    terminal = help_text(terminal=True, local_model="codellama:7b", premium_model=None)
    assert "/quit" in terminal and "/exit" in terminal
    assert "/premium" not in terminal and "mention" not in terminal
    chat = help_text(terminal=False, local_model="codellama:7b", premium_model="gpt-4.1")
    assert "/premium" in chat and "gpt-4.1" in chat and "/quit" not in chat
    assert "mention me" in chat


class Terminal:
    """`chatbot chat` on a pseudo-terminal, as a person types and pastes."""

    PASTE_START, PASTE_END = b"\x1b[200~", b"\x1b[201~"

    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [CHATBOT, "chat"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=_env(tmp_path, **env),
            cwd=tmp_path,
        )
        os.close(slave)
        self.seen = b""

    def wait_for(self, marker: bytes, timeout: float = 30) -> bytes:
        """What the terminal showed up to ``marker`` (then only what comes after counts)."""
        self.seen = _read_until(self.master, marker, self.seen, timeout)
        shown, _, self.seen = self.seen.partition(marker)
        return shown

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def paste(self, text: str) -> None:
        self.type(self.PASTE_START + text.encode() + self.PASTE_END)

    def close(self) -> int:
        """Wait for the chat to end, reading what it showed until then."""
        try:
            self.seen = _read_until(self.master, b"\0never\0", self.seen, 30, until_eof=True)
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            os.close(self.master)


def test_a_terminal_takes_a_paste_as_one_question_and_edits_with_arrow_keys(
    tmp_path: Path,
) -> None:
    async def scenario() -> tuple[list[str], int, bytes]:
        async with FakeOllama() as ollama:
            ollama.reply = "**Done**: see `x`."
            term = Terminal(tmp_path, OLLAMA_BASE_URL=ollama.url)
            loop = asyncio.get_running_loop()
            try:
                # The editor redraws its prompt as keys come: after Enter, wait for the
                # answer ("bot> ") and then for the next prompt.
                await loop.run_in_executor(None, term.wait_for, b"you>")
                term.paste("why does this fail?\nTraceback (most recent call last):\n  boom")
                term.type(b"\r")
                await loop.run_in_executor(None, term.wait_for, b"bot> ")
                await loop.run_in_executor(None, term.wait_for, b"you>")
                term.type(b"abc\x1b[D\x1b[D\x1b[DX\r")  # three times left, then X
                await loop.run_in_executor(None, term.wait_for, b"bot> ")
                await loop.run_in_executor(None, term.wait_for, b"you>")
                term.paste("y" * 100_000)
                term.type(b"\r")
                await loop.run_in_executor(None, term.wait_for, b"bot> ")
                refused = await loop.run_in_executor(None, term.wait_for, b"you>")
                term.type(b"\x04")  # Ctrl-D
                code = await loop.run_in_executor(None, term.close)
            finally:
                if term.proc.poll() is None:
                    term.proc.kill()
            questions = [str(r["messages"][-1]["content"]) for r in ollama.requests]
            return questions, code, refused

    questions, code, refused = asyncio.run(scenario())
    assert questions == [
        "why does this fail?\nTraceback (most recent call last):\n  boom",
        "Xabc",
    ]
    assert b"100,000 characters" in refused  # the bot's limit said, not a silent cut
    assert code == 0


def test_a_terminal_answer_is_rendered_markdown_and_ctrl_d_ends_the_line(
    tmp_path: Path,
) -> None:
    async def scenario() -> tuple[bytes, bytes, int]:
        async with FakeOllama() as ollama:
            ollama.reply = "Use **bold** here."
            term = Terminal(tmp_path, OLLAMA_BASE_URL=ollama.url)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, term.wait_for, b"you>")
            term.type(b"hi\r")
            await loop.run_in_executor(None, term.wait_for, b"bot> ")
            answer = await loop.run_in_executor(None, term.wait_for, b"you>")
            term.type(b"\x04")
            code = await loop.run_in_executor(None, term.close)
            return answer, term.seen, code

    answer, after, code = asyncio.run(scenario())
    assert b"**bold**" not in answer and b"bold" in answer  # rendered, not raw Markdown
    assert after.endswith(b"\n")  # the shell's prompt starts on a line of its own
    assert code == 0


async def test_a_new_session_says_which_conversation_continues(
    tmp_path: Path, redis_url: str
) -> None:
    async with FakeOllama() as ollama:
        for _ in range(2):
            proc = await asyncio.create_subprocess_exec(
                CHATBOT,
                "chat",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=_env(tmp_path, OLLAMA_BASE_URL=ollama.url, REDIS_URL=redis_url),
                cwd=tmp_path,
            )
            out, _ = await asyncio.wait_for(proc.communicate(b"hello\n"), 60)
        assert proc.returncode == 0
    assert b"continuing your last conversation: 2 messages remembered; /reset starts over" in out
