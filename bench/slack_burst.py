"""Issue 24's burst, measured from outside: 30 questions at once in one Slack channel, the
bot (in this process, on a private redis-server) against a fake Slack that enforces Slack's
published tiers per method and per channel (tests/fakes/slack_tiers.py) and a fake Ollama.
Prints when the last answer became whole after the model's last token, the calls by
method and the 429s. Target: every answer whole within 15 s of the model's last token.
Run: `.venv/bin/python -m bench.slack_burst`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

from tests.fakes.ollama import FakeOllama
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_tiers import SlackTiers
from tests.support.harness import (
    BOT_TOKEN,
    running_bot,
    sign,
    slack_settings,
)
from tests.support.processes import free_port, start_redis_server
from tests.support.slack_payloads import BOT_ID, BOT_USER, CHANNEL, TEAM, mention

WORDS = " ".join(f"w{i}" for i in range(150))


async def burst(answers: int, redis_url: str, database_url: str) -> str:
    slack = FakeSlack(bot_token=BOT_TOKEN, team_id=TEAM, bot_user_id=BOT_USER, bot_id=BOT_ID)
    await slack.start()
    slack.tiers = SlackTiers()
    ollama = FakeOllama(["codellama:7b"])
    await ollama.start()
    ollama.reply, ollama.chunk_size, ollama.token_delay = WORDS, 8, 0.02
    settings = slack_settings(
        slack,
        ollama,
        redis_url,
        database_url,
        ollama_max_concurrency=50,
        rate_limit_per_minute=1000,
        rate_limit_per_day=100000,
    )
    try:
        async with running_bot(settings, slack, ollama) as bot:
            threads = [f"1600000009.{i:06d}" for i in range(answers)]

            async def ask(i: int, ts: str) -> None:
                raw = json.dumps(mention(f"q{i}", ts, user=f"U{i:04d}"))
                headers = {"Content-Type": "application/json", **sign(raw)}
                async with bot.http.post(f"{bot.url}/slack/events", data=raw, headers=headers):
                    pass

            await asyncio.gather(*(ask(i, ts) for i, ts in enumerate(threads)))
            whole: dict[str, float] = {}
            deadline = time.monotonic() + 120
            while len(whole) < len(threads) and time.monotonic() < deadline:
                for ts in threads:
                    text = slack.thread_text(CHANNEL, ts)
                    streaming = any(m.streaming for m in slack.messages(CHANNEL, ts))
                    if ts not in whole and text == WORDS and not streaming:
                        whole[ts] = time.monotonic()
                await asyncio.sleep(0.05)
            await bot.settle(30)
            after = sorted(t - ollama.last_token_at for t in whole.values())
            calls = {
                m: len(slack.calls_to(m))
                for m in (
                    "chat.startStream",
                    "chat.appendStream",
                    "chat.postMessage",
                    "chat.update",
                )
            }
            return (
                f"{len(whole)}/{answers} answers whole in one channel; after the model's last "
                f"token: median {after[len(after) // 2]:.1f} s, last {after[-1]:.1f} s "
                f"(target <= 15 s); calls {calls}; 429s {dict(slack.tiers.refused) or 0}"
            )
    finally:
        await ollama.stop()
        await slack.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=30)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="chatbot-bench-burst-"))
    port = free_port()
    server = start_redis_server(port, workdir)
    try:
        line = await burst(args.answers, f"redis://127.0.0.1:{port}/0", f"sqlite:///{workdir}/b.db")
        print(f"slack burst: {line}")
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
