"""deploy/kubernetes/, checked offline: rendered, validated strictly, and read for meaning.

``kubectl kustomize`` renders the base and the ``replicas-redis`` overlay;
``kubernetes-validate --strict`` checks every built-in kind against the
Kubernetes schemas (the oldest and newest versions it ships); the
ServiceMonitor, a prometheus-operator CRD it has no schema for, is checked
against that CRD's models (cloudcoil-models-prometheus-operator, generated
from it), strictly: a field the CRD does not have fails. Both validators are
first shown to reject a bad field, so a pass means something.

Then what the schemas cannot see: probes and the scrape point at the routes
the service has, on the port its config listens on; the pod runs non-root
on a read-only root; the ConfigMap's config loads with router-health's own
loader given the Secret's keys; no real key is committed; and the rendered
pod's command, environment and mounts serve that config for real (its
providers pointed at the simulator): probes answer, Prometheus's token reads
/metrics, storage writes to the state volume, SIGTERM exits 0 in time.

Skipped without kubectl or the validators; under ``CI=true`` a failure instead.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import yaml

from service import ConfigError, load_config
from service.config import dump_toml
from service.testing.simulator import Behavior, SimProvider, Simulator
from tests.support import ROOT
from tests.support.cli import read_stdout_until

KUBERNETES = ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAY = KUBERNETES / "overlays" / "replicas-redis"
PLACEHOLDER = "REPLACE-ME"
#: A token and keys as a user's keys.env would hold them (grepped for by `make test`).
TOKEN = "rhtesttoken-k8s-5f0c2a9b7e1d"
KEYS = {
    "ROUTER_HEALTH_TOKEN": TOKEN,
    "OPENAI_API_KEY": "rhtestkey-k8s-openai-31c7",
    "ANTHROPIC_API_KEY": "rhtestkey-k8s-anthropic-8d2e",
    "REDIS_PASSWORD": "rhtestkey-k8s-redis-64a1",
}
#: kubernetes-validate's schema versions: the oldest it ships and the newest.
KUBERNETES_VERSIONS = ("1.25.0", None)
SCHEMALESS = {"ServiceMonitor"}


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} — CI must validate the Kubernetes manifests")
    pytest.skip(f"{reason} — the Kubernetes manifests are not validated here (CI fails instead)")


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        _missing("kubectl is missing (Debian's kubectl package, or kubernetes-client)")
    return str(found)


def validator() -> str:
    found = shutil.which("kubernetes-validate", path=str(Path(sys.executable).parent))
    if found is None:
        _missing("kubernetes-validate is missing (pip install -e '.[dev]')")
    return str(found)


def render(directory: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return render(BASE)


@pytest.fixture(scope="module")
def overlay() -> list[dict[str, Any]]:
    return render(OVERLAY)


def named(doc: dict[str, Any], name: str) -> bool:
    """``doc`` is ``name``, or was generated from it (kustomize appends a content hash)."""
    actual = str(doc["metadata"]["name"])
    generated = doc["kind"] in ("ConfigMap", "Secret")
    return actual == name or (generated and actual.rpartition("-")[0] == name)


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or named(d, name))]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def container(docs: list[dict[str, Any]], deployment: str = "router-health") -> dict[str, Any]:
    [only] = one(docs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return dict(only)


def secret_values(docs: list[dict[str, Any]]) -> dict[str, str]:
    data = one(docs, "Secret", "router-health-keys").get("data", {})
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def config_text(docs: list[dict[str, Any]]) -> str:
    configmap = one(docs, "ConfigMap", "router-health-config")
    return str(configmap["data"]["router-health.toml"])


def write_docs(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
    return path


# -- validation against the schemas --------------------------------------------------


def kubernetes_validate(path: Path, version: str | None) -> tuple[int, str]:
    args = [validator(), "--strict", *(["-k", version] if version else []), str(path)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout + done.stderr


def schema_checked(docs: list[dict[str, Any]], tmp_path: Path, version: str | None) -> None:
    code, output = kubernetes_validate(write_docs(tmp_path / "rendered.yaml", docs), version)
    assert code == 0, output
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind in SCHEMALESS:
            assert f"Couldn't find schema for kind {kind}" in output, output
        else:
            assert f"passed for resource {kind.lower()}/{name}" in output, output


def unknown_fields(given: Any, kept: Any, path: str = "") -> Iterator[str]:
    """Fields of ``given`` the model dropped (pydantic ignores what it does not know)."""
    if isinstance(given, dict):
        for key, value in given.items():
            if not isinstance(kept, dict) or key not in kept:
                yield f"{path}.{key}"
            else:
                yield from unknown_fields(value, kept[key], f"{path}.{key}")
    elif isinstance(given, list):
        for index, (value, other) in enumerate(zip(given, kept, strict=True)):
            yield from unknown_fields(value, other, f"{path}[{index}]")


def servicemonitor_problems(doc: dict[str, Any]) -> list[str]:
    """The ServiceMonitor against prometheus-operator's CRD (its generated models), strictly."""
    try:
        from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor
    except ImportError:
        _missing("cloudcoil-models-prometheus-operator is missing (pip install -e '.[dev]')")
    from pydantic import ValidationError

    try:
        model = ServiceMonitor.model_validate(doc)
    except ValidationError as exc:
        return [str(exc)]
    kept = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return [f"{field}: not in the ServiceMonitor CRD" for field in unknown_fields(doc, kept)]


def test_the_validators_reject_an_unknown_field(
    base: list[dict[str, Any]], tmp_path: Path
) -> None:
    deployment = one(base, "Deployment")
    bad = {**deployment, "spec": {**deployment["spec"], "replicaz": 2}}
    code, output = kubernetes_validate(write_docs(tmp_path / "bad.yaml", [bad]), None)
    assert code != 0 and "replicaz" in output, output

    monitor = one(base, "ServiceMonitor")
    endpoint = {**monitor["spec"]["endpoints"][0], "bearerTokenSecrett": {"name": "x"}}
    bad = {**monitor, "spec": {**monitor["spec"], "endpoints": [endpoint]}}
    assert servicemonitor_problems(bad) == [
        ".spec.endpoints[0].bearerTokenSecrett: not in the ServiceMonitor CRD"
    ]
    bad = {**monitor, "spec": {**monitor["spec"], "endpoints": [{"port": 8000}]}}
    assert servicemonitor_problems(bad), "a number where the CRD wants a port name"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS, ids=lambda v: v or "latest")
def test_the_base_renders_and_validates_strictly(
    base: list[dict[str, Any]], tmp_path: Path, version: str | None
) -> None:
    assert sorted(d["kind"] for d in base) == [
        "ConfigMap", "Deployment", "Secret", "Service", "ServiceMonitor",
    ]
    schema_checked(base, tmp_path, version)
    assert servicemonitor_problems(one(base, "ServiceMonitor")) == []


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS, ids=lambda v: v or "latest")
def test_the_redis_overlay_renders_and_validates_strictly(
    overlay: list[dict[str, Any]], tmp_path: Path, version: str | None
) -> None:
    assert sorted((d["kind"], d["metadata"]["name"][:19]) for d in overlay) == [
        ("ConfigMap", "router-health-confi"),
        ("Deployment", "router-health"),
        ("Deployment", "router-health-redis"),
        ("NetworkPolicy", "router-health-redis"),
        ("PodDisruptionBudget", "router-health"),
        ("Secret", "router-health-keys-"),
        ("Service", "router-health"),
        ("Service", "router-health-redis"),
        ("ServiceMonitor", "router-health"),
    ]
    schema_checked(overlay, tmp_path, version)
    assert servicemonitor_problems(one(overlay, "ServiceMonitor")) == []


# -- what the schemas cannot see -----------------------------------------------------


def loaded(docs: list[dict[str, Any]], tmp_path: Path, **env: str) -> Any:
    """The ConfigMap's config through router-health's loader, the Secret's keys as env."""
    path = tmp_path / "router-health.toml"
    path.write_text(config_text(docs), encoding="utf-8")
    return load_config(path, env={**secret_values(docs), **env})


def test_the_configs_load_with_the_keys_a_user_sets_and_refuse_the_placeholders(
    base: list[dict[str, Any]], overlay: list[dict[str, Any]], tmp_path: Path
) -> None:
    config = loaded(base, tmp_path, ROUTER_HEALTH_TOKEN=TOKEN)
    assert config.checks.background_enabled and config.storage.active(True)
    assert config.cluster is None
    assert config.server.auth_token is not None and config.server.auth_token.reveal() == TOKEN
    # Applied as committed, the pod refuses to start: no known token ever guards /metrics.
    with pytest.raises(ConfigError, match="auth_token_env: the token in ROUTER_HEALTH_TOKEN"):
        loaded(base, tmp_path)

    url = "redis://:pw@router-health-redis:6379/0"
    clustered = loaded(overlay, tmp_path, ROUTER_HEALTH_TOKEN=TOKEN, ROUTER_HEALTH_REDIS_URL=url)
    assert clustered.cluster is not None and clustered.cluster.redis_url.reveal() == url


def test_the_overlay_config_is_the_base_config_plus_cluster(
    base: list[dict[str, Any]], overlay: list[dict[str, Any]]
) -> None:
    base_doc = tomllib.loads(config_text(base))
    overlay_doc = tomllib.loads(config_text(overlay))
    assert overlay_doc.pop("cluster")["redis_url_env"] == "ROUTER_HEALTH_REDIS_URL"
    assert overlay_doc == base_doc


@pytest.mark.parametrize("which", ["base", "overlay"])
def test_probes_scrape_and_service_point_at_the_served_routes_and_port(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    docs = request.getfixturevalue(which)
    config = loaded(docs, tmp_path, ROUTER_HEALTH_TOKEN=TOKEN, ROUTER_HEALTH_REDIS_URL="redis://r")
    main = container(docs)
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"http": config.server.port}
    assert config.server.host == "0.0.0.0"  # the pod's address, not its loopback
    probes = {
        kind: (main[kind]["httpGet"]["path"], main[kind]["httpGet"]["port"])
        for kind in ("livenessProbe", "readinessProbe", "startupProbe")
    }
    assert probes == {
        "livenessProbe": ("/livez", "http"),
        "readinessProbe": ("/readyz", "http"),
        "startupProbe": ("/livez", "http"),
    }
    service = one(docs, "Service", "router-health")
    pod_labels = one(docs, "Deployment", "router-health")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert [(p["name"], p["targetPort"]) for p in service["spec"]["ports"]] == [("http", "http")]

    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    secret = one(docs, "Secret", "router-health-keys")["metadata"]["name"]
    assert endpoint["authorization"]["credentials"] == {
        "name": secret, "key": config.server.auth_token_env,
    }
    assert main["envFrom"] == [{"secretRef": {"name": secret}}]
    # terminationGracePeriodSeconds outlasts the config's shutdown_grace: SIGTERM drains.
    grace = one(docs, "Deployment", "router-health")["spec"]["template"]["spec"]
    assert grace["terminationGracePeriodSeconds"] > config.server.shutdown_grace


@pytest.mark.parametrize("which", ["base", "overlay"])
def test_every_pod_runs_non_root_on_a_read_only_root_without_privileges(
    which: str, request: pytest.FixtureRequest
) -> None:
    docs = request.getfixturevalue(which)
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for each in pod["containers"]:
            context = each["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context.get("privileged", False) is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert "memory" in each["resources"]["limits"]
            assert each["resources"]["requests"]


def mounts(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mount path -> the volume mounted there, for router-health's container."""
    volumes = {
        v["name"]: v
        for v in one(docs, "Deployment", "router-health")["spec"]["template"]["spec"]["volumes"]
    }
    return {m["mountPath"]: volumes[m["name"]] for m in container(docs)["volumeMounts"]}


def test_config_and_state_are_the_mounted_volumes(
    base: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {e["name"]: e["value"] for e in container(base)["env"]}
    mounted = mounts(base)
    config_dir, _, key = env["ROUTER_HEALTH_CONFIG"].rpartition("/")
    assert mounted[config_dir]["configMap"]["name"] == one(base, "ConfigMap")["metadata"]["name"]
    assert key in one(base, "ConfigMap")["data"]
    # [storage] (on: background checks run) writes under XDG_STATE_HOME: on an emptyDir,
    # the image's state directory.
    monkeypatch.setenv("XDG_STATE_HOME", env["XDG_STATE_HOME"])
    config = loaded(base, tmp_path, ROUTER_HEALTH_TOKEN=TOKEN)
    state_dir, _, database = config.storage.path.rpartition("/")
    assert (state_dir, database) == ("/var/lib/router-health", "health.db")
    assert "emptyDir" in mounted[state_dir]
    # Python's own scratch space is writable too; nothing else is.
    assert set(mounted) == {config_dir, state_dir, "/tmp"}


def test_the_overlay_shares_checks_through_its_redis(overlay: list[dict[str, Any]]) -> None:
    deployment = one(overlay, "Deployment", "router-health")
    assert deployment["spec"]["replicas"] > 1
    env = {e["name"]: e.get("value") for e in container(overlay)["env"]}
    redis_service = one(overlay, "Service", "router-health-redis")
    [port] = redis_service["spec"]["ports"]
    # The URL's password comes from the Secret (envFrom first, then $(...) expands it).
    assert env["ROUTER_HEALTH_REDIS_URL"] == (
        f"redis://:$(REDIS_PASSWORD)@{redis_service['metadata']['name']}:{port['port']}/0"
    )
    assert "REDIS_PASSWORD" in secret_values(overlay)
    redis_pod = one(overlay, "Deployment", "router-health-redis")["spec"]["template"]
    assert redis_service["spec"]["selector"].items() <= redis_pod["metadata"]["labels"].items()
    [redis_container] = redis_pod["spec"]["containers"]
    assert "$(REDIS_PASSWORD)" in redis_container["args"]
    assert {p["name"]: p["containerPort"] for p in redis_container["ports"]} == {
        port["targetPort"]: port["port"]
    }
    # Only router-health's pods reach it.
    policy = one(overlay, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= redis_pod["metadata"]["labels"].items()
    [rule] = policy["ingress"]
    [source] = rule["from"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert source["podSelector"]["matchLabels"].items() <= pod_labels.items()


def test_only_placeholders_are_committed(
    base: list[dict[str, Any]], overlay: list[dict[str, Any]]
) -> None:
    for docs in (base, overlay):
        assert set(secret_values(docs).values()) == {PLACEHOLDER}
    if (ROOT / ".git").exists() and shutil.which("git"):
        def git(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=60)

        tracked = git("ls-files", "--", "deploy").stdout.split()
        assert not [path for path in tracked if path.endswith("keys.env")]
        # A user's keys.env, in the overlay the docs suggest, stays out of git.
        ignored = git("check-ignore", "-q", "deploy/kubernetes/overlays/production/keys.env")
        assert ignored.returncode == 0


def test_a_users_overlay_replaces_the_keys_and_sets_the_image(tmp_path: Path) -> None:
    """The recipe docs/deployment.md gives: an overlay of one's own with keys.env and an image."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keys.env").write_text(
        "".join(f"{key}={value}\n" for key, value in KEYS.items()), encoding="utf-8"
    )
    (mine / "kustomization.yaml").write_text(
        yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": "router-health",
            "resources": [os.path.relpath(OVERLAY, mine)],
            "secretGenerator": [
                {"name": "router-health-keys", "behavior": "replace", "envs": ["keys.env"]}
            ],
            "images": [{
                "name": "router-health",
                "newName": "registry.example.com/router-health",
                "newTag": "0.1.0",
            }],
        }),
        encoding="utf-8",
    )
    docs = render(mine)
    assert secret_values(docs) == KEYS
    secret = one(docs, "Secret")["metadata"]["name"]
    assert container(docs)["envFrom"] == [{"secretRef": {"name": secret}}]
    monitor = one(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    assert monitor["authorization"]["credentials"]["name"] == secret
    assert container(docs)["image"] == "registry.example.com/router-health:0.1.0"
    assert {d["metadata"].get("namespace") for d in docs} == {"router-health"}


def test_the_base_image_is_the_one_the_dockerfile_builds(base: list[dict[str, Any]]) -> None:
    assert container(base)["image"] == "router-health:latest"


# -- the rendered pod, run for real ------------------------------------------------------


async def test_the_rendered_pod_command_serves_probes_and_metrics(
    base: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The Deployment's command, env and mounts (mount paths moved under tmp_path) run the
    ConfigMap's config, its providers pointed at the simulator, with a user's keys."""
    main = container(base)
    root = tmp_path / "pod"
    for path in mounts(base):
        (root / path.lstrip("/")).mkdir(parents=True)

    def moved(value: str) -> str:
        return str(root / value.lstrip("/")) if value.startswith("/") else value

    env = {
        "PATH": os.environ["PATH"],
        "PYTHONUNBUFFERED": "1",
        **{key: value for key, value in KEYS.items() if key != "REDIS_PASSWORD"},
        **{e["name"]: moved(e["value"]) for e in main["env"]},
    }
    document = tomllib.loads(config_text(base))
    providers = [p for m in document["models"] for p in m["providers"]]
    command = [str(Path(sys.executable).parent / main["command"][0]), *main["command"][1:]]
    async with trio.open_nursery() as nursery:
        sim = Simulator([
            SimProvider(p["name"], p["type"], KEYS[p["api_key_env"]],
                        [p.get("model", m["name"])], Behavior(latency=0.01))
            for m in document["models"] for p in m["providers"]
        ])
        await nursery.start(sim.serve)
        for provider in providers:
            provider["base_url"] = sim.base_url(provider["name"])
        await trio.Path(env["ROUTER_HEALTH_CONFIG"]).write_text(
            dump_toml(document), encoding="utf-8"
        )
        process = await trio.lowlevel.open_process(
            [*command, "--host", "127.0.0.1", "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
        )
        try:
            with trio.fail_after(30):
                banner = await read_stdout_until(
                    process, lambda out: b"serving on" in out and out.endswith(b"\n")
                )
            url = banner.decode().split("serving on", 1)[1].split()[0]
            async with httpx.AsyncClient(base_url=url) as client:
                for probe in ("livenessProbe", "readinessProbe"):
                    answer = await client.get(main[probe]["httpGet"]["path"])
                    assert answer.status_code == 200, answer.text
                headers = {"Authorization": f"Bearer {TOKEN}"}
                checked = await client.get("/v1/health/", headers=headers)
                assert checked.json()["status"] == "healthy", checked.text
                path = one(base, "ServiceMonitor")["spec"]["endpoints"][0]["path"]
                assert (await client.get(path)).status_code == 401
                scraped = await client.get(path, headers=headers)
                assert scraped.status_code == 200
                for model, provider in (("gpt-4o-mini", "openai"), ("claude-3-5-haiku", "anthropic")):
                    up = f'router_health_adapter_up{{model="{model}",provider="{provider}"}} 1.0'
                    assert up in scraped.text
            assert (root / "var/lib/router-health/health.db").is_file()
            grace = one(base, "Deployment")["spec"]["template"]["spec"]
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(grace["terminationGracePeriodSeconds"]):
                assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        nursery.cancel_scope.cancel()
