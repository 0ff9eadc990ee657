"""`chatbot ask` and `chatbot tokens` as a developer runs them: subprocesses against
`chatbot serve` (an ingress process and an answer worker, Redis) with the fake Slack and
Ollama. Every failure is one line and an exit code, never a traceback."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.ollama import FakeOllama
from tests.fakes.slack import FakeSlack
from tests.support.harness import BOT_TOKEN, SIGNING_SECRET
from tests.support.processes import CHATBOT, free_port, start_serve, stop


async def run(
    *args: str, env: dict[str, str], cwd: Path, stdin: str | None = None
) -> tuple[int, str, str]:
    """Run `chatbot ARGS`; its exit code, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        CHATBOT,
        *args,
        env={**os.environ, "NO_COLOR": "", **env},
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(
        proc.communicate(stdin.encode() if stdin is not None else None), timeout=60
    )
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def server_env(
    tmp_path: Path, redis_url: str, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake_slack.api_url,
        "OLLAMA_BASE_URL": fake_ollama.url,
        "REDIS_URL": redis_url,
        "DATABASE_URL": f"sqlite:///{tmp_path}/ask.db",
        # Per day, not per minute: a clock minute may turn during the test.
        "RATE_LIMIT_PER_MINUTE": "0",
        "RATE_LIMIT_PER_DAY": "3",
    }


@pytest.fixture
async def bot(tmp_path: Path, server_env: dict[str, str]) -> AsyncIterator[str]:
    url, proc = await start_serve(server_env, tmp_path, workers=2, output=False)
    try:
        yield url
    finally:
        await stop(proc)


async def make_token(server_env: dict[str, str], cwd: Path) -> str:
    code, out, err = await run(
        "tokens", "create", "--user", "U123ABC456", "--workspace", "T123ABC456",
        env=server_env, cwd=cwd,
    )  # fmt: skip
    assert code == 0, err
    assert "shown only this once" in err
    return out.strip()


async def test_ask_streams_the_answer_and_piped_input_comes_first(
    bot: str, server_env: dict[str, str], tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    token = await make_token(server_env, tmp_path)
    fake_ollama.reply = "Looks good, but **rename** `x`."
    env = {"CHATBOT_URL": bot, "CHATBOT_TOKEN": token}
    code, out, err = await run(
        "ask", "review", "this", env=env, cwd=tmp_path, stdin="-x = 1\n+x = 2\n"
    )
    assert (code, err) == (0, "")
    assert out == "Looks good, but **rename** `x`.\n"  # piped: plain text, Markdown as is
    question = fake_ollama.requests[-1]["messages"][-1]
    assert question == {"role": "user", "content": "-x = 1\n+x = 2\n\nreview this"}
    code, out, _ = await run("ask", "--url", bot, "--token", token, "hi", env={}, cwd=tmp_path)
    assert code == 0 and out.startswith("Looks good")
    # The ledger has both questions under their owner (written within 0.2 s of the answer).
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        code, report, err = await run("usage", "--by", "user", env=server_env, cwd=tmp_path)
        counts = [line.split()[1] for line in report.splitlines() if line.startswith("slack:U123")]
        if counts == ["2"] or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.2)
    assert code == 0, err
    assert counts == ["2"], report


async def test_each_failure_is_one_line_and_exit_1(
    bot: str, server_env: dict[str, str], tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    token = await make_token(server_env, tmp_path)
    closed = f"http://127.0.0.1:{free_port()}"
    cases = {
        "unreachable": ({"CHATBOT_URL": closed, "CHATBOT_TOKEN": token}, ["hi"], "cannot reach"),
        "bad token": ({"CHATBOT_URL": bot, "CHATBOT_TOKEN": "cbt_" + "n" * 43}, ["hi"], "/token"),
        "no premium": (
            {"CHATBOT_URL": bot, "CHATBOT_TOKEN": token},
            ["--premium", "hi"],
            "premium",
        ),
        "too long": ({"CHATBOT_URL": bot, "CHATBOT_TOKEN": token}, ["x" * 9000], "8,000"),
    }
    for name, (env, args, expected) in cases.items():
        code, out, err = await run("ask", *args, env=env, cwd=tmp_path)
        assert code == 1, (name, err)
        assert out == "" and err.count("\n") == 1 and expected in err, (name, err)
        assert "Traceback" not in err
    env = {"CHATBOT_URL": bot, "CHATBOT_TOKEN": token}
    codes = [(await run("ask", "hi", env=env, cwd=tmp_path))[0] for _ in range(3)]
    assert codes == [0, 0, 0]
    code, _, err = await run("ask", "hi", env=env, cwd=tmp_path)
    assert code == 1 and "rate limited: try again in" in err and err.count("\n") == 1


async def test_wrong_usage_exits_2(tmp_path: Path) -> None:
    code, _, err = await run("ask", env={"CHATBOT_URL": "", "CHATBOT_TOKEN": ""}, cwd=tmp_path)
    assert code == 2 and "give a question" in err
    code, _, err = await run(
        "ask", "hi", env={"CHATBOT_URL": "", "CHATBOT_TOKEN": ""}, cwd=tmp_path
    )
    assert code == 2 and "CHATBOT_URL" in err


async def test_tokens_list_and_revoke(bot: str, server_env: dict[str, str], tmp_path: Path) -> None:
    token = await make_token(server_env, tmp_path)
    code, out, _ = await run("tokens", "list", "--user", "U123ABC456", env=server_env, cwd=tmp_path)
    assert code == 0 and "token-1" in out and token not in out
    token_id = out.split("(id ")[1].split(")")[0]
    code, out, _ = await run("tokens", "revoke", token_id, env=server_env, cwd=tmp_path)
    assert code == 0
    code, _, err = await run(
        "ask", "hi", env={"CHATBOT_URL": bot, "CHATBOT_TOKEN": token}, cwd=tmp_path
    )
    assert code == 1 and "refused the token" in err


def _ask_on_a_terminal(env: dict[str, str], cwd: Path) -> bytes:
    """`chatbot ask hi` with stdout on a pseudo-terminal: what the terminal showed."""
    import pty
    import subprocess

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [CHATBOT, "ask", "hi"],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env={**os.environ, **env},
        cwd=cwd,
    )
    os.close(slave)
    shown = b""
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            shown += chunk
        assert proc.wait(timeout=60) == 0, shown
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return shown


async def test_on_a_terminal_markdown_is_rendered_unless_no_color(
    bot: str, server_env: dict[str, str], tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    token = await make_token(server_env, tmp_path)
    fake_ollama.reply = "Use **bold** words."
    env = {"CHATBOT_URL": bot, "CHATBOT_TOKEN": token, "TERM": "xterm"}
    env_plain = {**env, "NO_COLOR": "1"}
    rendered = await asyncio.to_thread(_ask_on_a_terminal, {**env, "NO_COLOR": ""}, tmp_path)
    plain = await asyncio.to_thread(_ask_on_a_terminal, env_plain, tmp_path)
    assert b"bold" in rendered and b"**bold**" not in rendered
    assert b"Use **bold** words." in plain


async def test_ctrl_c_stops_the_answer_and_the_request(
    bot: str, server_env: dict[str, str], tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    import signal

    token = await make_token(server_env, tmp_path)
    fake_ollama.reply = "word " * 400
    fake_ollama.chunk_size = 5
    fake_ollama.token_delay = 0.05  # twenty seconds if nobody stopped it
    proc = await asyncio.create_subprocess_exec(
        CHATBOT, "ask", "go",
        env={**os.environ, "CHATBOT_URL": bot, "CHATBOT_TOKEN": token},
        cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    first = await asyncio.wait_for(proc.stdout.read(10), 30)  # the answer is streaming
    assert first.startswith(b"word")
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 130
    assert err.decode().strip() == "chatbot ask: stopped"  # one line, no traceback
    await asyncio.wait_for(fake_ollama.client_disconnected.wait(), 10)  # the bot stopped too


async def test_a_client_gone_before_a_whole_answer_stops_its_generation(
    bot: str, server_env: dict[str, str], tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    """Through `chatbot serve` as deployed (aiohttp's own test server always cancels the
    handler of a client that hangs up; a deployed server does so only when told)."""
    token = await make_token(server_env, tmp_path)
    fake_ollama.reply = "word " * 400
    fake_ollama.chunk_size = 5
    fake_ollama.token_delay = 0.02  # 400 chunks: eight seconds if nobody stopped it
    body = {"model": "codellama:7b", "messages": [{"role": "user", "content": "go"}]}
    async with aiohttp.ClientSession() as http:
        asking = asyncio.create_task(
            http.post(
                f"{bot}/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
        )
        await asyncio.wait_for(fake_ollama.chat_started.wait(), 10)
        asking.cancel()  # the answer is being generated: hang up before it is whole
        await asyncio.gather(asking, return_exceptions=True)
    await asyncio.wait_for(fake_ollama.client_disconnected.wait(), 5)
