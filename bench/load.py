"""Load benchmark: N concurrent Slack conversations against one `chatbot serve` (with its
workers), and the start-up cost of `chatbot serve` and `chatbot chat`.

The bot runs as a real subprocess (its CPU time and memory are its own, summed over its
worker processes), wired to a fake Slack Web API and a fake Ollama in this process, and to
the local Redis. Each conversation is a signed `app_mention` POST from its own workspace, so
that Slack's per-workspace call slots (tests/adapters/slack/test_slack_budget.py covers
them) do not pace the bench. Figures: Slack ack; first text (POST to the first message call,
less the model's first-token delay); final text (the model's last token to chat.stopStream);
answers/s; bot CPU per answer; Slack calls and Redis commands per answer (scripts' own
commands included; the queue's polling too, which counts at one answer at a time). Run:
`make bench` (or `python -m bench.load --help`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import redis

from tests.fakes.ollama import FakeOllama
from tests.fakes.slack import Call, FakeSlack
from tests.support.harness import BOT_TOKEN, SIGNING_SECRET, sign
from tests.support.processes import CHATBOT, free_port, start_redis_server, start_serve
from tests.support.slack_payloads import BOT_ID, BOT_USER, TEAM, mention

FIRST_TEXT = ("chat.startStream", "chat.postMessage")
TICKS = os.sysconf("SC_CLK_TCK")


def group(pid: int) -> list[int]:
    """``pid`` and the worker processes it started."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *map(int, children)]


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime
    return total


def rss_mb(pid: int, field_name: str = "VmRSS:") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass
class Result:
    concurrency: int
    answers: int
    wall: float
    ack_ms: list[float]
    first_ms: list[float]
    final_ms: list[float]
    cpu_per_answer_ms: float
    slack_calls: Counter[str] = field(default_factory=Counter)
    redis_commands: float = 0.0

    def row(self) -> str:
        calls = sum(self.slack_calls.values()) / self.answers
        by_method = ", ".join(
            f"{m.removeprefix('chat.').removeprefix('assistant.threads.')} {n / self.answers:.1f}"
            for m, n in sorted(self.slack_calls.items())
        )
        return (
            f"| {self.concurrency} | {self.answers} | {pct(self.ack_ms, 50):.1f} | "
            f"{pct(self.ack_ms, 99):.1f} | {pct(self.first_ms, 50):.1f} | "
            f"{pct(self.first_ms, 99):.1f} | {pct(self.final_ms, 50):.0f} | "
            f"{pct(self.final_ms, 99):.0f} | {self.answers / self.wall:.0f} | "
            f"{self.cpu_per_answer_ms:.1f} | {calls:.1f} ({by_method}) | "
            f"{self.redis_commands:.1f} |"
        )


HEADER = (
    "| at once | answers | ack p50 ms | ack p99 ms | first text p50 ms | first text p99 ms | "
    "final text p50 ms | final text p99 ms | answers/s | bot CPU ms/answer | "
    "Slack calls/answer | Redis commands/answer |\n" + "|---" * 12 + "|"
)


async def run_level(
    url: str,
    http: aiohttp.ClientSession,
    slack: FakeSlack,
    pid: int,
    store: redis.Redis,
    concurrency: int,
    total: int,
    model_seconds: tuple[float, float],
    batch: int,
) -> Result:
    first_token, last_token = model_seconds
    slack.calls.clear()
    acks: list[float] = []
    sent_at: dict[str, float] = {}
    first_text: dict[str, float] = {}
    final_text: dict[str, float] = {}
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
            thread = stream_thread.get(call.args.get("ts", ""), "")
            future = finished.get(thread)
            if future is not None and not future.done():
                final_text[thread] = call.at
                future.set_result(None)

    slack.on_call = observe
    loop = asyncio.get_running_loop()

    async def worker() -> None:
        while pending:
            i = pending.pop()
            ts = f"{1800000000 + batch * 100000 + i}.000100"
            channel = f"C{i % 50:04d}"
            event = mention(f"question {i}", ts, channel=channel, user=f"U{i:06d}")
            event["team_id"] = event["event"]["team"] = f"T{batch:03d}{i:06d}"
            body = json.dumps(event)
            headers = {"Content-Type": "application/json", **sign(body)}
            finished[ts] = loop.create_future()
            sent_at[ts] = time.monotonic()
            async with http.post(f"{url}/slack/events", data=body, headers=headers) as resp:
                await resp.read()
                acks.append((time.monotonic() - sent_at[ts]) * 1000)
            # Keep `concurrency` conversations open: wait until this answer is complete.
            await asyncio.wait_for(finished[ts], 120)

    pids = group(pid)
    cpu_before = cpu_seconds(pids)
    commands_before = int(store.info("stats")["total_commands_processed"])
    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.monotonic() - started
    cpu = cpu_seconds(pids) - cpu_before
    commands = int(store.info("stats")["total_commands_processed"]) - commands_before
    slack.on_call = None
    return Result(
        concurrency=concurrency,
        answers=len(final_text),
        wall=wall,
        ack_ms=acks,
        first_ms=[(first_text[t] - sent_at[t] - first_token) * 1000 for t in first_text],
        final_ms=[(final_text[t] - sent_at[t] - last_token) * 1000 for t in final_text],
        cpu_per_answer_ms=cpu / total * 1000,
        slack_calls=Counter(c.method for c in slack.calls),
        redis_commands=commands / total,
    )


def chat_start_up(env: dict[str, str], workdir: Path) -> tuple[float, float]:
    """CPU seconds and peak RSS (MB) of `chatbot chat` started and ended with /quit."""
    proc = subprocess.Popen(
        [CHATBOT, "chat"],
        env={**os.environ, **env, "LOG_LEVEL": "WARNING"},
        cwd=workdir,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None
    proc.stdin.write(b"/quit\n")
    proc.stdin.close()
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", default="1,20,50", help="concurrent conversations")
    parser.add_argument("--answers", type=int, default=200, help="answers per level")
    parser.add_argument("--workers", default="1", help="`chatbot serve --workers`, or default")
    parser.add_argument("--first-token-delay", type=float, default=0.0)
    parser.add_argument("--token-delay", type=float, default=0.0)
    parser.add_argument("--reply-chars", type=int, default=120)
    parser.add_argument("--chunk-chars", type=int, default=6, help="answer characters per chunk")
    parser.add_argument(
        "--redis", help="Redis URL (default: a private redis-server, so its counts are the bot's)"
    )
    parser.add_argument(
        "--max-concurrency", default="1000", help="OLLAMA_MAX_CONCURRENCY of the bot"
    )
    parser.add_argument("--start-up", action="store_true", help="also measure `chatbot chat`")
    parser.add_argument(
        "--bot-source",
        help="run the bot from this source tree (absolute path; e.g. an older commit)",
    )
    parser.add_argument("--profile", help="write py-spy collapsed stacks of the bot here")
    args = parser.parse_args()

    server = None
    if args.redis is None:
        port = free_port()
        server = start_redis_server(port, Path(tempfile.mkdtemp(prefix="chatbot-bench-redis-")))
        args.redis = f"redis://127.0.0.1:{port}/0"
    store = redis.Redis.from_url(args.redis)
    store.flushdb()
    slack = FakeSlack(bot_token=BOT_TOKEN, team_id=TEAM, bot_user_id=BOT_USER, bot_id=BOT_ID)
    await slack.start()
    ollama = FakeOllama(["codellama:7b"])
    await ollama.start()
    ollama.reply = ("Use a list comprehension. " * 400)[: args.reply_chars]
    ollama.chunk_size = args.chunk_chars
    ollama.first_token_delay = args.first_token_delay
    ollama.token_delay = args.token_delay
    chunks = -(-args.reply_chars // args.chunk_chars)
    model_seconds = (args.first_token_delay, args.first_token_delay + chunks * args.token_delay)
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
    if args.bot_source:
        env["PYTHONPATH"] = args.bot_source  # an absolute path (the bot runs in a temp dir)
    if args.start_up:  # migrate first, so that start-up is start-up
        upgrade = [CHATBOT, "db", "upgrade"]
        await asyncio.to_thread(subprocess.run, upgrade, env={**os.environ, **env}, cwd=workdir)
    workers = None if args.workers == "default" else int(args.workers)
    url, proc = await start_serve(env, workdir, output=False, workers=workers)
    await asyncio.sleep(0.5)  # the first checks after start
    pids = group(proc.pid)
    start_cpu = cpu_seconds(pids)
    start_rss = [rss_mb(pid) for pid in pids]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        # Warm-up: auth.test, connection pools, first-call imports.
        await run_level(url, http, slack, proc.pid, store, 5, 20, model_seconds, 0)
        profiler = None
        if args.profile:
            profiler = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).with_name("py-spy")),
                "record", "-r", "250", "-f", "raw", "-o", args.profile, "--subprocesses",
                "-p", str(proc.pid),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            await asyncio.sleep(1)
        results = []
        for batch, level in enumerate(int(x) for x in args.levels.split(",")):
            results.append(
                await run_level(
                    url,
                    http,
                    slack,
                    proc.pid,
                    store,
                    level,
                    max(args.answers, level),
                    model_seconds,
                    batch + 1,
                )
            )
        peak = [rss_mb(pid, "VmHWM:") for pid in group(proc.pid)]
        if profiler is not None:
            profiler.send_signal(2)
            await profiler.wait()
    proc.terminate()
    await proc.wait()
    chat = await asyncio.to_thread(chat_start_up, env, workdir) if args.start_up else None
    await ollama.stop()
    await slack.stop()
    if server is not None:
        server.terminate()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; `chatbot serve --workers {args.workers}` "
        f"({len(pids)} process{'es' if len(pids) > 1 else ''}); model: first token "
        f"{args.first_token_delay * 1000:.0f} ms, {args.token_delay * 1000:.0f} ms per chunk, "
        f"{args.reply_chars} chars in chunks of {args.chunk_chars}; "
        f"OLLAMA_MAX_CONCURRENCY={args.max_concurrency}"
    )
    print(HEADER)
    for result in results:
        print(result.row())
    print(
        f"start-up of `chatbot serve`: {start_cpu:.2f} CPU s, RSS "
        f"{' + '.join(f'{r:.0f}' for r in start_rss)} MB; peak RSS under load "
        f"{' + '.join(f'{r:.0f}' for r in peak)} MB"
    )
    if chat is not None:
        print(
            f"start-up of `chatbot chat` (to /quit): {chat[0]:.2f} CPU s, peak RSS {chat[1]:.0f} MB"
        )


if __name__ == "__main__":
    asyncio.run(main())
