"""The Helm chart (deploy/helm/ztgate), rendered by Helm's own engine and checked three ways.

1. Every manifest it renders, with its defaults and with each example values file, is valid
   for Kubernetes: checked against the API's schemas (kubernetes-validate, strict: an unknown
   field is an error) for the oldest version the chart supports and the newest one known.
2. What it renders for ztgate is what ztgate accepts: the config file loads with ztgate's own
   loader, in the environment the pod gets, and the policy with ztgate's own policy loader.
3. The invariants the deployment relies on: non-root, read-only root file system, probes on the
   paths ztgate serves, the policy mounted so that it reloads, the NetworkPolicy pair, and
   values that do not fit refused with a message naming them.

Rendering goes through helm-python-sdk (Helm's Go SDK behind a C ABI, in a wheel): the same
template engine, values coalescing and values.schema.json check as ``helm template``, with no
``helm`` binary to install. The helpers here are shared with test_network_policy.py.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ztgate.config import GatewayConfig, parse_config
from ztgate.datapath.runtime import serving
from ztgate.policy.loader import build_policy
from ztgate.policy.source import PolicySource

try:
    import helm_python as helm
except ImportError:  # helm-python-sdk has wheels for Linux x86_64 and macOS only
    pytest.skip(
        "helm-python-sdk (Helm's engine, a dev dependency) is not installed on this platform",
        allow_module_level=True,
    )

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "ztgate"
RELEASE = "ztgate"
NAMESPACE = "ztgate"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest whose
# schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.27", kubernetes_validate.utils.latest_version())
# Kinds from CRDs, which the Kubernetes schemas do not hold.
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}

Manifest = dict[str, Any]


def example_values(name: str) -> dict[str, Any]:
    """An example values file of the chart, parsed."""
    values = yaml.safe_load((CHART / "examples" / f"{name}.yaml").read_text())
    assert isinstance(values, dict)
    return values


def render(values: dict[str, Any] | None = None) -> list[Manifest]:
    """Every manifest the chart renders with these values over its defaults. Raises
    ``helm_python.HelmError`` when the values are refused."""
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return [
        document
        for path in sorted(rendered)
        for document in yaml.safe_load_all(rendered[path])
        if document
    ]


def render_error(values: dict[str, Any]) -> str:
    """The message Helm refuses these values with; fails the test if they render."""
    try:
        render(values)
    except helm.HelmError as exc:
        return str(exc)
    pytest.fail(f"the chart rendered values it should refuse: {values}")


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    """The single manifest of this kind (and name, when given)."""
    found = [m for m in of_kind(manifests, kind) if name is None or m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(manifests: list[Manifest]) -> dict[str, Any]:
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    containers = pod["containers"]
    assert [c["name"] for c in containers] == ["ztgate"]
    result: dict[str, Any] = containers[0]
    return result


# The values rendered in every test below: the defaults, and each example file.
CASES = {
    "defaults": {},
    "minimal": example_values("minimal"),
    "production": example_values("production"),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> tuple[str, list[Manifest]]:
    name: str = request.param
    return name, render(CASES[name])


@pytest.fixture(scope="module")
def signing_key_pem() -> str:
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


def pod_environment(manifests: list[Manifest], signing_key_pem: str) -> dict[str, str]:
    """The variables the pod gets from its Secret, each with a value of the right shape (as
    the Secret would hold)."""
    shapes = {
        "ANTHROPIC_API_KEY": "sk-ant-test-key",
        "ZTGATE_AUDIT_SIGNING_KEY": signing_key_pem,
        "ZTGATE_DB_PASSWORD": "db-password",
        "ZTGATE_REDIS_PASSWORD": "redis-password",
        "ZTGATE_HASH_KEY": "a-hash-key-of-32-characters-long",
        "ZTGATE_RECORDINGS_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    }
    environment = {}
    for variable in container(manifests)["env"]:
        assert "secretKeyRef" in variable["valueFrom"], f"{variable['name']} not from a Secret"
        environment[variable["name"]] = shapes[variable["name"]]
    return environment


def config_text(manifests: list[Manifest]) -> str:
    text: str = one(manifests, "ConfigMap", f"{RELEASE}-config")["data"]["ztgate.yaml"]
    return text


def loaded_config(manifests: list[Manifest], signing_key_pem: str) -> GatewayConfig:
    return parse_config(config_text(manifests), environ=pod_environment(manifests, signing_key_pem))


def mounts(manifests: list[Manifest]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Each volume mount of ztgate's container with the volume it mounts."""
    volumes = {
        v["name"]: v for v in one(manifests, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    for mount in container(manifests)["volumeMounts"]:
        yield mount, volumes[mount["name"]]


def mount_at(manifests: list[Manifest], path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The mount whose directory holds ``path``, and its volume."""
    found = [(m, v) for m, v in mounts(manifests) if path.startswith(m["mountPath"] + "/")]
    assert len(found) == 1, f"{path} is not inside exactly one mount"
    return found[0]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_for_kubernetes(
    case: tuple[str, list[Manifest]], version: str
) -> None:
    """Strict schemas: a misspelt or misplaced field fails here, not at `kubectl apply`."""
    _, manifests = case
    kinds = {m["kind"] for m in manifests}
    assert {"Deployment", "Service", "ConfigMap", "NetworkPolicy", "PodDisruptionBudget"} <= kinds
    for manifest in manifests:
        if manifest["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(manifest, version, strict=True)


# Switches the examples leave at their defaults, each rendered and validated on its own.
VARIANTS = [
    {"networkPolicy": {"enabled": False}},
    {"networkPolicy": {"defaultEgress": {"enabled": False}}},
    {"networkPolicy": {"defaultEgress": {"allowInCluster": False, "namespaces": ["a", "b"]}}},
    {"persistence": {"enabled": False}},
    {"persistence": {"existingClaim": "audit"}},
    {"serviceAccount": {"create": False, "name": "ztgate-runner"}},
    {"podDisruptionBudget": {"enabled": False}},
    {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
    {"metrics": {"enabled": False}},
    {"metrics": {"port": 9100}, "networkPolicy": {"metricsFrom": []}},
    {"identity": {"kubernetes": {"jwksUri": "https://oidc.example.com/keys"}}},
    {"image": {"digest": "sha256:" + "ab" * 32}},
    {"policy": "policy:\n  default: deny\n  rules: []\n"},
]


@pytest.mark.parametrize("values", VARIANTS, ids=lambda v: str(v)[:60])
def test_each_switch_renders_valid_manifests(values: dict[str, Any]) -> None:
    for manifest in render(values):
        if manifest["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_validator_refuses_a_broken_manifest(case: tuple[str, list[Manifest]]) -> None:
    """The schema check above is live: a Deployment with a misplaced field is refused."""
    deployment = one(case[1], "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_helm_lint_finds_nothing_to_fix(case: tuple[str, list[Manifest]]) -> None:
    name, _ = case
    report = helm.lint(CHART, CASES[name], strict=True, namespace=NAMESPACE, kube_version="v1.27.0")
    assert report["errors"] == []
    # Severity 1 is information ("icon is recommended"); 2 and above are warnings and errors.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_the_config_loads_with_ztgates_own_loader(
    case: tuple[str, list[Manifest]], signing_key_pem: str
) -> None:
    """What the ConfigMap holds is a config ztgate starts with, in the pod's environment: its
    `${VAR}`s are all given by the Deployment, from the Secret."""
    _, manifests = case
    text = config_text(manifests)
    environment = pod_environment(manifests, signing_key_pem)
    referenced = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    assert referenced == set(environment), "the config and the pod's environment disagree"
    config = loaded_config(manifests, signing_key_pem)
    assert config.upstream.api_key.get_secret_value() == environment["ANTHROPIC_API_KEY"]
    assert config.listen_host == "0.0.0.0"
    assert config.identity.issuers, "no trusted issuer"


def test_the_policy_loads_with_ztgates_own_loader(
    case: tuple[str, list[Manifest]], signing_key_pem: str
) -> None:
    """The policy ConfigMap is a policy this gateway serves (detectors, approvers), checked as
    `ztgate serve` checks it before starting, with the rules the values give."""
    name, manifests = case
    config = loaded_config(manifests, signing_key_pem)
    text = one(manifests, "ConfigMap", f"{RELEASE}-policy")["data"]["policy.yaml"]
    policy, _warnings = build_policy(yaml.safe_load(text), source="policy", serving=serving(config))
    wanted = render_values(CASES[name])["policy"]["rules"]
    assert [c.rule.id for c in policy.rules] == [rule["id"] for rule in wanted]


def test_the_config_the_pod_reads_is_the_one_rendered(
    case: tuple[str, list[Manifest]], signing_key_pem: str
) -> None:
    """The container's --config, the policy path, the JWKS file and the store's folder are
    each inside the volume that holds them."""
    _, manifests = case
    args = container(manifests)["args"]
    config_path = args[args.index("--config") + 1]
    _, volume = mount_at(manifests, config_path)
    assert volume["configMap"]["name"] == f"{RELEASE}-config"
    config = loaded_config(manifests, signing_key_pem)
    assert isinstance(config.policy, str)
    _, volume = mount_at(manifests, config.policy)
    assert volume["configMap"]["name"] == f"{RELEASE}-policy"
    for issuer in config.identity.issuers:
        if issuer.jwks_file:
            _, volume = mount_at(manifests, issuer.jwks_file)
            assert volume["configMap"]["name"] == f"{RELEASE}-jwks"
    if config.store.url.startswith("sqlite:///"):
        mount, volume = mount_at(manifests, config.store.url.removeprefix("sqlite:///"))
        assert not mount.get("readOnly")
        assert "persistentVolumeClaim" in volume


def test_the_policy_is_mounted_so_that_it_reloads(case: tuple[str, list[Manifest]]) -> None:
    """The kubelet updates a ConfigMap volume by swapping a symlink in its directory; a subPath
    mount is a copy that never changes, so the running gateway would never see a new policy."""
    _, manifests = case
    policy_mounts = [
        m for m, v in mounts(manifests) if v.get("configMap", {}).get("name") == f"{RELEASE}-policy"
    ]
    assert len(policy_mounts) == 1
    assert "subPath" not in policy_mounts[0]
    assert all("subPath" not in m for m, _ in mounts(manifests))


def project_like_the_kubelet(folder: Path, version: str, files: dict[str, str]) -> None:
    """Writes a ConfigMap volume's files as the kubelet does: into a new timestamped folder,
    then one atomic rename of the `..data` symlink to point at it; each file is a symlink
    through `..data`, created once."""
    target = folder / f"..{version}"
    target.mkdir()
    for name, text in files.items():
        (target / name).write_text(text)
    swap = folder / "..data_tmp"
    swap.symlink_to(target.name)
    swap.rename(folder / "..data")
    for name in files:
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(f"..data/{name}")


def policy_file(values: dict[str, Any]) -> str:
    text: str = one(render(values), "ConfigMap", f"{RELEASE}-policy")["data"]["policy.yaml"]
    return text


async def test_a_policy_swapped_in_as_the_kubelet_does_is_reloaded(tmp_path: Path) -> None:
    """The running gateway's policy source, watching the path the chart configures, picks up a
    new policy the kubelet swaps into the ConfigMap's directory; a subPath mount (a copy made
    once) would keep the old one forever."""
    before = policy_file({})
    after = policy_file(
        {"policy": {"default": "deny", "rules": [{"id": "all", "when": {}, "effect": "allow"}]}}
    )
    volume = tmp_path / "policy"
    volume.mkdir()
    project_like_the_kubelet(volume, "2026_01_01_00_00_00.1", {"policy.yaml": before})
    copy = tmp_path / "subpath-policy.yaml"
    copy.write_text((volume / "policy.yaml").read_text())
    mounted = PolicySource.from_config(str(volume / "policy.yaml"))
    copied = PolicySource.from_config(str(copy))

    def rule_ids(source: PolicySource) -> list[str]:
        return [compiled.rule.id for compiled in source.current.rules]

    assert rule_ids(mounted) == rule_ids(copied) == []
    watchers = [asyncio.create_task(s.watch(interval=0.02)) for s in (mounted, copied)]
    try:
        project_like_the_kubelet(volume, "2026_01_01_00_01_00.2", {"policy.yaml": after})
        async with asyncio.timeout(5):
            while not rule_ids(mounted):
                await asyncio.sleep(0.02)
    finally:
        for watcher in watchers:
            watcher.cancel()
    assert rule_ids(mounted) == ["all"]
    assert rule_ids(copied) == []


def test_a_config_change_restarts_the_pods_and_a_policy_change_does_not() -> None:
    def checksum(values: dict[str, Any]) -> str:
        template = one(render(values), "Deployment")["spec"]["template"]
        annotation: str = template["metadata"]["annotations"]["checksum/config"]
        return annotation

    base = checksum({})
    assert checksum({"config": {"logging": {"level": "debug"}}}) != base
    assert checksum({"policy": {"default": "allow", "rules": []}}) == base


def test_ztgate_runs_unprivileged_on_a_read_only_root(case: tuple[str, list[Manifest]]) -> None:
    _, manifests = case
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    security = container(manifests)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security.get("privileged") is not True


def test_probes_ask_the_paths_ztgate_serves_on_its_port(
    case: tuple[str, list[Manifest]], signing_key_pem: str
) -> None:
    _, manifests = case
    spec = container(manifests)
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    assert spec["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert spec["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
    listen_port = loaded_config(manifests, signing_key_pem).listen_port
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert ports[spec[probe]["httpGet"]["port"]] == listen_port
    service = one(manifests, "Service")
    assert service["spec"]["ports"][0]["targetPort"] in ports


def test_resources_are_sized_from_the_benchmarks(case: tuple[str, list[Manifest]]) -> None:
    """docs/benchmarks.md: one worker peaks at ~117 MB resident and uses about a core. The
    request must hold that per worker, the limit must leave room above it."""
    _, manifests = case
    resources = container(manifests)["resources"]
    workers = int(CASES[case[0]].get("workers", 1))

    def mebibytes(quantity: str) -> float:
        number, unit = re.fullmatch(r"([0-9.]+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
        return float(number) * (1024 if unit == "Gi" else 1)

    assert mebibytes(resources["requests"]["memory"]) >= 117 * 1e6 / 2**20 * workers
    assert mebibytes(resources["limits"]["memory"]) > mebibytes(resources["requests"]["memory"])
    assert float(resources["requests"]["cpu"]) >= workers


def test_the_sqlite_store_has_one_writer_and_a_volume() -> None:
    """SQLite: one replica, its volume claimed, the old pod gone before the new one starts."""
    manifests = render({})
    deployment = one(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    claim = one(manifests, "PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_production_scales_on_a_shared_store_behind_an_https_ingress() -> None:
    manifests = render(CASES["production"])
    deployment = one(manifests, "Deployment")
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert not of_kind(manifests, "PersistentVolumeClaim")
    hpa = one(manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = one(manifests, "PodDisruptionBudget")
    assert 0 < pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    ingress = one(manifests, "Ingress")
    hosts = {h for entry in ingress["spec"]["tls"] for h in entry["hosts"]}
    assert hosts == {rule["host"] for rule in ingress["spec"]["rules"]}


def test_the_service_monitor_scrapes_the_metrics_port() -> None:
    """Off unless asked for (it needs the Prometheus Operator's CRDs); then it scrapes the
    Service's `metrics` port, never the /v1 one. (test_monitoring.py checks the rest.)"""
    for values in CASES.values():
        assert not of_kind(render(values), "ServiceMonitor")
    monitor = one(render({"serviceMonitor": {"enabled": True}}), "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]] == [
        ("metrics", "/metrics")
    ]


def test_a_created_secret_holds_the_keys_the_pod_reads() -> None:
    values = {
        "secret": {
            "create": True,
            "data": {"anthropic-api-key": "sk-ant-test", "audit-signing-key": "pem"},
            "auditSigningKeyKey": "audit-signing-key",
        }
    }
    manifests = render(values)
    secret = one(manifests, "Secret")
    refs = {v["valueFrom"]["secretKeyRef"]["key"] for v in container(manifests)["env"]}
    assert refs <= set(secret["stringData"])
    assert {v["valueFrom"]["secretKeyRef"]["name"] for v in container(manifests)["env"]} == {
        secret["metadata"]["name"]
    }
    assert (
        "checksum/secret"
        in one(manifests, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    )
    assert not of_kind(render({}), "Secret"), "no Secret unless secret.create"


def test_the_kubernetes_preset_is_configured_by_values(signing_key_pem: str) -> None:
    manifests = render(CASES["minimal"])
    issuer = loaded_config(manifests, signing_key_pem).identity.issuers[0]
    kubernetes = CASES["minimal"]["identity"]["kubernetes"]
    assert issuer.preset == "kubernetes"
    assert issuer.issuer == kubernetes["issuer"]
    assert issuer.audiences == kubernetes["audiences"]
    assert issuer.allow == kubernetes["allow"]
    assert issuer.require_pod_binding is True
    assert issuer.jwks_file is not None
    jwks = one(manifests, "ConfigMap", f"{RELEASE}-jwks")["data"]["jwks.json"]
    assert yaml.safe_load(jwks) == yaml.safe_load(kubernetes["jwks"])


def network_policies(manifests: list[Manifest], role: str) -> list[Manifest]:
    return [
        m
        for m in of_kind(manifests, "NetworkPolicy")
        if m["metadata"]["labels"]["ztgate.io/network-policy"] == role
    ]


def test_the_network_policy_pair_keeps_the_api_to_ztgate(case: tuple[str, list[Manifest]]) -> None:
    """The API's ranges appear as a destination in ztgate's policy alone; in the default egress
    policies only as exceptions. (test_network_policy.py asks who can reach what.)"""
    name, manifests = case
    api = set(render_values(CASES[name])["networkPolicy"]["anthropicCIDRs"])
    (gateway,) = network_policies(manifests, "gateway")
    pod_labels = one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert gateway["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert gateway["spec"]["podSelector"]["matchLabels"], "ztgate's policy must not select all"
    destinations = {
        peer["ipBlock"]["cidr"]
        for rule in gateway["spec"]["egress"]
        for peer in rule.get("to", [])
        if "ipBlock" in peer
    }
    assert api <= destinations
    defaults = network_policies(manifests, "default-egress")
    namespaces = {
        NAMESPACE,
        *render_values(CASES[name])["networkPolicy"]["defaultEgress"]["namespaces"],
    }
    assert {p["metadata"]["namespace"] for p in defaults} == namespaces
    for policy in defaults:
        assert policy["spec"]["podSelector"] == {}
        assert policy["spec"]["policyTypes"] == ["Egress"]
        for rule in policy["spec"]["egress"]:
            assert rule.get("to"), "a rule without `to` would allow every destination"
            for peer in rule["to"]:
                if "ipBlock" in peer:
                    assert peer["ipBlock"]["cidr"] not in api


def render_values(values: dict[str, Any]) -> dict[str, Any]:
    """The values the chart renders with: its defaults coalesced with these, as Helm does."""
    with helm.Chart.load(CHART) as chart:
        return chart.merge_values(values)


# Values that do not fit, and the value each refusal must name.
INVALID = [
    pytest.param({"replicaCount": "two"}, "/replicaCount", id="schema-type"),
    pytest.param({"replicas": 2}, "'replicas' not allowed", id="schema-unknown-value"),
    pytest.param(
        {"securityContext": {"readOnlyRootFilesystem": False}},
        "/securityContext/readOnlyRootFilesystem",
        id="schema-writable-root",
    ),
    pytest.param({"store": {"url": "mysql://db/ztgate"}}, "/store/url", id="schema-store"),
    pytest.param({"replicaCount": 2}, "replicaCount:", id="replicas-on-sqlite"),
    pytest.param({"autoscaling": {"enabled": True}}, "autoscaling.enabled:", id="hpa-on-sqlite"),
    pytest.param(
        {
            "replicaCount": 2,
            "store": {"url": "postgresql://ztgate@db/ztgate"},
            "secret": {"auditSigningKeyKey": "audit-signing-key"},
        },
        "quotas.redisUrl:",
        id="replicas-without-redis",
    ),
    pytest.param(
        {"store": {"url": "postgresql://ztgate@db/ztgate"}},
        "secret.auditSigningKeyKey:",
        id="postgresql-without-signing-key",
    ),
    pytest.param({"tls": {"certFile": "/tls/cert.pem"}}, "tls:", id="tls-placeholder"),
    pytest.param({"config": {"store": {"url": "sqlite:///x"}}}, "config.store:", id="owned-key"),
    pytest.param(
        {"config": {"upstream": {"api_key": "sk-in-a-configmap"}}},
        "config.upstream.api_key:",
        id="owned-nested-key",
    ),
    pytest.param(
        {"identity": {"kubernetes": {"enabled": False}}}, "identity.issuers:", id="no-issuer"
    ),
    pytest.param(
        {"podDisruptionBudget": {"minAvailable": 1}},
        "podDisruptionBudget.minAvailable:",
        id="pdb-blocks-drains",
    ),
    pytest.param(
        {"networkPolicy": {"anthropicCIDRs": []}},
        "networkPolicy.anthropicCIDRs:",
        id="no-api-ranges",
    ),
    pytest.param(
        {"networkPolicy": {"anthropicCIDRs": ["160.79.104.0/40"]}},
        "160.79.104.0/40",
        id="bad-api-range",
    ),
    pytest.param(
        {
            "networkPolicy": {
                "defaultEgress": {
                    "extraEgress": [{"to": [{"ipBlock": {"cidr": "160.79.105.0/24"}}]}]
                }
            }
        },
        "networkPolicy.defaultEgress.extraEgress[0].to[0].ipBlock.cidr:",
        id="default-egress-into-the-api",
    ),
    pytest.param(
        {
            "networkPolicy": {
                "defaultEgress": {
                    "extraEgress": [{"to": [{"ipBlock": {"cidr": "2607:6bc0:0:1::/64"}}]}]
                }
            }
        },
        "networkPolicy.defaultEgress.extraEgress[0].to[0].ipBlock.cidr:",
        id="default-egress-into-the-api-v6",
    ),
    pytest.param(
        {"networkPolicy": {"defaultEgress": {"extraEgress": [{"ports": [{"port": 443}]}]}}},
        "networkPolicy.defaultEgress.extraEgress[0].to:",
        id="default-egress-anywhere",
    ),
    pytest.param(
        {"secret": {"create": True, "data": {"other": "x"}}}, "secret.data:", id="secret-empty"
    ),
]


@pytest.mark.parametrize(("values", "named"), INVALID)
def test_values_that_do_not_fit_are_refused_by_name(values: dict[str, Any], named: str) -> None:
    assert named in render_error(values)


def default_egress_in(manifests: list[Manifest], namespace: str) -> Manifest:
    (policy,) = [
        p
        for p in network_policies(manifests, "default-egress")
        if p["metadata"]["namespace"] == namespace
    ]
    return policy


def ip_blocks(policy: Manifest) -> dict[str, list[str]]:
    """Each ipBlock of a policy's egress: its cidr and its exceptions."""
    return {
        peer["ipBlock"]["cidr"]: sorted(peer["ipBlock"].get("except", []))
        for rule in policy["spec"]["egress"]
        for peer in rule["to"]
        if "ipBlock" in peer
    }


def test_an_api_range_inside_a_wider_default_block_is_excepted() -> None:
    """The production example lets teams reach HTTPS anywhere: 0.0.0.0/0 and ::/0, each with
    the API's ranges of its family as exceptions, computed by the chart. ztgate's own namespace
    keeps the strict default, so ztgate does not share that way out."""
    manifests = render(CASES["production"])
    assert ip_blocks(default_egress_in(manifests, "team-a")) == {
        "0.0.0.0/0": ["153.61.224.0/22", "160.79.104.0/23"],
        "::/0": ["2607:6bc0::/48"],
    }
    assert ip_blocks(default_egress_in(manifests, NAMESPACE)) == {}
    # A block beside the API's ranges is left alone.
    block = {"ipBlock": {"cidr": "160.79.106.0/23"}}
    values = {
        "networkPolicy": {
            "defaultEgress": {"namespaces": ["team"], "extraEgress": [{"to": [block]}]}
        }
    }
    assert ip_blocks(default_egress_in(render(values), "team")) == {"160.79.106.0/23": []}


# The chart's own CIDR arithmetic (templates/_helpers.tpl), against Python's ipaddress: for a
# block in the default egress policy, the API ranges it holds become its exceptions, and one
# that lies within (or equals) an API range is refused.
CIDR_CASES = [
    "0.0.0.0/0",
    "160.0.0.0/8",
    "160.79.104.0/22",
    "160.79.104.0/23",
    "160.79.105.7/32",
    "160.79.106.0/23",
    "153.61.224.0/21",
    "10.0.0.0/8",
    "::/0",
    "2607::/16",
    "2607:6bc0::/32",
    "2607:6bc0::/48",
    "2607:6bc0:0:ff::/64",
    "2607:6bc0:1::/48",
    "fd00::/8",
]


@pytest.mark.parametrize("cidr", CIDR_CASES)
def test_the_charts_cidr_arithmetic_agrees_with_ipaddress(cidr: str) -> None:
    api = [ipaddress.ip_network(c) for c in render_values({})["networkPolicy"]["anthropicCIDRs"]]
    block = ipaddress.ip_network(cidr)
    inside = [a for a in api if a.version == block.version and block.subnet_of(a)]  # type: ignore[arg-type]
    values = {
        "networkPolicy": {
            "defaultEgress": {
                "namespaces": ["team"],
                "extraEgress": [{"to": [{"ipBlock": {"cidr": cidr}}]}],
            }
        }
    }
    if inside:
        assert "extraEgress[0].to[0].ipBlock.cidr" in render_error(values)
        return
    held = sorted(
        str(a)
        for a in api
        if a.version == block.version and a.subnet_of(block)  # type: ignore[arg-type]
    )
    assert ip_blocks(default_egress_in(render(values), "team")) == {cidr: held}
