"""Start-up: `chatbot serve` and `chatbot chat` load only the stacks their configuration uses.

A Slack-only bot on a database that is already migrated must not pay for Alembic (the
start-up migration has nothing to do), Teams' botbuilder, the OpenAI client or the team
knowledge stack (Qdrant, document loaders): each costs a noticeable part of a second and
tens of MB in every process. Timing is left to `python -m bench.load --start-up`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory

from bot import database
from bot.database import current_revision, downgrade, head_revision, upgrade

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
