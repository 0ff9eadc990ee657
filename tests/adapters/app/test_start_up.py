"""Start-up: `chatbot serve` and `chatbot chat` load only the stacks their configuration uses.

A Slack-only bot on a database that is already migrated must not pay for Alembic (the
start-up migration has nothing to do), Teams' botbuilder, the OpenAI client or the team
knowledge stack (Qdrant, document loaders): each costs a noticeable part of a second and
tens of MB in every process. Timing is left to `python -m bench.load --start-up`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
from alembic.script import ScriptDirectory

from bot import database
from bot.database import current_revision, downgrade, head_revision, upgrade
from tests.fakes.ollama import FakeOllama
from tests.fakes.slack import FakeSlack
from tests.support.harness import BOT_TOKEN, SIGNING_SECRET, sign
from tests.support.processes import free_port, stop, wait_healthy
from tests.support.slack_payloads import CHANNEL, mention

# What the start-up of `serve` and `chat` does in every process: the start-up migration,
# then the runtime (stores, models, core, Slack) built from the settings.
START_UP = """
import asyncio, json, sys
from adapters.cli import load_settings
from adapters.app.server import build, migrate

async def main():
    settings = load_settings()
    await migrate(settings)
    runtime = await build(settings)
    await runtime.close()
    print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))

asyncio.run(main())
"""

NOT_CONFIGURED = ("alembic", "botbuilder", "openai", "langchain_openai", "qdrant_client")

# `chatbot serve` itself, as one process that accepts and answers (what the ingress process
# and the answer workers of `--workers N` each run), saying at exit which packages it loaded.
SERVE = """
import atexit, gc, json, sys
atexit.register(
    lambda: print("loaded: " + json.dumps(sorted({n.split(".")[0] for n in sys.modules})))
)
atexit.register(lambda: print(f"collector: {gc.isenabled()} frozen: {gc.get_freeze_count()}"))
from adapters.cli import main
sys.exit(main(["serve", "--host", "127.0.0.1", "--workers", "1"]))
"""
# What a deployment without a premium key, Teams, team knowledge or MCP clients never uses
# (nor one whose analytics page is not opened).
DEFAULT_UNUSED = (
    "openai",
    "langchain_openai",
    "botbuilder",
    "qdrant_client",
    "qdrant_edge",
    "langchain_text_splitters",
    "bs4",
    "pypdf",
    "mcp",
    "starlette",
    "alembic",
    "jinja2",  # the analytics page's templates, loaded when the page is first drawn
)


def test_the_shipped_head_read_without_alembic_is_alembics() -> None:
    script = ScriptDirectory.from_config(database.alembic_config())

    assert database.shipped_heads() == set(script.get_heads())


def test_a_slack_only_start_on_a_migrated_database_imports_no_unused_stack(
    tmp_path: Path, redis_server: str, redis_test_db: int
) -> None:
    url = f"sqlite:///{tmp_path / 'chatbot.db'}"
    upgrade(url)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DATABASE_URL": url,
        "REDIS_URL": f"{redis_server}/{redis_test_db}",
        "SLACK_BOT_TOKEN": "xoxb-start-up",
        "SLACK_SIGNING_SECRET": "secret",
        "OLLAMA_BASE_URL": "http://127.0.0.1:9",
        "LOG_LEVEL": "WARNING",
    }

    result = subprocess.run(
        [sys.executable, "-c", START_UP],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout.splitlines()[-1]))
    assert {"langchain_ollama", "slack_bolt", "sqlalchemy"} <= loaded  # it did start
    assert loaded.isdisjoint(NOT_CONFIGURED), sorted(loaded & set(NOT_CONFIGURED))
    assert current_revision(url) == head_revision()


def test_upgrade_after_a_downgrade_to_base_migrates_again(database_url: str) -> None:
    # An empty version table is not "up to date": the tables come back.
    upgrade(database_url)
    downgrade(database_url, "base")

    upgrade(database_url)

    assert current_revision(database_url) == head_revision()


def test_upgrade_from_an_older_revision_reaches_the_head(database_url: str) -> None:
    upgrade(database_url, "0001")

    upgrade(database_url)

    assert current_revision(database_url) == head_revision()


async def test_a_default_deployment_serving_a_question_never_imports_what_it_does_not_use(
    tmp_path: Path, redis_url: str, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    """No OPENAI_API_KEY, no Teams, no KNOWLEDGE_SOURCES: `chatbot serve` starts, answers a
    Slack mention and serves its health and metrics routes without the OpenAI client,
    botbuilder, the knowledge stack or the MCP SDK; and with the garbage collector on."""
    url_db = f"sqlite:///{tmp_path / 'chatbot.db'}"
    upgrade(url_db)
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PORT": str(port),
        "DATABASE_URL": url_db,
        "REDIS_URL": redis_url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake_slack.api_url,
        "OLLAMA_BASE_URL": fake_ollama.url,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SERVE,
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url, timeout=60)
        ts = "1500000000.000100"
        body = json.dumps(mention("how do we deploy?", ts))
        async with aiohttp.ClientSession() as http:
            headers = {"Content-Type": "application/json", **sign(body)}
            async with http.post(f"{url}/slack/events", data=body, headers=headers) as resp:
                assert resp.status == 200
            await fake_slack.wait_for(
                lambda f: fake_ollama.reply in f.thread_text(CHANNEL, ts), timeout=30
            )
            for route in ("/readyz", "/metrics"):
                async with http.get(url + route) as resp:
                    assert resp.status == 200, route
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        await stop(proc)

    said = out.decode()
    assert proc.returncode == 0, said
    loaded = set(json.loads(said.rsplit("loaded: ", 1)[1].splitlines()[0]))
    assert {"langchain_ollama", "slack_bolt", "aiohttp"} <= loaded  # it did serve
    assert loaded.isdisjoint(DEFAULT_UNUSED), sorted(loaded & set(DEFAULT_UNUSED))
    # The collector, paused while start-up imports and builds, runs again once the bot
    # serves, with start-up's objects frozen out of its passes.
    collector = said.rsplit("collector: ", 1)[1].split()
    assert collector[0] == "True", said
    assert int(collector[2]) > 100_000, said
