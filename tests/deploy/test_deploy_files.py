"""The files under deploy/, checked statically (no Docker engine or cluster is needed).

Every YAML and JSON file parses. The compose file has every service of the deployment,
and each Atelier service names every required setting and only settings that
``app/config.py`` knows. The Kubernetes objects have the kinds, probes, ports and
non-root security contexts the deployment relies on. The Dockerfile is multi-stage,
non-root, with a health check and no editable or dev install. nginx passes the
websocket upgrade to both gateways without sticky sessions. Prometheus scrapes the
ports that ``app/config.py``'s defaults say. Every metric the Grafana dashboard queries
exists in ``app/observability/metrics.py``'s registry. docs/operations.md names every
deploy file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import VARIABLES
from app.observability.metrics import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"

REQUIRED = ("DATABASE_URL", "REDIS_URL", "APP_SECRET", "APP_ENV")
MIN_SECRET_BYTES = 32

# Atelier command -> the setting naming the port its /metrics and /healthz answer on.
PORT_SETTING = {
    "serve": "APP_PORT",
    "relay": "RELAY_METRICS_PORT",
    "snapshotter": "SNAPSHOTTER_METRICS_PORT",
    "worker": "WORKER_METRICS_PORT",
}
# compose service -> the command it runs
COMPOSE_APP_SERVICES = {
    "migrate": "migrate",
    "gateway-1": "serve",
    "gateway-2": "serve",
    "relay": "relay",
    "worker-1": "worker",
    "worker-2": "worker",
    "snapshotter": "snapshotter",
}
COMPOSE_OTHER_SERVICES = ("postgres", "redis", "nginx", "prometheus", "grafana")
# Kubernetes component -> the command its Deployment runs
K8S_DEPLOYMENTS = {
    "gateway": "serve",
    "relay": "relay",
    "worker": "worker",
    "snapshotter": "snapshotter",
}


def default_port(command: str) -> int:
    default = VARIABLES[PORT_SETTING[command]][0]
    assert default is not None
    return int(default)


def load_yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def load_yaml(path: Path) -> Any:
    docs = load_yaml_docs(path)
    assert len(docs) == 1, f"{path} should hold one YAML document"
    return docs[0]


# ---------------------------------------------------------------------------------
# Everything parses
# ---------------------------------------------------------------------------------

YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"})
JSON_FILES = sorted(DEPLOY.rglob("*.json"))


def test_the_deploy_files_exist() -> None:
    for name in (
        "Dockerfile",
        "Dockerfile.dockerignore",
        "healthcheck.py",
        "compose.yaml",
        "env.example",
        "nginx.conf",
        "prometheus.yml",
        "grafana/provisioning/datasources/prometheus.yaml",
        "grafana/provisioning/dashboards/atelier.yaml",
        "grafana/dashboards/atelier.json",
        "k8s/kustomization.yaml",
    ):
        assert (DEPLOY / name).is_file(), f"deploy/{name} is missing"


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    docs = load_yaml_docs(path)
    assert docs, f"{path} holds no YAML document"
    for doc in docs:
        assert isinstance(doc, dict), f"{path}: a document is not a mapping"


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_json_parses(path: Path) -> None:
    assert isinstance(json.loads(path.read_text()), dict)


# ---------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------


def check_settings(where: str, env: dict[str, Any]) -> None:
    """``env`` names every required setting, only known ones, and is not dev."""
    missing = [name for name in REQUIRED if name not in env]
    assert not missing, f"{where} does not set {missing}"
    unknown = sorted(set(env) - set(VARIABLES))
    assert not unknown, f"{where} sets {unknown}, which app/config.py does not know"
    assert str(env["APP_ENV"]) != "dev", f"{where} runs with APP_ENV=dev"


def test_check_settings_catches_a_missing_or_unknown_setting() -> None:
    good = {"DATABASE_URL": "x", "REDIS_URL": "x", "APP_SECRET": "x", "APP_ENV": "production"}
    check_settings("good", good)
    for bad in (
        {k: v for k, v in good.items() if k != "APP_SECRET"},
        {**good, "APP_SECRETS": "x"},
        {**good, "APP_ENV": "dev"},
    ):
        with pytest.raises(AssertionError):
            check_settings("bad", bad)


# ---------------------------------------------------------------------------------
# Docker Compose
# ---------------------------------------------------------------------------------

COMPOSE_TEXT = (DEPLOY / "compose.yaml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, Any] = COMPOSE["services"]


def command_words(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else [str(w) for w in command]


def test_compose_has_every_service() -> None:
    missing = sorted((set(COMPOSE_APP_SERVICES) | set(COMPOSE_OTHER_SERVICES)) - set(SERVICES))
    assert not missing, f"compose.yaml lacks {missing}"


@pytest.mark.parametrize("name", sorted(COMPOSE_APP_SERVICES))
def test_compose_app_service(name: str) -> None:
    service = SERVICES[name]
    assert command_words(service) == [COMPOSE_APP_SERVICES[name]]
    build = service["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (
        DEPLOY / "Dockerfile"
    ).resolve()
    env = service["environment"]
    assert isinstance(env, dict), f"{name}: environment should be a mapping"
    check_settings(f"compose service {name}", env)
    # The secret comes from deploy/.env or the shell, required, never a default.
    assert str(env["APP_SECRET"]).startswith("${APP_SECRET:?"), env["APP_SECRET"]
    assert env["APP_HOST"] == "0.0.0.0" and env["METRICS_HOST"] == "0.0.0.0"
    command = COMPOSE_APP_SERVICES[name]
    if command in PORT_SETTING:
        port = PORT_SETTING[command]
        assert int(env.get(port, default_port(command))) == default_port(command)
    if name != "migrate":
        after = service["depends_on"]["migrate"]["condition"]
        assert after == "service_completed_successfully"


def test_compose_migrate_runs_once() -> None:
    migrate = SERVICES["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_postgres_archives_wal_to_a_volume() -> None:
    postgres = SERVICES["postgres"]
    assert str(postgres["image"]).split(":")[1].startswith("15")
    words = command_words(postgres)
    assert "wal_level=replica" in words
    assert "archive_mode=on" in words
    archive = next(w for w in words if w.startswith("archive_command="))
    target = re.search(r"cp %p (\S+)/%f", archive)
    assert target, archive
    mounts = {m.split(":")[1]: m.split(":")[0] for m in postgres["volumes"]}
    assert mounts.get(target.group(1)) in COMPOSE["volumes"], "the WAL archive is not a volume"


def test_compose_redis_keeps_an_append_only_file() -> None:
    redis = SERVICES["redis"]
    assert str(redis["image"]).startswith("redis:7")
    words = command_words(redis)
    assert words[words.index("--appendonly") + 1] == "yes"
    assert words[words.index("--appendfsync") + 1] == "everysec"


def test_compose_mounts_files_that_exist() -> None:
    for name, service in SERVICES.items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"


def test_compose_dollars_are_interpolations_or_escaped() -> None:
    # `$@` for a shell must be written `$$@`, or compose tries to interpolate it.
    stray = re.findall(r"(?<!\$)\$(?![\${])", COMPOSE_TEXT.replace("$$", ""))
    assert not stray, f"unescaped $ in compose.yaml: {stray}"
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE_TEXT))
    example = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", read("env.example"), re.MULTILINE))
    assert used <= example, f"deploy/env.example does not mention {sorted(used - example)}"


# ---------------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------------


def read(name: str) -> str:
    return (DEPLOY / name).read_text()


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


DOCKERFILE = dockerfile_instructions(read("Dockerfile"))


def test_dockerfile_is_multi_stage_on_python_3_11_slim() -> None:
    args = dict(a.split("=", 1) for i, a in DOCKERFILE if i == "ARG" and "=" in a)
    images = [
        re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], a) for i, a in DOCKERFILE if i == "FROM"
    ]
    assert len(images) >= 2, images
    assert all(image.split()[0] == "python:3.11-slim" for image in images), images
    assert images[0].split()[-1] == "builder"
    runs = " ".join(a for i, a in DOCKERFILE if i == "RUN")
    assert "pip wheel" in runs and "--no-index" in runs


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [a for i, a in DOCKERFILE if i == "USER"]
    assert users, "no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, users[-1]


def test_dockerfile_has_a_healthcheck_and_the_entrypoint() -> None:
    healthchecks = [a for i, a in DOCKERFILE if i == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "healthcheck.py" in healthchecks[0]
    assert "curl" not in healthchecks[0]
    entry = [json.loads(a) for i, a in DOCKERFILE if i == "ENTRYPOINT"]
    cmd = [json.loads(a) for i, a in DOCKERFILE if i == "CMD"]
    assert entry[-1] == ["python", "-m", "app"]
    assert cmd[-1] == ["serve"]


def test_dockerfile_installs_no_dev_or_editable_package() -> None:
    runs = " ".join(a for i, a in DOCKERFILE if i == "RUN")
    assert not re.search(r"pip install[^&;]*(\s-e\s|--editable)", runs)
    assert "[dev]" not in runs


def test_dockerfile_copies_what_the_ignore_file_lets_through() -> None:
    ignore = [line.strip() for line in read("Dockerfile.dockerignore").splitlines()]
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore
    for instruction, args in DOCKERFILE:
        if instruction == "COPY" and "--from" not in args:
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such file"
                assert source.rstrip("/") in allowed, f"COPY {source} is ignored"


# ---------------------------------------------------------------------------------
# nginx
# ---------------------------------------------------------------------------------

NGINX = re.sub(r"#[^\n]*", "", read("nginx.conf"))


def nginx_block(text: str, header: str) -> str:
    """The body of the first ``header { ... }`` block (nested braces matched)."""
    start = text.index(header)
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    raise AssertionError(f"unclosed block {header}")


def directives(block: str) -> set[str]:
    return {" ".join(d.split()) for d in block.split(";")}


def test_nginx_upgrades_websockets() -> None:
    assert "map $http_upgrade $connection_upgrade" in NGINX
    ws = directives(nginx_block(NGINX, "location /ws/"))
    assert "proxy_set_header Upgrade $http_upgrade" in ws
    assert "proxy_set_header Connection $connection_upgrade" in ws
    assert "proxy_http_version 1.1" in directives(NGINX) | ws
    timeout = next(d for d in ws if d.startswith("proxy_read_timeout"))
    assert int(re.sub(r"\D", "", timeout)) >= 3600
    assert "proxy_set_header Host $host" in ws


def test_nginx_balances_both_gateways_without_sticky_sessions() -> None:
    upstream = nginx_block(NGINX, "upstream atelier_gateways")
    port = default_port("serve")
    servers = set(re.findall(r"server\s+(\S+?):(\d+)", upstream))
    assert servers == {("gateway-1", str(port)), ("gateway-2", str(port))}
    assert not re.search(r"\b(ip_hash|sticky|hash)\b", upstream)
    for location in ("location /ws/", "location /"):
        assert "http://atelier_gateways" in nginx_block(NGINX, location)


# ---------------------------------------------------------------------------------
# Prometheus
# ---------------------------------------------------------------------------------


def test_prometheus_scrapes_every_process_on_its_configured_port() -> None:
    config = load_yaml(DEPLOY / "prometheus.yml")
    targets = {
        target
        for job in config["scrape_configs"]
        if job.get("metrics_path", "/metrics") == "/metrics"
        for static in job["static_configs"]
        for target in static["targets"]
    }
    want = {
        f"{name}:{default_port(command)}"
        for name, command in COMPOSE_APP_SERVICES.items()
        if command in PORT_SETTING
    }
    assert want <= targets, f"not scraped: {sorted(want - targets)}"
    for target in targets - want:
        assert target.startswith("localhost:"), f"{target} is no Atelier process"


# ---------------------------------------------------------------------------------
# Grafana
# ---------------------------------------------------------------------------------

DASHBOARD = json.loads(read("grafana/dashboards/atelier.json"))

_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}


def exposed_names() -> set[str]:
    """Every series name the processes' registry exposes (unlabelled or not yet)."""
    return {
        family.name + suffix for family in REGISTRY.collect() for suffix in _SUFFIXES[family.type]
    }


_PROMQL_KEYWORDS = frozenset(
    [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
    ]
)


def promql_metrics(expr: str) -> set[str]:
    """The metric names an expression selects (functions, labels and keywords skipped)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\$\{?\w+\}?", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.:])[A-Za-z_:][\w:]*", text):
        rest = text[match.end() :].lstrip()
        if not rest.startswith("(") and match.group() not in _PROMQL_KEYWORDS:
            names.add(match.group())
    return names


def dashboard_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from dashboard_panels(panel.get("panels", []))


def dashboard_exprs() -> list[str]:
    return [
        target["expr"]
        for panel in dashboard_panels(DASHBOARD["panels"])
        for target in panel.get("targets", [])
    ]


def test_promql_metrics_finds_the_metric_names() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, code) (rate(atelier_x_bucket{code="4408",'
        'le!="a_b"}[$__rate_interval]))) / on (job) group_left max(up offset 5m) > 1e3'
    )
    assert promql_metrics(expr) == {"atelier_x_bucket", "up"}


def test_dashboard_queries_only_metrics_the_registry_has() -> None:
    exposed = exposed_names()
    used = set().union(*map(promql_metrics, dashboard_exprs()))
    unknown = sorted(used - exposed)
    assert not unknown, f"the dashboard queries metrics no process exposes: {unknown}"
    # The check has teeth: a name the registry lacks (or lacks the suffix of) is caught.
    assert "atelier_ops" not in exposed and "atelier_append_seconds" not in exposed
    assert "atelier_ops_total" in exposed and "atelier_append_seconds_bucket" in exposed


def test_dashboard_covers_the_issue_s_metrics() -> None:
    used = set().union(*map(promql_metrics, dashboard_exprs()))
    for name in (
        "atelier_ops_total",
        "atelier_append_seconds_bucket",
        "atelier_append_batch_size_sum",
        "atelier_version_conflicts_total",
        "atelier_relay_lag_events",
        "atelier_relay_lag_seconds",
        "atelier_ack_seconds_bucket",
        "atelier_ws_connections",
        "atelier_ws_send_queue_frames",
        "atelier_ws_closes_total",
        "atelier_ws_presence_expired_total",
        "atelier_relay_redis_errors_total",
        "atelier_redis_errors_total",
        "atelier_store_errors_total",
        "atelier_exclusive_appends_total",
        "atelier_ws_fanout_seconds_bucket",
        "atelier_ws_presence_updates_total",
        "atelier_rebuild_folded_events_total",
        "atelier_rebuild_fold_events",
        "atelier_worker_lag_events",
        "atelier_worker_lag_seconds",
        "atelier_worker_dead_letters_total",
    ):
        assert name in used, f"no panel shows {name}"
    assert any('code="4408"' in expr for expr in dashboard_exprs())
    per_shard = [e for e in dashboard_exprs() if re.search(r"by \([^)]*\bshard\b", e)]
    assert any("atelier_worker_lag_events" in e for e in per_shard), "no view lag per shard"


def test_dashboard_panels_are_well_formed() -> None:
    panels = list(dashboard_panels(DASHBOARD["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    datasource = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yaml")
    uids = {ds["uid"] for ds in datasource["datasources"]}
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert panel["datasource"]["uid"] in uids
        for target in panel["targets"]:
            assert promql_metrics(target["expr"]), f"{panel['title']!r}: no metric"


def test_grafana_provisioning_matches_the_compose_mounts() -> None:
    provider = load_yaml(DEPLOY / "grafana/provisioning/dashboards/atelier.yaml")
    path = provider["providers"][0]["options"]["path"]
    mounts = dict(m.split(":")[:2] for m in SERVICES["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == path
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    datasource = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yaml")
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


# ---------------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------------

KUSTOMIZATION = load_yaml(K8S / "kustomization.yaml")
K8S_OBJECTS = [doc for name in KUSTOMIZATION["resources"] for doc in load_yaml_docs(K8S / name)]


def objects(kind: str) -> list[dict[str, Any]]:
    return [obj for obj in K8S_OBJECTS if obj["kind"] == kind]


def named(kind: str, name: str) -> dict[str, Any]:
    found = [obj for obj in objects(kind) if obj["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def deployment(component: str) -> dict[str, Any]:
    return named("Deployment", f"atelier-{component}")


def test_kustomization_lists_every_manifest() -> None:
    listed = set(KUSTOMIZATION["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_k8s_has_every_kind() -> None:
    kinds = {obj["kind"] for obj in K8S_OBJECTS}
    for kind in (
        "Deployment",
        "Service",
        "Job",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ConfigMap",
        "Secret",
    ):
        assert kind in kinds, f"no {kind}"
    assert {obj["metadata"]["name"] for obj in objects("Deployment")} == {
        f"atelier-{c}" for c in K8S_DEPLOYMENTS
    }


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objects("Deployment") + objects("Job"):
        yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


def test_k8s_pods_run_as_non_root() -> None:
    for name, spec in pod_specs():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod.get("runAsUser", 1) != 0, name
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security.get("runAsUser", 1) != 0, name


def k8s_env(container: dict[str, Any]) -> dict[str, Any]:
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(named("ConfigMap", source["configMapRef"]["name"])["data"])
        if "secretRef" in source:
            secret = named("Secret", source["secretRef"]["name"])
            env.update(secret.get("stringData", {}), **secret.get("data", {}))
    env.update({item["name"]: item.get("value") for item in container.get("env", [])})
    return env


def test_k8s_containers_name_every_required_setting() -> None:
    for name, spec in pod_specs():
        for container in spec["containers"]:
            env = k8s_env(container)
            check_settings(f"{name}/{container['name']}", env)
            assert env["APP_HOST"] == "0.0.0.0" and env["METRICS_HOST"] == "0.0.0.0"
    job = named("Job", "atelier-migrate")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


def test_k8s_secret_placeholder_cannot_be_run() -> None:
    # A committed APP_SECRET too short for app/config.py: forgetting to replace it stops
    # every process with a message instead of signing tokens with a public key.
    secret = named("Secret", "atelier-secrets")["stringData"]["APP_SECRET"]
    assert len(secret.encode()) < MIN_SECRET_BYTES


@pytest.mark.parametrize("component", sorted(K8S_DEPLOYMENTS))
def test_k8s_deployment_probes(component: str) -> None:
    command = K8S_DEPLOYMENTS[component]
    (container,) = deployment(component)["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [command]
    port = default_port(command)
    env = k8s_env(container)
    assert int(env.get(PORT_SETTING[command], port)) == port
    assert port in {p["containerPort"] for p in container["ports"]}
    liveness = container["livenessProbe"]["httpGet"]
    assert (liveness["path"], liveness["port"]) == ("/healthz", port)
    if command == "serve":
        readiness = container["readinessProbe"]["httpGet"]
        assert (readiness["path"], readiness["port"]) == ("/readyz", port)


def pod_labels(component: str) -> dict[str, str]:
    labels: dict[str, str] = deployment(component)["spec"]["template"]["metadata"]["labels"]
    return labels


def test_k8s_selectors_match_their_pods() -> None:
    for obj in objects("Deployment"):
        selector = obj["spec"]["selector"]["matchLabels"]
        labels = obj["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), obj["metadata"]["name"]
    for service in objects("Service"):
        selector = service["spec"]["selector"]
        assert any(selector.items() <= pod_labels(c).items() for c in K8S_DEPLOYMENTS)
    pdb = named("PodDisruptionBudget", "atelier-gateway")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels("gateway").items()
    hpa = named("HorizontalPodAutoscaler", "atelier-gateway")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "atelier-gateway",
    }
    assert hpa["spec"]["minReplicas"] >= 2


def test_k8s_gateway_service_targets_the_http_port() -> None:
    service = named("Service", "atelier-gateway")
    (container,) = deployment("gateway")["spec"]["template"]["spec"]["containers"]
    names = {p["name"]: p["containerPort"] for p in container["ports"]}
    (port,) = service["spec"]["ports"]
    assert names[port["targetPort"]] == default_port("serve")
    assert "sessionAffinity" not in service["spec"] or service["spec"]["sessionAffinity"] == "None"


# ---------------------------------------------------------------------------------
# docs/operations.md
# ---------------------------------------------------------------------------------


def test_operations_doc_names_every_deploy_file() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    for heading in ("## Deploying", "### Docker Compose", "### Kubernetes"):
        assert heading in doc, f"docs/operations.md has no {heading!r}"
    for path in sorted(DEPLOY.rglob("*")):
        name = str(path.relative_to(DEPLOY))
        if path.is_file() and not re.search(r"(^|/)(\.|__pycache__)", name):
            assert name in doc, f"docs/operations.md does not mention deploy/{name}"
