"""The deployment files agree with the code and the settings: docker compose, the Dockerfile,
the Slack app manifests and the manual's Slack and deploy pages (docs/).

No Docker engine is needed: the files are parsed, and their promises are checked against what
the code really does (settings, routes, Slack listeners).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import yaml
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from adapters.app.server import build_web_app
from adapters.app.settings import Settings
from adapters.slack.app import BOT_EVENTS, SLASH_COMMANDS, SlackBot
from bot.tasks import TaskTracker
from tests.support import REPO

ROOT = REPO
COMPOSE = ROOT / "docker-compose.yml"
OVERRIDES = sorted(ROOT.glob("docker-compose.*.yml"))
MANIFESTS = {"socket": ROOT / "slack/manifest.socket.yml", "http": ROOT / "slack/manifest.http.yml"}
SPEC_VARIABLES = frozenset(name.upper() for name in Settings.model_fields)
BOT_SERVICES = ("bot", "migrate")  # the services running the bot's image with .env
# ${VAR}, ${VAR:-default}, ${VAR:?error}, $VAR; `$$` is a literal dollar for the container.
_INTERPOLATION = re.compile(r"(?<!\$)(?:\$\$)*\$(?:\{([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_]\w*))")
_CHANNEL_TYPE = {"im": "im", "channels": "channel", "groups": "group", "mpim": "mpim"}


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _variables(node: Any) -> set[str]:
    """Every variable compose interpolates into this part of a compose file."""
    return {a or b for text in _strings(node) for a, b in _INTERPOLATION.findall(text)}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def one_shot(services: dict[str, dict[str, Any]]) -> set[str]:
    """Services others wait for to finish: they run once and exit."""
    return {
        name
        for service in services.values()
        for name, condition in _depends_on(service).items()
        if condition == "service_completed_successfully"
    }


# --- docker compose -------------------------------------------------------------------------


def test_the_compose_file_has_the_whole_stack(services: dict[str, dict[str, Any]]) -> None:
    assert {"bot", "migrate", "redis", "postgres", "ollama", "ollama-pull"} <= set(services)
    for name, service in services.items():
        assert service.get("image") or service.get("build"), f"{name} has no image or build"
    assert services["bot"]["build"] and services["bot"]["image"] == services["migrate"]["image"]


def test_every_long_running_service_has_a_health_check(
    services: dict[str, dict[str, Any]], one_shot: set[str]
) -> None:
    assert one_shot == {"migrate", "ollama-pull"}
    for name, service in services.items():
        if name in one_shot:
            assert service.get("restart") == "no", f"{name} runs once and must not restart"
            continue
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no health check"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert service.get("restart") == "unless-stopped", name


def test_health_checks_use_what_each_image_has(services: dict[str, dict[str, Any]]) -> None:
    def command(name: str) -> str:
        return " ".join(services[name]["healthcheck"]["test"][1:])

    assert command("redis").startswith("redis-cli ping")
    assert command("postgres").startswith("pg_isready")
    assert command("ollama") == "ollama list"
    # Neither has the qdrant image curl: bash asks /readyz through /dev/tcp.
    assert command("qdrant").startswith("bash -c") and "/dev/tcp/127.0.0.1/6333" in command(
        "qdrant"
    )
    # The slim Python image has no curl: the bot's check is Python's urllib on /healthz.
    assert command("bot").startswith("python -c") and "urllib" in command("bot")
    assert "/healthz" in command("bot")


def test_depends_on_conditions_are_satisfiable(
    services: dict[str, dict[str, Any]], one_shot: set[str]
) -> None:
    for name, service in services.items():
        for dependency, condition in _depends_on(service).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if condition == "service_healthy":
                assert services[dependency].get("healthcheck"), f"{dependency} has no check"
            else:
                assert condition == "service_completed_successfully", (name, dependency)
                assert dependency in one_shot
    # The bot serves only after migrations ran and the model is pulled, with its stores up.
    assert _depends_on(services["bot"]) == {
        "migrate": "service_completed_successfully",
        "ollama-pull": "service_completed_successfully",
        "redis": "service_healthy",
        "postgres": "service_healthy",
        "ollama": "service_healthy",
        "qdrant": "service_healthy",
    }
    assert _depends_on(services["migrate"]) == {"postgres": "service_healthy"}
    assert _depends_on(services["ollama-pull"]) == {"ollama": "service_healthy"}


def test_one_shot_services_migrate_and_pull_the_configured_model(
    services: dict[str, dict[str, Any]],
) -> None:
    assert services["migrate"]["command"] == ["chatbot", "db", "upgrade"]
    assert services["bot"]["command"] == ["chatbot", "serve"]
    pull = services["ollama-pull"]
    assert pull["image"] == services["ollama"]["image"]  # it has the `ollama` CLI
    env = _environment(pull)
    assert urlsplit(env["OLLAMA_HOST"]).hostname == "ollama"
    assert env["OLLAMA_MODEL"] == "${OLLAMA_MODEL:-codellama:7b}"
    script = " ".join([*pull.get("entrypoint", []), *pull["command"]])
    assert 'ollama pull "$$OLLAMA_MODEL"' in script


def test_the_bot_is_given_only_variables_the_contract_names(
    services: dict[str, dict[str, Any]],
) -> None:
    files = [_load(COMPOSE), *map(_load, OVERRIDES)]
    for data in files:
        for name in BOT_SERVICES:
            service = (data.get("services") or {}).get(name) or {}
            unknown = set(_environment(service)) - SPEC_VARIABLES
            assert not unknown, f"{name} is given variables that are not settings: {unknown}"
        # .env is handed to the bot whole (env_file), so a variable compose reads from it
        # must be a setting too, in any service.
        unknown = _variables(data) - SPEC_VARIABLES
        assert not unknown, f"compose reads variables that are not settings: {unknown}"
    for name in BOT_SERVICES:
        assert services[name]["env_file"] in (".env", [".env"])


def test_the_bot_is_pointed_at_this_stacks_services(services: dict[str, dict[str, Any]]) -> None:
    env = _environment(services["bot"])
    assert env == _environment(services["migrate"])
    redis = urlsplit(env["REDIS_URL"])
    assert (redis.scheme, redis.hostname, redis.port) == ("redis", "redis", 6379)
    assert urlsplit(env["OLLAMA_BASE_URL"]).hostname == "ollama"
    db = urlsplit(env["DATABASE_URL"])
    pg = _environment(services["postgres"])
    assert db.scheme == "postgresql" and (db.hostname, db.port) == ("postgres", 5432)
    assert (db.username, db.password, db.path.lstrip("/")) == (
        pg["POSTGRES_USER"],
        pg["POSTGRES_PASSWORD"],
        pg["POSTGRES_DB"],
    )
    health = " ".join(services["postgres"]["healthcheck"]["test"])
    assert f"-U {pg['POSTGRES_USER']}" in health and f"-d {pg['POSTGRES_DB']}" in health
    # The published port is the one the bot listens on, on this machine only: /metrics has
    # no authentication, and Slack and Teams come in through a reverse proxy on the host.
    assert services["bot"]["ports"] == ["127.0.0.1:${PORT:-3000}:${PORT:-3000}"]


def test_compose_waits_for_the_bot_to_stop_by_itself(services: dict[str, dict[str, Any]]) -> None:
    """Docker kills the bot only after its whole stop: the grace for answers in flight, their
    clean-up once cancelled, and closing its connections."""
    from adapters.app.server import CLOSE_SECONDS
    from bot.tasks import CANCEL_SECONDS

    period = services["bot"]["stop_grace_period"]
    assert period.endswith("s")
    grace = Settings.model_fields["shutdown_grace_seconds"].default
    assert int(period[:-1]) >= grace + CANCEL_SECONDS + CLOSE_SECONDS


def test_models_and_data_live_in_named_volumes(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    mounts: dict[str, set[str]] = {}
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} mounts undeclared volume {source}"
                mounts.setdefault(name, set()).add(target)
    assert "/root/.ollama" in mounts["ollama"]
    assert "/var/lib/postgresql/data" in mounts["postgres"]
    assert "/data" in mounts["redis"]


def test_overrides_only_touch_existing_services(services: dict[str, dict[str, Any]]) -> None:
    assert {p.name for p in OVERRIDES} == {"docker-compose.gpu.yml", "docker-compose.spot.yml"}
    for path in OVERRIDES:
        data = _load(path)
        assert set(data) == {"services"}, path.name
        assert set(data["services"]) <= set(services), path.name


def test_gpu_override_gives_ollama_the_nvidia_gpus() -> None:
    data = _load(ROOT / "docker-compose.gpu.yml")
    assert set(data["services"]) == {"ollama"}
    devices = data["services"]["ollama"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]


def test_spot_override_takes_the_failover_order_from_env() -> None:
    data = _load(ROOT / "docker-compose.spot.yml")
    assert set(data["services"]) == {"bot"}
    value = _environment(data["services"]["bot"])["OLLAMA_BASE_URL"]
    # Required (`:?`): an unset variable stops `docker compose up` with the message.
    assert value.startswith("${OLLAMA_BASE_URL:?")
    assert "http://ollama:11434" in value


def test_compose_interpolation_pattern() -> None:
    """The variable finder the contract check relies on sees every form compose accepts."""
    text = "${A} ${B:-x} ${C:?msg} $D $$E $$$F ${G-x}"
    assert _variables(text) == {"A", "B", "C", "D", "F", "G"}


# --- Dockerfile -----------------------------------------------------------------------------


def _script(name: str) -> ModuleType:
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def install_check() -> ModuleType:
    return _script("docker_install_check")


@pytest.fixture(scope="module")
def dockerfile(install_check: ModuleType) -> list[tuple[str, str]]:
    instructions: list[tuple[str, str]] = install_check.instructions(
        (ROOT / "Dockerfile").read_text()
    )
    return instructions


def _final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def test_the_image_runs_as_a_non_root_user(dockerfile: list[tuple[str, str]]) -> None:
    users = [args for keyword, args in _final_stage(dockerfile) if keyword == "USER"]
    assert users, "the final stage never leaves root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_the_image_checks_healthz_and_serves_on_3000(dockerfile: list[tuple[str, str]]) -> None:
    final = dict(_final_stage(dockerfile))
    assert "/healthz" in final["HEALTHCHECK"] and "urllib" in final["HEALTHCHECK"]
    assert final["EXPOSE"] == "3000"
    assert json.loads(final["CMD"]) == ["chatbot", "serve"]
    bases = [args for keyword, args in dockerfile if keyword == "ARG" and "PYTHON_IMAGE" in args]
    assert bases == ["PYTHON_IMAGE=python:3.11.13-slim-bookworm"]


def test_the_image_has_git_for_git_sources(dockerfile: list[tuple[str, str]]) -> None:
    runs = " ".join(args for keyword, args in _final_stage(dockerfile) if keyword == "RUN")
    assert re.search(r"apt-get install [^&]*\bgit\b[^&]*\bopenssh-client\b", runs)


# An exact version: x.y.z (PostgreSQL's are x.y), optionally with a variant (-alpine).
_PINNED_TAG = re.compile(r":v?\d+\.\d+\.\d+(?:-[a-z]+)*$|^postgres:\d+\.\d+(?:-[a-z]+)*$")


def test_every_image_is_pinned_to_an_exact_version(
    services: dict[str, dict[str, Any]], dockerfile: list[tuple[str, str]]
) -> None:
    images = {name: s["image"] for name, s in services.items() if "build" not in s}
    images["Dockerfile"] = next(
        args.split("=", 1)[1] for keyword, args in dockerfile if keyword == "ARG"
    )
    floating = {name: image for name, image in images.items() if not _PINNED_TAG.search(image)}
    assert floating == {}


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not pinned: {line}"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_the_lock_pins_every_dependency_and_everyone_installs_with_it() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    names = {re.sub(r"[-_.]+", "-", re.split(r"[\[<>=~! ]", d)[0]).lower() for d in wanted}
    assert names - set(_lock()) == set()
    # The image (scripts/install.sh), `make install` (and so CI's `make test`) all use it.
    assert "-c requirements.lock" in (ROOT / "scripts/install.sh").read_text()
    assert "-c $(LOCK)" in (ROOT / "Makefile").read_text()
    assert "LOCK := requirements.lock" in (ROOT / "Makefile").read_text()


def test_the_spot_guard_fires_with_a_copied_env_example() -> None:
    """docker-compose.spot.yml requires OLLAMA_BASE_URL from .env: the example leaves it
    unset, so a forgotten failover order stops `docker compose up` with the message."""
    example = (ROOT / ".env.example").read_text()
    assert not re.search(r"^OLLAMA_BASE_URL=", example, re.M)
    assert re.search(r"^# OLLAMA_BASE_URL=", example, re.M)


def test_the_image_installs_the_package_from_pyproject(install_check: ModuleType) -> None:
    stage = install_check.build_stage((ROOT / "Dockerfile").read_text())
    copied = {source for sources, _, _ in stage.copies for source in sources}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert {"pyproject.toml", pyproject["project"]["readme"], "scripts/install.sh"} <= copied
    assert packages <= copied, "every package pyproject installs must be copied into the image"
    assert stage.run.split()[-2:] == ["scripts/install.sh", "/opt/venv"]
    install = (ROOT / "scripts/install.sh").read_text()
    pip_lines = [line for line in install.splitlines() if "pip install" in line]
    assert pip_lines and all(line.rstrip().endswith(" .") for line in pip_lines)
    assert not re.search(r"pip install\b.*\s(-e|--editable)\b", install)


def test_dockerignore_keeps_secrets_and_clutter_out(install_check: ModuleType) -> None:
    ignore = install_check.DockerIgnore((ROOT / ".dockerignore").read_text())
    secret_or_clutter = (".env", ".git/config", ".venv/bin/python", "chatbot.db", "tests/bot/x.py")
    for path in secret_or_clutter:
        assert ignore.ignored(path), path
    for path in ("bot/__pycache__/memory.cpython-311.pyc", "adapters/x.pyc", "bot/local.db"):
        assert ignore.ignored(path), path
    for path in (
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "requirements.lock",
        "scripts/install.sh",
        "bot/migrations/env.py",
    ):
        assert not ignore.ignored(path), path


# --- Slack app manifests --------------------------------------------------------------------


@pytest.fixture(scope="module", params=sorted(MANIFESTS))
def manifest(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, _load(MANIFESTS[request.param])


def test_manifest_declares_exactly_what_the_code_handles(
    manifest: tuple[str, dict[str, Any]],
) -> None:
    _, data = manifest
    commands = [c["command"] for c in data["features"]["slash_commands"]]
    assert sorted(commands) == sorted(SLASH_COMMANDS)
    events = data["settings"]["event_subscriptions"]["bot_events"]
    assert sorted(events) == sorted(BOT_EVENTS)
    assert "user_events" not in data["settings"]["event_subscriptions"]


def test_manifest_settings_the_bot_needs(manifest: tuple[str, dict[str, Any]]) -> None:
    mode, data = manifest
    features, settings = data["features"], data["settings"]
    assert set(data) == {"_metadata", "display_information", "features", "oauth_config", "settings"}
    assert features["app_home"]["messages_tab_enabled"] is True  # people can DM the bot
    assert features["app_home"]["messages_tab_read_only_enabled"] is False
    assert features["bot_user"]["always_online"] is True
    assert set(data["oauth_config"]["scopes"]["bot"]) == {
        "app_mentions:read",
        "chat:write",
        "chat:write.public",
        "channels:history",
        "groups:history",
        "im:history",
        "mpim:history",
        "commands",
        "assistant:write",
        "users:read",
    }
    assert settings["org_deploy_enabled"] is False
    assert settings["token_rotation_enabled"] is False
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["socket_mode_enabled"] is (mode == "socket")


def test_manifest_fits_slacks_limits(manifest: tuple[str, dict[str, Any]]) -> None:
    _, data = manifest
    info = data["display_information"]
    assert 1 <= len(info["name"]) <= 35
    assert 1 <= len(info["description"]) <= 140
    assert 175 <= len(info["long_description"]) <= 4000
    assert re.fullmatch(r"#[0-9a-fA-F]{6}", info["background_color"])
    assert 1 <= len(data["features"]["bot_user"]["display_name"]) <= 80
    for command in data["features"]["slash_commands"]:
        assert re.fullmatch(r"/[a-z0-9_-]{1,31}", command["command"])
        assert 1 <= len(command["description"]) <= 2000
        assert command["should_escape"] is False  # the bot reposts the text as typed
    hints = {c["command"]: c.get("usage_hint") for c in data["features"]["slash_commands"]}
    assert hints["/ask"] and hints["/premium"], "commands that take a question show a hint"


def _urls(data: dict[str, Any]) -> list[str]:
    settings = data["settings"]
    found = [c.get("url") for c in data["features"]["slash_commands"]]
    found += [settings["event_subscriptions"].get("request_url")]
    found += [settings["interactivity"].get("request_url")]
    return [url for url in found if url is not None]


def test_http_manifest_sends_everything_to_the_slack_route() -> None:
    data = _load(MANIFESTS["http"])
    urls = _urls(data)
    assert len(urls) == len(SLASH_COMMANDS) + 2  # every command, events, interactivity
    assert set(urls) == {"https://YOUR-HOST/slack/events"}
    routes = {
        (route.method, route.resource.canonical)
        for route in build_web_app(runtime=None).router.routes()  # type: ignore[arg-type]
        if route.resource is not None
    }
    assert ("POST", urlsplit(urls[0]).path) in routes


def test_socket_manifest_has_no_request_urls() -> None:
    assert _urls(_load(MANIFESTS["socket"])) == []


def test_both_manifests_differ_only_in_how_slack_reaches_the_bot() -> None:
    def without_transport(data: dict[str, Any]) -> dict[str, Any]:
        data = json.loads(json.dumps(data))
        for command in data["features"]["slash_commands"]:
            command.pop("url", None)
        data["settings"]["event_subscriptions"].pop("request_url", None)
        data["settings"]["interactivity"].pop("request_url", None)
        data["settings"].pop("socket_mode_enabled")
        return data

    socket, http = (without_transport(_load(MANIFESTS[m])) for m in ("socket", "http"))
    assert socket == http


# --- the code's listeners -------------------------------------------------------------------


@pytest.fixture
def slack_listeners() -> list[Any]:
    bot = SlackBot(
        client=AsyncWebClient(token="xoxb-test"),
        assistant=None,  # type: ignore[arg-type]  # never called: only the listeners are read
        dispatcher=None,  # type: ignore[arg-type]
        tracker=TaskTracker(),
    )
    listeners: list[Any] = bot.app._async_listeners
    return listeners


async def _handled(listeners: list[Any], body: str) -> bool:
    request = AsyncBoltRequest(body=body, headers={})
    for listener in listeners:
        if await listener.async_matches(req=request, resp=BoltResponse(status=200)):
            return True
    return False


def _command_body(command: str) -> str:
    return urlencode({"command": command, "text": "hi", "team_id": "T1", "user_id": "U1"})


def _event_body(subscription: str) -> str:
    event_type, _, conversation = subscription.partition(".")
    event: dict[str, Any] = {"type": event_type, "user": "U1", "text": "hi", "ts": "1.2"}
    if conversation:
        event["channel_type"] = _CHANNEL_TYPE[conversation]
    return json.dumps({"type": "event_callback", "team_id": "T1", "event": event})


async def test_the_app_listens_to_every_manifest_command_and_event(
    slack_listeners: list[Any],
) -> None:
    data = _load(MANIFESTS["socket"])
    for command in data["features"]["slash_commands"]:
        assert await _handled(slack_listeners, _command_body(command["command"])), command
    for subscription in data["settings"]["event_subscriptions"]["bot_events"]:
        assert await _handled(slack_listeners, _event_body(subscription)), subscription


async def test_the_app_listens_to_nothing_the_manifest_leaves_out(
    slack_listeners: list[Any],
) -> None:
    assert not await _handled(slack_listeners, _command_body("/deploy"))
    assert not await _handled(slack_listeners, _event_body("reaction_added"))
    assert not await _handled(slack_listeners, _event_body("app_uninstalled"))


# --- The manual (docs/) ---------------------------------------------------------------------


def _docs_section(page: str, heading: str) -> str:
    text = (ROOT / "docs" / page).read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_docs_connect_slack_lists_the_manifest_scopes() -> None:
    section = _docs_section("slack.md", "Connect Slack")
    step = section[section.index("Bot Token Scopes") :]
    step = step[: step.index("\n3. ")]
    listed = set(re.findall(r"`([a-z_]+:[a-z_.]+|commands)`", step))
    for mode, path in MANIFESTS.items():
        assert listed == set(_load(path)["oauth_config"]["scopes"]["bot"]), mode


def test_docs_deploy_page_covers_every_deploy_file() -> None:
    section = (ROOT / "docs/deploy.md").read_text()
    for name in ("docker-compose.gpu.yml", "docker-compose.spot.yml", *MANIFESTS.values()):
        assert str(name).removeprefix(f"{ROOT}/") in section, name
    for words in ("pg_dump", "pg_restore", "git pull", "docker compose build", "OLLAMA_BASE_URL"):
        assert words in section, words


def test_docs_deploy_page_names_every_service_volume_image_and_fixed_setting() -> None:
    """What docker compose runs and keeps is what the deploy page lists (it once left out
    Qdrant): every service, named volume, pinned image and setting fixed for the bot."""
    page = (ROOT / "docs/deploy.md").read_text()
    compose = _load(COMPOSE)
    for name in (*compose["services"], *compose["volumes"]):
        assert f"`{name}`" in page, name
    images = {s["image"] for s in compose["services"].values() if s.get("build") is None}
    assert images and "qdrant/qdrant" in " ".join(images)
    for image in images:
        assert f"`{image}`" in page, image
    fixed = _environment(compose["services"]["bot"])
    assert {"REDIS_URL", "DATABASE_URL", "OLLAMA_BASE_URL", "KNOWLEDGE_STORE"} <= set(fixed)
    for name, value in fixed.items():
        assert f"`{name}={value}`" in page, name
