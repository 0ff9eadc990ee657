"""The team API beside the Slack path, one request at a time, with an instant fake model:
time to the first content chunk (the API) and to the first text call (Slack), and the bot's
CPU per streamed answer, on one `chatbot serve` (one process, Redis).

Run: `python -m bench.api [--answers 200]` (part of `make bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from pathlib import Path

import aiohttp
import redis

from bench.load import cpu_seconds, group, pct, run_level
from tests.fakes.ollama import FakeOllama
from tests.fakes.slack import FakeSlack
from tests.support.harness import BOT_TOKEN, SIGNING_SECRET
from tests.support.processes import CHATBOT, free_port, start_redis_server, start_serve
from tests.support.slack_payloads import BOT_ID, BOT_USER, TEAM


async def api_level(
    url: str, http: aiohttp.ClientSession, token: str, pid: int, total: int
) -> tuple[list[float], list[float], float]:
    """``total`` streamed answers one after another: first-chunk and whole times (ms), and
    the bot's CPU ms per answer."""
    first: list[float] = []
    whole: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    pids = group(pid)
    before = cpu_seconds(pids)
    for i in range(total):
        body = {
            "model": "codellama:7b",
            "messages": [{"role": "user", "content": f"question {i}"}],
            "stream": True,
        }
        sent = time.monotonic()
        got_first = False
        async with http.post(f"{url}/v1/chat/completions", json=body, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            async for line in resp.content:
                if not got_first and line.startswith(b"data: {") and b'"content":"' in line:
                    if b'"content":""' not in line:
                        first.append((time.monotonic() - sent) * 1000)
                        got_first = True
        whole.append((time.monotonic() - sent) * 1000)
    cpu = cpu_seconds(pids) - before
    return first, whole, cpu / total * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--answers", type=int, default=200)
    parser.add_argument("--reply-chars", type=int, default=120)
    parser.add_argument("--chunk-chars", type=int, default=6)
    args = parser.parse_args()

    port = free_port()
    server = start_redis_server(port, Path(tempfile.mkdtemp(prefix="chatbot-bench-redis-")))
    redis_url = f"redis://127.0.0.1:{port}/0"
    store = redis.Redis.from_url(redis_url)
    slack = FakeSlack(bot_token=BOT_TOKEN, team_id=TEAM, bot_user_id=BOT_USER, bot_id=BOT_ID)
    await slack.start()
    ollama = FakeOllama(["codellama:7b"])
    await ollama.start()
    ollama.reply = ("Use a list comprehension. " * 400)[: args.reply_chars]
    ollama.chunk_size = args.chunk_chars
    workdir = Path(tempfile.mkdtemp(prefix="chatbot-bench-api-"))
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "OLLAMA_BASE_URL": ollama.url,
        "REDIS_URL": redis_url,
        "DATABASE_URL": f"sqlite:///{workdir}/bench.db",
        "RATE_LIMIT_PER_MINUTE": "0",
        "RATE_LIMIT_PER_DAY": "0",
        "LOG_LEVEL": "WARNING",
    }
    url, proc = await start_serve(env, workdir, output=False, workers=1)
    made = await asyncio.create_subprocess_exec(
        CHATBOT, "tokens", "create", "--user", "U0BENCH", "--workspace", TEAM,
        env={**os.environ, **env}, cwd=workdir,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    token = (await made.communicate())[0].decode().strip()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        await api_level(url, http, token, proc.pid, 20)  # warm-up
        await run_level(url, http, slack, proc.pid, store, 1, 20, (0.0, 0.0), 0)
        first, whole, api_cpu = await api_level(url, http, token, proc.pid, args.answers)
        slack_result = await run_level(
            url, http, slack, proc.pid, store, 1, args.answers, (0.0, 0.0), 1
        )
    proc.terminate()
    await proc.wait()
    await ollama.stop()
    await slack.stop()
    server.terminate()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; `chatbot serve --workers 1`, instant model, "
        f"{args.reply_chars} chars in chunks of {args.chunk_chars}, one request at a time"
    )
    print(
        "| door | answers | first text p50 ms | first text p99 ms | whole p50 ms "
        "| bot CPU ms/answer |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| team API (SSE) | {len(whole)} | {pct(first, 50):.1f} | {pct(first, 99):.1f} | "
        f"{pct(whole, 50):.1f} | {api_cpu:.1f} |"
    )
    print(
        f"| Slack (mention) | {slack_result.answers} | {pct(slack_result.first_ms, 50):.1f} | "
        f"{pct(slack_result.first_ms, 99):.1f} | {pct(slack_result.final_ms, 50):.1f} | "
        f"{slack_result.cpu_per_answer_ms:.1f} |"
    )
    print(
        "(API: from the POST to the first content chunk; Slack: from the event's POST to the "
        "first chat.startStream/postMessage, and to chat.stopStream)"
    )


if __name__ == "__main__":
    asyncio.run(main())
