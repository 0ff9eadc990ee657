"""Load benchmark: N concurrent Slack conversations against one `chatbot serve` process.

The bot runs as a real subprocess (so its CPU time and memory are its own), wired to a fake
Slack Web API and a fake Ollama in this process, and to the local Redis. Each conversation is
a signed `app_mention` POST; "first visible text" is when the fake Slack receives the first
message call for that thread. Run: `make bench` (or `python -m bench.load --help`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import redis

from tests.fakes.ollama import FakeOllama
from tests.fakes.slack import Call, FakeSlack
from tests.harness import BOT_TOKEN, SIGNING_SECRET, sign
from tests.processes import start_serve
from tests.slack_payloads import BOT_ID, BOT_USER, TEAM, mention

FIRST_TEXT = ("chat.startStream", "chat.postMessage")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass
class Result:
    concurrency: int
    answers: int
    wall: float
    ack_ms: list[float]
    added_ms: list[float]
    cpu_per_answer_ms: float
    slack_calls_per_answer: float

    def row(self) -> str:
        return (
            f"| {self.concurrency} | {self.answers} | {pct(self.added_ms, 50):.1f} | "
            f"{pct(self.added_ms, 99):.1f} | {pct(self.ack_ms, 50):.1f} | "
            f"{pct(self.ack_ms, 99):.1f} | {self.answers / self.wall:.0f} | "
            f"{self.cpu_per_answer_ms:.1f} | {self.slack_calls_per_answer:.1f} |"
        )


async def run_level(
    url: str,
    http: aiohttp.ClientSession,
    slack: FakeSlack,
    pid: int,
    concurrency: int,
    total: int,
    first_token_delay: float,
    batch: int,
) -> Result:
    slack.calls.clear()
    acks: list[float] = []
    sent_at: dict[str, float] = {}
    first_text: dict[str, float] = {}
    finished: dict[str, asyncio.Future[None]] = {}
    stream_thread: dict[str, str] = {}
    pending = list(range(total))

    def observe(call: Call) -> None:
        # Called by the fake Slack for every API call: note first text and completion.
        thread = call.args.get("thread_ts")
        if call.method in FIRST_TEXT and thread in sent_at and thread not in first_text:
            first_text[thread] = call.at
        if call.method == "chat.startStream" and call.response and call.response.get("ok"):
            stream_thread[str(call.response["ts"])] = thread
        if call.method == "chat.stopStream":  # the answer is complete
            future = finished.get(stream_thread.get(call.args.get("ts", ""), ""))
            if future is not None and not future.done():
                future.set_result(None)

    slack.on_call = observe
    loop = asyncio.get_running_loop()

    async def worker() -> None:
        while pending:
            i = pending.pop()
            ts = f"{1800000000 + batch * 100000 + i}.000100"
            channel = f"C{i % 50:04d}"
            body = json.dumps(mention(f"question {i}", ts, channel=channel, user=f"U{i:06d}"))
            headers = {"Content-Type": "application/json", **sign(body)}
            finished[ts] = loop.create_future()
            sent_at[ts] = time.monotonic()
            async with http.post(f"{url}/slack/events", data=body, headers=headers) as resp:
                await resp.read()
                acks.append((time.monotonic() - sent_at[ts]) * 1000)
            # Keep `concurrency` conversations open: wait until this answer is complete.
            await asyncio.wait_for(finished[ts], 120)

    cpu_before = cpu_seconds(pid)
    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.monotonic() - started
    cpu = cpu_seconds(pid) - cpu_before
    slack.on_call = None
    added = [(first_text[t] - sent_at[t] - first_token_delay) * 1000 for t in first_text]
    return Result(
        concurrency=concurrency,
        answers=len(first_text),
        wall=wall,
        ack_ms=acks,
        added_ms=added,
        cpu_per_answer_ms=cpu / total * 1000,
        slack_calls_per_answer=len(slack.calls) / total,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", default="1,20,100", help="concurrent conversations")
    parser.add_argument("--answers", type=int, default=200, help="answers per level")
    parser.add_argument("--first-token-delay", type=float, default=0.0)
    parser.add_argument("--token-delay", type=float, default=0.0)
    parser.add_argument("--reply-chars", type=int, default=120)
    parser.add_argument("--chunk-chars", type=int, default=6, help="answer characters per chunk")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/8")
    parser.add_argument(
        "--max-concurrency", default="1000", help="OLLAMA_MAX_CONCURRENCY of the bot"
    )
    parser.add_argument("--profile", help="write py-spy collapsed stacks of the bot here")
    args = parser.parse_args()

    redis.Redis.from_url(args.redis).flushdb()
    slack = FakeSlack(bot_token=BOT_TOKEN, team_id=TEAM, bot_user_id=BOT_USER, bot_id=BOT_ID)
    await slack.start()
    ollama = FakeOllama(["codellama:7b"])
    await ollama.start()
    ollama.reply = ("Use a list comprehension. " * 20)[: args.reply_chars]
    ollama.chunk_size = args.chunk_chars
    ollama.first_token_delay = args.first_token_delay
    ollama.token_delay = args.token_delay
    workdir = Path(tempfile.mkdtemp(prefix="chatbot-bench-"))
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "OLLAMA_BASE_URL": ollama.url,
        "OLLAMA_MAX_CONCURRENCY": args.max_concurrency,
        "REDIS_URL": args.redis,
        "DATABASE_URL": f"sqlite:///{workdir}/bench.db",
        "RATE_LIMIT_PER_MINUTE": "1000000",
        "RATE_LIMIT_PER_DAY": "1000000",
        "LOG_LEVEL": "WARNING",
    }
    url, proc = await start_serve(env, workdir, output=False)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        # Warm-up: auth.test, connection pools, first-call imports.
        await run_level(url, http, slack, proc.pid, 5, 20, args.first_token_delay, 0)
        profiler = None
        if args.profile:
            profiler = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "-r",
                "250",
                "-f",
                "raw",
                "-o",
                args.profile,
                "-p",
                str(proc.pid),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            await asyncio.sleep(1)
        results = []
        for batch, level in enumerate(int(x) for x in args.levels.split(",")):
            results.append(
                await run_level(
                    url,
                    http,
                    slack,
                    proc.pid,
                    level,
                    max(args.answers, level),
                    args.first_token_delay,
                    batch + 1,
                )
            )
        rss = peak_rss_mb(proc.pid)
        if profiler is not None:
            profiler.send_signal(2)
            await profiler.wait()
    proc.terminate()
    await proc.wait()
    await ollama.stop()
    await slack.stop()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; model: first token {args.first_token_delay * 1000:.0f} ms,"
        f" {args.token_delay * 1000:.0f} ms per chunk, {args.reply_chars} chars in chunks of "
        f"{args.chunk_chars}; OLLAMA_MAX_CONCURRENCY={args.max_concurrency}"
    )
    print(
        "| concurrent | answers | added p50 ms | added p99 ms | ack p50 ms | ack p99 ms | "
        "answers/s | bot CPU ms/answer | Slack calls/answer |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for result in results:
        print(result.row())
    print(f"peak RSS of the bot process: {rss:.0f} MB")


if __name__ == "__main__":
    asyncio.run(main())
