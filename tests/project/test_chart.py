"""The Helm chart (charts/chatbot) checked without a cluster, Docker or a helm binary.

Helm's own Go SDK (the `helm-python-sdk` wheel, Helm v4) lints and renders the chart
offline; `kubernetes-validate` checks every rendered object against Kubernetes' strict
JSON schemas for 1.30 (the chart's kubeVersion floor) and the newest release it ships.
Then the operator's promises are checked on the rendered objects, and the rendered bot
container is run as a process (its command, environment and probes) against real Redis,
real PostgreSQL and a fake Ollama server.

Without the wheels the tests are skipped with the reason; with CI=true they fail.
Regenerate the golden render after an intended change:
    UPDATE_GOLDEN=1 .venv/bin/pytest -q tests/project/test_chart.py -k golden
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.fakes.ollama import FakeOllama
from tests.support import REPO
from tests.support.processes import free_port

_MISSING = (
    "the chart tests need the `helm-python-sdk` and `kubernetes-validate` wheels "
    "(`make install` installs them with the dev extra)"
)
try:
    import helm_python as helm
    import kubernetes_validate
except Exception as exc:  # ImportError, or the native Helm library failing to load
    if os.environ.get("CI") == "true":
        pytest.fail(f"{_MISSING}: {exc!r}; CI requires them", pytrace=False)
    pytest.skip(f"{_MISSING}: {exc!r}: chart tests SKIPPED", allow_module_level=True)


def _settings_class() -> Any:
    """The bot's settings class (what `chatbot serve` reads from the environment)."""
    from adapters.app.settings import Settings

    return Settings


def _cli_parser() -> Any:
    """The `chatbot` command line parser."""
    from adapters.cli import _parser

    return _parser()


def _http_routes() -> set[tuple[str, str]]:
    """(method, path) of every route `chatbot serve` answers."""
    from adapters.app.server import build_web_app

    app = build_web_app(None)  # type: ignore[arg-type]  # routes only; never served
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
    }


ROOT = REPO
CHART = ROOT / "charts" / "chatbot"
DEPS_CHART = CHART / "charts" / "deps"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
GOLDEN = ROOT / "tests" / "fixtures" / "chart" / "default-render.yaml"
RELEASE, NAMESPACE = "chatbot", "chatbot"
FULLNAME = "chatbot"  # release "chatbot" of chart "chatbot"
OLDEST_KUBERNETES = "1.30.0"  # Chart.yaml kubeVersion
NEWEST_KUBERNETES = kubernetes_validate.latest_version()
# Resources of CRDs, which kubernetes-validate has no schema for: checked by hand below.
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
}
# What an operator must set when the deps subchart is off: the smallest working values.
REQUIRED = {
    "redis": {"url": "redis://redis.data.svc.cluster.local:6379/0"},
    "postgres": {"existingSecret": "chatbot-database"},
    "ollama": {"urls": ["http://ollama.llm.svc.cluster.local:11434"]},
}
# Settings the chart sets from its own blocks (not from `config`).
CHART_MANAGED = {
    "PORT": "bot.port",
    "SHUTDOWN_GRACE_SECONDS": "bot.shutdownGraceSeconds",
    "REDIS_URL": "redis",
    "DATABASE_URL": "postgres",
    "OLLAMA_BASE_URL": "ollama.urls",
    "KNOWLEDGE_STORE": "qdrant.url",
    "SLACK_BOT_TOKEN": "slack",
    "SLACK_APP_TOKEN": "slack",
    "SLACK_SIGNING_SECRET": "slack",
    "MICROSOFT_APP_ID": "teams",
    "MICROSOFT_APP_PASSWORD": "teams",
    "MICROSOFT_APP_TYPE": "teams.appType",
    "MICROSOFT_APP_TENANT_ID": "teams.tenantId",
    "OPENAI_API_KEY": "openai",
    "OPENAI_BASE_URL": "openai.baseUrl",
}
# Settings a cluster deployment must not offer: unauthenticated Teams is for a laptop.
NOT_OFFERED = {"TEAMS_ALLOW_UNAUTHENTICATED"}
STABLE_SELECTOR_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
}


# --- rendering ---------------------------------------------------------------------------


class Render:
    """One offline render: the objects by template, and NOTES.txt."""

    def __init__(self, manifests: dict[str, str]) -> None:
        self.text = manifests
        self.notes = manifests.get(f"{CHART.name}/templates/NOTES.txt", "")
        self.by_template: dict[str, list[dict[str, Any]]] = {}
        for path, text in sorted(manifests.items()):
            if path.endswith("NOTES.txt"):
                continue
            docs = [d for d in yaml.safe_load_all(text) if d]
            if docs:
                self.by_template[path] = docs

    @property
    def objects(self) -> list[dict[str, Any]]:
        return [doc for docs in self.by_template.values() for doc in docs]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
        return found[0]

    @property
    def bot(self) -> dict[str, Any]:
        return self.one("Deployment", FULLNAME)

    @property
    def bot_container(self) -> dict[str, Any]:
        return container(self.bot, "bot")

    @property
    def config(self) -> dict[str, str]:
        return dict(self.one("ConfigMap", FULLNAME)["data"])

    def migration_jobs(self) -> list[dict[str, Any]]:
        return [
            job
            for job in self.of_kind("Job")
            if job["metadata"]["labels"].get("app.kubernetes.io/component") == "migrate"
        ]


@pytest.fixture(scope="module")
def chart() -> Path:
    """The chart to render. Each render loads it anew: Helm drops the subcharts a render's
    values switch off from the loaded chart itself, which would leak into the next one."""
    helm.disable_logging()
    return CHART


def merged(*layers: dict[str, Any]) -> dict[str, Any]:
    """Values layered like several `-f` files (later ones win, maps merge)."""
    out: dict[str, Any] = {}
    for layer in layers:
        out = _merge(out, layer)
    return out


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


def render(chart: Path | str, values: dict[str, Any], *, revision: int = 1) -> Render:
    with helm.Chart.load(chart) as loaded:
        manifests = loaded.render(
            values, name=RELEASE, namespace=NAMESPACE, revision=revision, is_install=revision == 1
        )
    return Render(manifests)


def refusal(chart: Path, values: dict[str, Any]) -> str:
    """The message a render with these values fails with (it must fail)."""
    with pytest.raises(helm.HelmError) as caught, helm.Chart.load(chart) as loaded:
        loaded.render(values, name=RELEASE, namespace=NAMESPACE)
    return str(caught.value)


def ci_values(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    spec = workload["spec"]["template"]["spec"]
    for c in spec.get("initContainers", []) + spec["containers"]:
        if c["name"] == name:
            return c  # type: ignore[no-any-return]
    raise AssertionError(f"no container {name} in {workload['metadata']['name']}")


def workloads(result: Render) -> list[dict[str, Any]]:
    return [o for o in result.objects if o["kind"] in ("Deployment", "StatefulSet", "Job")]


def all_containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def pod_env(
    result: Render, c: dict[str, Any], secrets: dict[str, dict[str, str]]
) -> dict[str, str]:
    """The environment the kubelet gives this container: envFrom ConfigMaps (of this
    render), then env in order, secretKeyRef read from ``secrets``, $(VAR) expanded from
    the variables before it."""
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        ref = source.get("configMapRef")
        assert ref is not None, f"envFrom other than this chart's ConfigMap: {source}"
        env.update(result.one("ConfigMap", ref["name"])["data"])
    for item in c.get("env", []):
        if "value" in item:
            value = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                lambda m: env.get(m.group(1), m.group(0)),
                str(item["value"]),
            )
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            value = secrets[ref["name"]][ref["key"]]
        env[item["name"]] = value
    return env


# --- lint, schema validation, coverage ----------------------------------------------------


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_helm_lint_strict_finds_nothing_for_each_ci_values_set(values_file: Path) -> None:
    values = ci_values(values_file)
    # The deps subchart on its own too, with the values the parent hands it.
    for path, given in ((CHART, values), (DEPS_CHART, values.get("deps", {}))):
        report = helm.lint(path, given, strict=True, kube_version=f"v{OLDEST_KUBERNETES}")
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not problems and not report["errors"], (path.name, report)


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_each_ci_values_set_renders_objects_valid_for_kubernetes_1_30_and_the_newest(
    chart: Path, values_file: Path
) -> None:
    result = render(chart, ci_values(values_file))
    for obj in result.objects:
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            continue  # test_crd_resources_point_at_the_bots_service
        for version in (OLDEST_KUBERNETES, NEWEST_KUBERNETES):
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} on {version}: {exc}")
    # Names are unique per kind and short enough; every object carries the release's labels.
    names = Counter((o["kind"], o["metadata"]["name"]) for o in result.objects)
    assert all(count == 1 for count in names.values()), names
    for obj in result.objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert len(obj["metadata"]["name"]) <= 63


def test_the_ci_values_sets_together_switch_everything_on(chart: Path) -> None:
    rendered = [render(chart, ci_values(path)) for path in CI_VALUES]
    templates = {path for r in rendered for path in r.by_template}
    sources = {
        f"{CHART.name}/{p.relative_to(CHART)}"
        for p in CHART.rglob("templates/*.yaml")
        if not p.name.startswith("_")
    }
    assert sources - templates == set(), "templates no ci/*-values.yaml renders"
    modes = {
        r.migration_jobs()[0]["metadata"].get("annotations", {}).get("helm.sh/hook", "job")
        for r in rendered
        if r.migration_jobs()
    }
    assert modes == {"pre-install,pre-upgrade", "job"}
    assert any("initContainers" in r.bot["spec"]["template"]["spec"] for r in rendered)
    gpu = [
        c["resources"]["limits"]
        for r in rendered
        for d in r.of_kind("Deployment")
        for c in all_containers(d)
        if "nvidia.com/gpu" in c.get("resources", {}).get("limits", {})
    ]
    assert gpu, "no ci values set runs Ollama on a GPU"
    slack_modes = {
        ("SLACK_APP_TOKEN" in names, "SLACK_SIGNING_SECRET" in names)
        for r in rendered
        for names in [{e["name"] for e in r.bot_container.get("env", [])}]
    }
    assert {(True, False), (False, True)} <= slack_modes


def test_crd_resources_point_at_the_bots_service(chart: Path) -> None:
    """ServiceMonitor and HTTPRoute have no schema here: their links are checked instead."""
    for path in CI_VALUES:
        result = render(chart, ci_values(path))
        service = result.one("Service", FULLNAME)
        for monitor in result.of_kind("ServiceMonitor"):
            selector = monitor["spec"]["selector"]["matchLabels"]
            assert selector.items() <= service["metadata"]["labels"].items()
            [endpoint] = monitor["spec"]["endpoints"]
            assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
            assert ("GET", endpoint["path"]) in _http_routes()
        for route in result.of_kind("HTTPRoute"):
            [rule] = route["spec"]["rules"]
            [backend] = rule["backendRefs"]
            assert backend["name"] == FULLNAME
            assert backend["port"] in {p["port"] for p in service["spec"]["ports"]}
            paths = {m["path"]["value"] for m in rule["matches"]}
            assert paths and paths <= {path for _, path in _http_routes()} - {"/metrics"}


def test_the_chart_packages_and_the_package_renders_like_the_directory(
    chart: Path, tmp_path: Path
) -> None:
    archive = helm.package(CHART, destination=tmp_path)
    for path in CI_VALUES:
        values = ci_values(path)
        assert render(archive, values).text == render(chart, values).text


# --- the bot's pods ------------------------------------------------------------------------


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_every_container_is_pinned_limited_and_probed(chart: Path, values_file: Path) -> None:
    result = render(chart, ci_values(values_file))
    for workload in workloads(result):
        spec = workload["spec"]["template"]["spec"]
        for c in all_containers(workload):
            where = f"{workload['metadata']['name']}/{c['name']}"
            image = c["image"]
            assert not image.endswith(":latest") and ":" in image.rsplit("/", 1)[-1], where
            assert c["resources"].get("requests") and c["resources"].get("limits"), where
            assert c["resources"]["limits"].get("memory"), where
            assert c.get("securityContext", {}).get("allowPrivilegeEscalation") is False, where
            names = [e["name"] for e in c.get("env", [])]
            assert len(names) == len(set(names)), f"{where}: duplicate env names {names}"
            if workload["kind"] == "Deployment" and c in spec["containers"]:
                assert c.get("readinessProbe") and c.get("livenessProbe"), where
        assert spec.get("automountServiceAccountToken") is False


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_the_bot_runs_non_root_on_a_read_only_root_filesystem(
    chart: Path, values_file: Path
) -> None:
    result = render(chart, ci_values(values_file))
    for workload in [result.bot, *result.migration_jobs()]:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's user
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        volumes = {v["name"]: v for v in pod["volumes"]}
        for c in all_containers(workload):
            ctx = c["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["capabilities"]["drop"] == ["ALL"]
            # /tmp stays writable: the metrics of `--workers` processes live there.
            [tmp] = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert "emptyDir" in volumes[tmp["name"]]


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_the_bot_container_is_what_chatbot_serve_reads(
    chart: Path, values_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = ci_values(values_file)
    result = render(chart, values)
    c = result.bot_container
    args = _cli_parser().parse_args(c["command"][1:] + c.get("args", []))
    assert c["command"][0] == "chatbot" and args.command == "serve"
    assert args.workers == values.get("bot", {}).get("workers", 2)
    port = int(result.config["PORT"])
    assert c["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    routes = _http_routes()
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        get = c[probe]["httpGet"]
        assert (get["path"], get["port"]) == (path, "http"), probe
        assert ("GET", path) in routes
    # Every variable the pod gets is a setting the bot reads (or a chart-internal part of
    # one, expanded into it by the kubelet), and the bot accepts their values.
    settings = _settings_class()
    fields = {name.upper() for name in settings.model_fields}
    extra = {e["name"] for e in values.get("bot", {}).get("extraEnv", [])}  # the operator's
    names = set(result.config) | {e["name"] for e in c.get("env", [])} - extra
    internal = {n for n in names if n.startswith("_")}
    assert names - internal <= fields, f"not settings of the bot: {names - internal - fields}"
    for name in internal:
        assert any(f"$({name})" in str(e.get("value", "")) for e in c["env"]), name
    secrets = _fake_secrets(result)
    env = pod_env(result, c, secrets)
    for name in fields:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    parsed = settings(_env_file=None)
    assert parsed.port == port
    assert parsed.shutdown_grace_seconds == values.get("bot", {}).get("shutdownGraceSeconds", 30)
    assert parsed.redis_url and parsed.database_url.startswith("postgresql")


def _fake_secrets(result: Render) -> dict[str, dict[str, str]]:
    """A value for every Secret key the render reads (URL keys get URLs)."""
    secrets: dict[str, dict[str, str]] = {}
    for workload in workloads(result):
        for c in all_containers(workload):
            for item in c.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    value = {
                        "REDIS_URL": "redis://:pw@redis:6379/0",
                        "DATABASE_URL": "postgresql://u:pw@db:5432/chatbot",
                    }.get(item["name"], "s3cr3t-value-123")
                    secrets.setdefault(ref["name"], {})[ref["key"]] = value
    return secrets


def test_every_setting_of_the_bot_can_be_set_through_the_chart(chart: Path) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    offered = set(schema["properties"]["config"]["properties"])
    fields = {name.upper() for name in _settings_class().model_fields}
    assert offered <= fields, f"config offers what the bot does not read: {offered - fields}"
    assert not offered & set(CHART_MANAGED), "set from their own blocks, not config"
    missing = fields - offered - set(CHART_MANAGED) - NOT_OFFERED
    assert not missing, (
        f"settings the chart cannot set: {sorted(missing)}; add them to the `config` block "
        "of charts/chatbot/values.schema.json (or to CHART_MANAGED here)"
    )


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_selectors_hold_only_stable_labels(chart: Path, values_file: Path) -> None:
    result = render(chart, ci_values(values_file))
    selectors = [
        o["spec"]["selector"]["matchLabels"] for o in workloads(result) if "selector" in o["spec"]
    ]
    selectors += [
        o["spec"]["selector"]["matchLabels"] for o in result.of_kind("PodDisruptionBudget")
    ]
    selectors += [o["spec"]["selector"] for o in result.of_kind("Service")]
    assert selectors
    for selector in selectors:
        assert set(selector) <= STABLE_SELECTOR_LABELS, selector
    upgraded = render(
        chart, merged(ci_values(values_file), {"image": {"tag": "9.9.9"}}), revision=2
    )
    assert [d["spec"]["selector"] for d in upgraded.of_kind("Deployment")] == [
        d["spec"]["selector"] for d in result.of_kind("Deployment")
    ]


def test_a_config_change_rolls_the_pods_and_nothing_else_does(chart: Path) -> None:
    def checksum(values: dict[str, Any]) -> str:
        meta = render(chart, merged(REQUIRED, values)).bot["spec"]["template"]["metadata"]
        return str(meta["annotations"]["checksum/config"])

    base = checksum({})
    assert checksum({}) == base
    assert checksum({"config": {"OLLAMA_MODEL": "qwen2.5-coder:7b"}}) != base
    assert checksum({"redis": {"url": "redis://other:6379/0"}}) != base
    assert checksum({"bot": {"resources": {"limits": {"memory": "2Gi"}}}}) == base


def test_stopping_fits_in_the_grace_period(chart: Path) -> None:
    def pod(values: dict[str, Any]) -> dict[str, Any]:
        return render(chart, merged(REQUIRED, values)).bot["spec"]["template"]["spec"]  # type: ignore[no-any-return]

    spec = pod({})
    [bot] = spec["containers"]
    pre_stop = bot["lifecycle"]["preStop"]["sleep"]["seconds"]
    # preStop 5 + SHUTDOWN_GRACE_SECONDS 30 + 15 s for the bot to close + 10 s margin.
    assert (pre_stop, spec["terminationGracePeriodSeconds"]) == (5, 60)
    assert pod({"bot": {"shutdownGraceSeconds": 45}})["terminationGracePeriodSeconds"] == 75
    assert (
        pod({"bot": {"terminationGracePeriodSeconds": 90}})["terminationGracePeriodSeconds"] == 90
    )
    message = refusal(chart, merged(REQUIRED, {"bot": {"terminationGracePeriodSeconds": 40}}))
    assert "cannot fit" in message and "at least 50" in message


def test_a_pod_disruption_budget_only_with_more_than_one_replica(chart: Path) -> None:
    def budgets(bot: dict[str, Any]) -> list[dict[str, Any]]:
        return render(chart, merged(REQUIRED, {"bot": bot})).of_kind("PodDisruptionBudget")

    assert budgets({"replicas": 1}) == []
    [pdb] = budgets({"replicas": 2})
    assert pdb["spec"]["minAvailable"] == 1
    assert budgets({"autoscaling": {"enabled": True, "minReplicas": 1}}) == []
    assert len(budgets({"autoscaling": {"enabled": True, "minReplicas": 3}})) == 1
    message = refusal(chart, merged(REQUIRED, {"bot": {"replicas": 2, "pdb": {"minAvailable": 2}}}))
    assert "block every node drain" in message


def test_the_autoscaler_owns_the_replica_count(chart: Path) -> None:
    values = merged(REQUIRED, {"bot": {"autoscaling": {"enabled": True, "maxReplicas": 6}}})
    result = render(chart, values)
    assert "replicas" not in result.bot["spec"]
    hpa = result.one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == result.bot["metadata"]["name"]
    assert hpa["spec"]["maxReplicas"] == 6


# --- Slack Socket Mode ---------------------------------------------------------------------

SOCKET = {"slack": {"enabled": True, "mode": "socket", "existingSecret": "chatbot-slack"}}


@pytest.mark.parametrize(
    ("bot", "expected"),
    [
        ({"replicas": 5}, "at most 4"),
        ({"replicas": 5, "strategy": {"maxSurge": 0, "maxUnavailable": 1}}, "at most 4"),
        ({"autoscaling": {"enabled": True, "maxReplicas": 5}}, "at most 4"),
        ({"replicas": 4, "strategy": {"maxSurge": 2, "maxUnavailable": 0}}, "maxSurge 2"),
    ],
    ids=["replicas", "replicas-without-surge", "autoscaling", "surge"],
)
def test_socket_mode_refuses_more_sockets_than_slack_allows(
    chart: Path, bot: dict[str, Any], expected: str
) -> None:
    message = refusal(chart, merged(REQUIRED, SOCKET, {"bot": bot}))
    assert "Slack Socket Mode" in message and expected in message
    if expected == "at most 4":
        assert "bot.workers" in message  # how to scale answers instead


def test_socket_mode_takes_four_replicas_and_http_mode_any_number(chart: Path) -> None:
    four = render(chart, merged(REQUIRED, SOCKET, {"bot": {"replicas": 4}}))
    assert four.bot["spec"]["replicas"] == 4
    assert "bot.workers" in four.notes  # how to scale answers instead
    http = merged(REQUIRED, SOCKET, {"slack": {"mode": "http"}, "bot": {"replicas": 12}})
    assert render(chart, http).bot["spec"]["replicas"] == 12


# --- migrations ----------------------------------------------------------------------------


def test_the_migration_hook_runs_before_install_and_upgrade_on_what_exists_already(
    chart: Path,
) -> None:
    result = render(chart, merged(REQUIRED, {"migrations": {"mode": "hook"}}))
    [job] = result.migration_jobs()
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation"
    c = container(job, "migrate")
    assert c["command"] == ["chatbot", "db", "upgrade"]
    # At pre-install nothing of the release exists: no ConfigMap, no ServiceAccount of it.
    assert "envFrom" not in c
    assert "serviceAccountName" not in job["spec"]["template"]["spec"]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in c["env"] if "valueFrom" in e} == {
        "chatbot-database"
    }
    assert "initContainers" not in result.bot["spec"]["template"]["spec"]


def test_a_plain_migration_job_per_revision_and_pods_waiting_for_the_database(
    chart: Path,
) -> None:
    values = merged(REQUIRED, {"migrations": {"mode": "job"}})
    first, second = render(chart, values, revision=1), render(chart, values, revision=2)
    [job1], [job2] = first.migration_jobs(), second.migration_jobs()
    assert "helm.sh/hook" not in job1["metadata"].get("annotations", {})
    assert job1["metadata"]["name"] != job2["metadata"]["name"]  # a Job's pod is immutable
    init = container(first.bot, "migrate")
    assert init["command"] == ["chatbot", "db", "upgrade"]
    startup = render(chart, merged(REQUIRED, {"migrations": {"mode": "startup"}}))
    assert startup.migration_jobs() == []
    assert container(startup.bot, "migrate")["command"] == ["chatbot", "db", "upgrade"]


def test_the_hook_cannot_be_used_with_the_deps_database(chart: Path) -> None:
    deps = {"deps": {"enabled": True, "existingSecret": "d"}, "migrations": {"mode": "hook"}}
    assert "migrations.mode=job" in refusal(chart, deps)


# --- refused values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"bot": {"replica": 3}}, "replica"),
        ({"bot": {"replicas": "two"}}, "replicas"),
        ({"image": {"tag": "latest"}}, "tag"),
        ({"slack": {"mode": "websocket"}}, "mode"),
        ({"config": {"OLAMA_MODEL": "x"}}, "OLAMA_MODEL"),
        ({"config": {"REDIS_URL": "redis://r"}}, "REDIS_URL"),
        ({"config": {"SUGGESTED_PROMPTS": ["a", "b", "c", "d", "e"]}}, "SUGGESTED_PROMPTS"),
        ({"config": {"LOG_FORMAT": "xml"}}, "LOG_FORMAT"),
        ({"migrations": {"mode": "always"}}, "mode"),
        ({"redis": {"url": "http://redis"}}, "url"),
        ({"ollama": {"urls": ["http://a:11434,http://b:11434"]}}, "urls"),
        ({"slack": {"existingSecret": "Not_A_Name"}}, "existingSecret"),
        (
            {
                "deps": {"enabled": True, "existingSecret": "d", "ollama": {"gpu": {"count": 0}}},
                "migrations": {"mode": "job"},
            },
            "count",
        ),
    ],
)
def test_the_schema_refuses_bad_values(chart: Path, values: dict[str, Any], expected: str) -> None:
    if "deps" not in values:  # the deps subchart's schema applies when it is on
        with pytest.raises(helm.HelmValuesError) as caught, helm.Chart.load(chart) as loaded:
            loaded.validate_schema(merged(REQUIRED, values))
        assert expected in str(caught.value)
    assert expected in refusal(chart, merged(REQUIRED, values))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"redis": {"url": "redis://:hunter2@redis:6379/0"}}, "redis.existingSecret"),
        (
            {"postgres": {"existingSecret": "", "url": "postgresql://u:pw@db/chatbot"}},
            "postgres.existingSecret",
        ),
        ({"slack": {"enabled": True}}, "slack.existingSecret"),
        (
            {"teams": {"enabled": True, "existingSecret": "t", "appType": "SingleTenant"}},
            "teams.tenantId",
        ),
        ({"config": {"KNOWLEDGE_SOURCES": "https://wiki"}}, "qdrant.url"),
        ({"ingress": {"enabled": True, "host": "bot.example.com"}}, "nothing to publish"),
        ({"bot": {"strategy": {"maxSurge": 0, "maxUnavailable": 0}}}, "both be 0"),
        # A duplicate env name is an error under Helm 4's server-side apply.
        ({"bot": {"extraEnv": [{"name": "REDIS_URL", "value": "redis://x"}]}}, "REDIS_URL"),
        ({"bot": {"extraEnv": [{"name": "LOG_FORMAT", "value": "text"}]}}, "config.LOG_FORMAT"),
        ({"deps": {"enabled": True}, "migrations": {"mode": "job"}}, "deps.existingSecret"),
        (
            {
                "deps": {"enabled": True, "existingSecret": "d", "ollama": {"models": ["llama3"]}},
                "migrations": {"mode": "job"},
            },
            "codellama:7b",
        ),
    ],
)
def test_values_that_cannot_work_are_refused_with_what_to_do(
    chart: Path, values: dict[str, Any], expected: str
) -> None:
    assert expected in refusal(chart, merged(REQUIRED, values))


def test_the_defaults_alone_say_what_to_set(chart: Path) -> None:
    message = refusal(chart, {})
    assert "redis.url or redis.existingSecret" in message and "deps.enabled" in message


def test_no_password_anywhere_and_no_secret_generated(chart: Path) -> None:
    for path in CI_VALUES:
        result = render(chart, ci_values(path))
        assert result.of_kind("Secret") == []
        for workload in workloads(result):
            for c in all_containers(workload):
                for item in c.get("env", []):
                    value = str(item.get("value", ""))
                    assert not re.search(r"://[^/@$]*:[^/@$(]+@", value), (item["name"], value)
        # The NOTES name every Secret the pods read.
        referenced = {
            item["valueFrom"]["secretKeyRef"]["name"]
            for workload in workloads(result)
            for c in all_containers(workload)
            for item in c.get("env", [])
            if "secretKeyRef" in item.get("valueFrom", {})
        }
        assert referenced and all(name in result.notes for name in referenced), referenced
    templates = "".join(p.read_text() for p in CHART.rglob("templates/*"))
    assert "lookup" not in templates and "randAlphaNum" not in templates


# --- golden render and docs ----------------------------------------------------------------


def test_golden_render_of_the_default_values(chart: Path) -> None:
    """The chart's defaults plus the three values every install must set."""
    result = render(chart, REQUIRED)
    text = "".join(
        f"---\n# Source: {path}\n{result.text[path].strip()}\n"
        for path in sorted(result.by_template)
    )
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text)
    assert GOLDEN.is_file(), "no golden render: run with UPDATE_GOLDEN=1 once"
    assert text == GOLDEN.read_text(), (
        "the default render changed; if intended, run "
        "UPDATE_GOLDEN=1 pytest tests/project/test_chart.py -k golden"
    )


def _leaves(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix


def test_the_chart_readme_lists_every_value() -> None:
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, re.MULTILINE))
    names = [
        leaf
        for leaf in _leaves(yaml.safe_load((CHART / "values.yaml").read_text()))
        if not leaf.startswith(("config.", "deps."))
    ]
    names += [
        "deps." + leaf for leaf in _leaves(yaml.safe_load((DEPS_CHART / "values.yaml").read_text()))
    ]
    schema = json.loads((CHART / "values.schema.json").read_text())
    names += ["config." + name for name in schema["properties"]["config"]["properties"]]
    undocumented = [
        name for name in names if not any(name == d or name.startswith(d + ".") for d in documented)
    ]
    assert not undocumented, f"values missing from charts/chatbot/README.md: {undocumented}"


# --- the rendered pod, run -----------------------------------------------------------------


@pytest.fixture
async def ollama() -> AsyncIterator[FakeOllama]:
    async with FakeOllama(models=["codellama:7b"]) as fake:
        yield fake


async def _get(url: str) -> int:
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            return resp.status
    except aiohttp.ClientError:
        return 0


async def _until(url: str, status: int, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    while (got := await _get(url)) != status:
        assert loop.time() < deadline, f"{url} answered {got}, not {status}"
        await asyncio.sleep(0.1)


async def _run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode()


async def test_the_rendered_job_and_bot_container_run_probe_and_stop_in_time(
    chart: Path, tmp_path: Path, redis_url: str, postgres_schema_url: str, ollama: FakeOllama
) -> None:
    """The migration Job's and the bot container's command and environment, exactly as
    rendered, run as processes: the Job migrates, the probes' paths answer on the probes'
    port, and on SIGTERM the bot exits well within the grace period (less the preStop)."""
    values = merged(
        {
            "redis": {"existingSecret": "chatbot-redis"},
            "postgres": {"existingSecret": "chatbot-database"},
            "ollama": {"urls": [ollama.url]},
            "bot": {"port": free_port(), "workers": 2, "shutdownGraceSeconds": 3},
            "migrations": {"mode": "hook"},
        }
    )
    result = render(chart, values)
    secrets = {
        "chatbot-redis": {"REDIS_URL": redis_url},
        "chatbot-database": {"DATABASE_URL": postgres_schema_url},
    }
    image_env = {
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
        "HOME": str(tmp_path),
    }  # the image sets these

    [job] = result.migration_jobs()
    migrate = container(job, "migrate")
    code, out = await _run(
        migrate["command"], {**image_env, **pod_env(result, migrate, secrets)}, tmp_path
    )
    assert code == 0 and "database is up to date" in out, out

    bot = result.bot_container
    pod = result.bot["spec"]["template"]["spec"]
    env = {**image_env, **pod_env(result, bot, secrets)}
    proc = await asyncio.create_subprocess_exec(
        *bot["command"],
        *bot["args"],
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        port = {p["name"]: p["containerPort"] for p in bot["ports"]}
        loop = asyncio.get_running_loop()
        start = bot["startupProbe"]
        deadline = loop.time() + min(start["periodSeconds"] * start["failureThreshold"], 60)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = bot[probe]["httpGet"]
            await _until(f"http://127.0.0.1:{port[get['port']]}{get['path']}", 200, deadline)
        proc.send_signal(signal.SIGTERM)
        budget = (
            pod["terminationGracePeriodSeconds"] - bot["lifecycle"]["preStop"]["sleep"]["seconds"]
        )
        assert await asyncio.wait_for(proc.wait(), timeout=budget) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_the_deps_subchart_runs_the_images_docker_compose_pins() -> None:
    """One version of each service for both ways of trying the bot out."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    deps = yaml.safe_load((DEPS_CHART / "values.yaml").read_text())
    for service in ("redis", "postgres", "qdrant", "ollama"):
        image = deps[service]["image"]
        assert f"{image['repository']}:{image['tag']}" == compose[service]["image"], service
