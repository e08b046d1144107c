"""What a platform team monitors ztgate with: the alert rules, the Grafana dashboard and the
chart's metrics wiring (deploy/monitoring/, deploy/helm/ztgate).

1. The alert rules (the chart's files/ztgate-alerts.yaml, their one copy) pass
   `promtool check rules`, and their unit tests (deploy/monitoring/prometheus/) pass
   `promtool test rules`, with every alert shown firing and shown quiet.
2. Every PromQL expression, in the rules and in the dashboard, names only series ztgate
   exposes: the names come from ztgate's own registry (``Metrics().registry``), so a metric
   renamed in the code breaks this test, not an on-call's night. The dashboard shows every
   metric there is, and its queries parse (promtool, over recording rules made of them).
3. The chart, with metrics on: the config's `metrics.listen`, the container's `metrics` port, the
   Service's, the ServiceMonitor's and the NetworkPolicy's agree; the PrometheusRule is the
   rules file; only the Prometheus peers reach the metrics port. A live scrape of the
   listener the rendered config describes serves what the rules and dashboard expect.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ztgate.observe.endpoint import serve_metrics
from ztgate.observe.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "helm" / "ztgate" / "files" / "ztgate-alerts.yaml"
RULE_TESTS = ROOT / "deploy" / "monitoring" / "prometheus" / "ztgate-alerts.test.yaml"
DASHBOARD = ROOT / "deploy" / "monitoring" / "grafana" / "ztgate.json"
OPERATIONS = ROOT / "docs" / "operations.md"

# The alerts issue #17 asks for, and the ones added beside them.
REQUIRED_ALERTS = {
    "ZtgateAuditCommitLagHigh",
    "ZtgateAuditQueueBuildingUp",
    "ZtgateAuditStoreDown",
    "ZtgateAuditCommitsFailing",
    "ZtgateUpstreamErrorsHigh",
    "ZtgateKeyRefreshFailing",
    "ZtgateTargetDown",
    "ZtgateDown",
    "ZtgateUpstreamUnreachable",
    "ZtgateQuotaRefusalsSurge",
}
SEVERITIES = {"critical", "warning", "info"}

HAVE_HELM = importlib.util.find_spec("helm_python") is not None
needs_helm = pytest.mark.skipif(
    not HAVE_HELM,
    reason="helm-python-sdk (Helm's engine, a dev dependency) is not installed on this platform",
)
if HAVE_HELM:
    from tests.deploy.test_chart import (
        CASES,
        NAMESPACE,
        Manifest,
        container,
        loaded_config,
        network_policies,
        of_kind,
        one,
        render,
        render_error,
        render_values,
    )
    from tests.deploy.test_network_policy import Cluster, Pod, model_cluster


def promtool() -> str:
    """promtool (Debian's prometheus package; `make setup` installs it), or the test skips."""
    found = shutil.which("promtool") or shutil.which("promtool", path="/usr/bin:/usr/local/bin")
    if found is None:
        pytest.skip("promtool is not installed (`make setup` installs Debian's prometheus package)")
    return found


def run_promtool(*args: str, cwd: Path = ROOT) -> str:
    result = subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


# --- the series ztgate exposes ------------------------------------------------------------------


def exposed_series() -> dict[str, set[str]]:
    """Each metric family of ztgate's registry with the series names a scrape shows of it:
    `_total` for a counter, `_bucket`, `_sum` and `_count` for a histogram, the name itself
    for a gauge."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    families: dict[str, set[str]] = {}
    for family in Metrics().registry.collect():
        assert family.type in suffixes, f"{family.name}: a {family.type}, which no rule expects"
        families[family.name] = {family.name + suffix for suffix in suffixes[family.type]}
    return families


EXPOSED = exposed_series()
# Prometheus' own, per target.
KNOWN_SERIES = {"up"}.union(*EXPOSED.values())


def sample_names(exposition: str) -> set[str]:
    """The series names in a scrape's text (without the `_created` timestamps)."""
    names = {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in exposition.splitlines()
        if line and not line.startswith("#")
    }
    return {name for name in names if not name.endswith("_created")}


def test_the_series_names_are_what_a_scrape_shows() -> None:
    """The names derived from the metric types are the exposition's own: every sample a fresh
    gateway exposes (the metrics without labels) is one of them."""
    samples = sample_names(Metrics().exposition().decode())
    assert samples
    assert samples <= KNOWN_SERIES
    assert "ztgate_requests_total" in KNOWN_SERIES
    assert "ztgate_requests" not in KNOWN_SERIES, "a counter is only seen as NAME_total"


def test_the_exposition_passes_promtools_lint() -> None:
    text = Metrics().exposition().decode()
    result = subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- PromQL, taken apart enough to find the series it names ----------------------------------

_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "Inf",
    "NaN",
    "inf",
    "nan",
    # Aggregations: a grouping clause may stand between one and its parenthesis.
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
}


def series_in(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: every identifier that is not a function
    (followed by a parenthesis), a keyword, a label (in braces or a grouping clause), a string
    or a duration."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings ("$job", "5..|none")
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\boffset\s+\S+", " ", text)
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )  # with their label lists
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group()
        if word in _KEYWORDS or re.match(r"\s*\(", text[match.end() :]):
            continue
        names.add(word)
    return names


def test_series_in_finds_the_names_and_only_them() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (namespace, le) (rate(ztgate_x_bucket{le!="",'
        ' status=~"5..|none"}[$__rate_interval]))) / on (job) group_left (instance)'
        " sum without (pod) (up offset 1h) > bool 0.5 or vector(0) unless absent(ztgate_y)"
    )
    assert series_in(expr) == {"ztgate_x_bucket", "up", "ztgate_y"}


# --- the alert rules ---------------------------------------------------------------------------


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules() -> None:
    assert "SUCCESS" in run_promtool("check", "rules", str(RULES))


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    assert "SUCCESS" in run_promtool("test", "rules", str(RULE_TESTS.relative_to(ROOT)))


def test_the_unit_tests_load_the_one_copy_of_the_rules() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert [(RULE_TESTS.parent / f).resolve() for f in tests["rule_files"]] == [RULES]


def test_every_alert_is_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    checks = [check for test in tests for check in test["alert_rule_test"]]
    fires = {c["alertname"] for c in checks if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in checks if not c.get("exp_alerts")}
    alerts = {rule["alert"] for rule in alert_rules()}
    assert alerts - fires == set(), "alerts never shown firing"
    assert alerts - quiet == set(), "alerts never shown staying quiet"
    # A firing case checks the annotations too (promtool compares them when given).
    for check in checks:
        for alert in check.get("exp_alerts") or []:
            assert set(alert["exp_annotations"]) == {"summary", "description"}, check


def test_the_alerts_asked_for_are_there() -> None:
    assert {rule["alert"] for rule in alert_rules()} == REQUIRED_ALERTS


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_each_alert_waits_says_how_bad_and_what(rule: dict[str, Any]) -> None:
    assert re.fullmatch(r"[0-9]+[smh]", rule["for"]), "a `for:` so that a blip does not page"
    assert rule["labels"]["severity"] in SEVERITIES
    assert rule["annotations"]["summary"].strip()
    assert rule["annotations"]["description"].strip()


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_each_alert_names_only_series_ztgate_exposes(rule: dict[str, Any]) -> None:
    names = series_in(rule["expr"])
    assert names, "no series found: the extraction is wrong"
    assert names <= KNOWN_SERIES, f"not exposed by ztgate: {sorted(names - KNOWN_SERIES)}"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_each_alert_is_explained_in_the_operations_guide(rule: dict[str, Any]) -> None:
    text = OPERATIONS.read_text()
    section = text.split("\n## Dashboards and alerts\n", 1)[1].split("\n## ", 1)[0]
    assert f"`{rule['alert']}`" in section


# --- the dashboard -----------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def queries() -> list[str]:
    return [t["expr"] for p in panels() for t in p.get("targets", [])]


def titled_queries() -> list[Any]:
    """Each panel's queries and the template variables' selectors, named for the test ids."""
    found = [
        pytest.param(t["expr"], id=f"{p['title']}/{t['refId']}")
        for p in panels()
        for t in p.get("targets", [])
    ]
    return found + [pytest.param(q, id=f"variable/{q}") for q in variable_queries()]


def variable_queries() -> list[str]:
    """The selectors inside the template variables' label_values(SELECTOR, LABEL)."""
    found = []
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["query"])
            assert match, variable["query"]
            found.append(match.group(1))
    return found


def test_the_dashboard_is_importable() -> None:
    """Grafana's import and file provisioning both take it as it is: a schema version, a uid,
    and every query on the data source the `datasource` variable picks (no `${DS_...}` input
    left for the import screen to fill in)."""
    board = dashboard()
    assert isinstance(board["schemaVersion"], int)
    assert board["schemaVersion"] >= 36
    assert board["uid"]
    assert board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    source = {"type": "prometheus", "uid": "${datasource}"}
    ids = []
    for panel in panels():
        ids.append(panel["id"])
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == source, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == source, panel["title"]
            assert target["expr"].strip()
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for name in ("job", "namespace", "instance"):
        assert variables[name]["datasource"] == source


def test_the_dashboard_panels_do_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    titles = " | ".join(p["title"].lower() for p in panels())
    for wanted in (
        "by endpoint",
        "by decision",
        "by status",
        "refus",
        "request latency",
        "stage latency p50",
        "stage latency p95",
        "stage latency p99",
        "upstream answers by status",
        "time to first byte",
        "active streams",
        "stream duration",
        "findings by detector",
        "guardrail",
        "masked",
        "reviews pending",
        "audit commit latency",
        "audit queue",
        "audit events",
        "audit store",
        "key refresh failures",
        "quota refusals",
    ):
        assert wanted in titles, wanted


@pytest.mark.parametrize("expr", titled_queries())
def test_each_dashboard_query_names_only_series_ztgate_exposes(expr: str) -> None:
    names = series_in(expr)
    assert names, "no series found: the extraction is wrong"
    assert names <= KNOWN_SERIES, f"not exposed by ztgate: {sorted(names - KNOWN_SERIES)}"


def test_the_dashboard_shows_every_metric() -> None:
    """A metric added to ztgate without a panel fails here."""
    shown = set().union(*(series_in(expr) for expr in queries()))
    missing = [family for family, series in EXPOSED.items() if not series & shown]
    assert missing == []


def test_every_dashboard_selector_follows_the_variables() -> None:
    """Each series a panel selects is narrowed by the job, namespace and pod pickers."""
    for expr in queries():
        for match in re.finditer(r"\b(ztgate_[a-z_]+|up)(\{[^}]*\})?", expr):
            matchers = match.group(2) or ""
            for variable in ("job", "namespace", "instance"):
                assert f'{variable}=~"${variable}"' in matchers, (match.group(), expr)


def test_the_dashboard_queries_parse(tmp_path: Path) -> None:
    """promtool parses each query, as a recording rule, with Grafana's variables replaced by
    what they stand for."""
    values = {
        "$__rate_interval": "2m",
        "$__range": "6h",
        "$job": "ztgate",
        "$namespace": ".*",
        "$instance": ".*",
    }
    rules = []
    for n, expr in enumerate(queries()):
        for variable, value in values.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        rules.append({"record": f"ztgate:dashboard:{n}", "expr": expr})
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in run_promtool("check", "rules", str(path))


# --- the chart ---------------------------------------------------------------------------------


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


def ports(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in manifest["ports"]}


def metrics_rules(manifests: list[Manifest]) -> list[dict[str, Any]]:
    """The ingress rules of ztgate's own NetworkPolicy that open anything but its /v1 port."""
    (gateway,) = network_policies(manifests, "gateway")
    data_port = ports(container(manifests))["http"]["containerPort"]
    return [
        rule
        for rule in gateway["spec"]["ingress"]
        if [p["port"] for p in rule["ports"]] != [data_port]
    ]


@needs_helm
@pytest.mark.parametrize("port", [9464, 9100])
def test_metrics_have_a_port_of_their_own(port: int, signing_key_pem: str) -> None:
    """Config, container, Service and NetworkPolicy agree on the metrics port, which is never
    the /v1 one and never the Ingress' backend."""
    values = {"metrics": {"port": port}} if port != 9464 else {}
    manifests = render(values)
    config = loaded_config(manifests, signing_key_pem)
    assert config.metrics.enabled
    assert config.metrics.listen == f"0.0.0.0:{port}"
    assert config.listen_port != port
    spec = container(manifests)
    assert ports(spec)["metrics"] == {"name": "metrics", "containerPort": port, "protocol": "TCP"}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert spec[probe]["httpGet"]["port"] == "http"
    service = ports(one(manifests, "Service")["spec"])
    assert service["metrics"]["port"] == port
    assert service["metrics"]["targetPort"] == "metrics"
    (rule,) = metrics_rules(manifests)
    assert rule["ports"] == [{"protocol": "TCP", "port": port}]
    # The Ingress leads to the /v1 port alone.
    production = render({**CASES["production"], **values})
    assert "metrics" in ports(one(production, "Service")["spec"])
    for host in one(production, "Ingress")["spec"]["rules"]:
        for path in host["http"]["paths"]:
            assert path["backend"]["service"]["port"] == {"name": "http"}


@needs_helm
def test_metrics_off_leaves_no_port_open(signing_key_pem: str) -> None:
    manifests = render({"metrics": {"enabled": False}})
    assert loaded_config(manifests, signing_key_pem).metrics.enabled is False
    assert "metrics" not in ports(container(manifests))
    assert "metrics" not in ports(one(manifests, "Service")["spec"])
    assert metrics_rules(manifests) == []


@needs_helm
def test_the_service_monitor_scrapes_the_metrics_port_as_the_rules_job() -> None:
    manifests = render({"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}})
    monitor = one(manifests, "ServiceMonitor")
    service = one(manifests, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    assert "metrics" in ports(service["spec"])
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {
        "matchNames": [service["metadata"]["namespace"]]
    }
    # The job Prometheus gives the targets is the one the alert rules select.
    job = service["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    assert job == "ztgate"
    assert all('job="ztgate"' in r["expr"] for r in alert_rules() if "up{" in r["expr"])


@needs_helm
def test_the_prometheus_rule_is_the_rules_file() -> None:
    manifests = render({"prometheusRule": {"enabled": True, "labels": {"release": "kps"}}})
    rule = one(manifests, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    assert not of_kind(render({}), "PrometheusRule"), "off unless asked for"
    assert not of_kind(render({}), "ServiceMonitor"), "off unless asked for"


@needs_helm
def test_promtool_checks_the_rendered_prometheus_rule(tmp_path: Path) -> None:
    """What the operator hands Prometheus, with a name override applied, is a valid rules file."""
    values = {"nameOverride": "gateway", "prometheusRule": {"enabled": True}}
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump(one(render(values), "PrometheusRule")["spec"]))
    assert "SUCCESS: 10 rules found" in run_promtool("check", "rules", str(path))


@needs_helm
def test_a_name_override_renames_the_job_in_monitor_and_rules() -> None:
    values = {
        "nameOverride": "gateway",
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
    }
    manifests = render(values)
    monitor = one(manifests, "ServiceMonitor")
    service = one(manifests, "Service")
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "gateway"
    rules = [r for g in one(manifests, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    exprs = " ".join(r["expr"] for r in rules)
    assert 'job="gateway"' in exprs
    assert 'job="ztgate"' not in exprs


# Values that do not fit, and the value each refusal names.
INVALID = [
    (
        {"serviceMonitor": {"enabled": True}, "metrics": {"enabled": False}},
        "serviceMonitor.enabled:",
    ),
    (
        {"prometheusRule": {"enabled": True}, "metrics": {"enabled": False}},
        "prometheusRule.enabled:",
    ),
    ({"metrics": {"port": 8787}}, "metrics.port:"),
    (
        {"service": {"type": "LoadBalancer"}, "networkPolicy": {"enabled": False}},
        "metrics.enabled:",
    ),
    ({"config": {"metrics": {"listen": "0.0.0.0:9090"}}}, "config.metrics.listen:"),
    ({"config": {"metrics": {"enabled": False}}}, "config.metrics.enabled:"),
    ({"metrics": {"port": 0}}, "/metrics/port"),
    ({"networkPolicy": {"metricsFrom": [{}]}}, "/networkPolicy/metricsFrom/0"),
    ({"prometheusRule": {"enabled": True, "rules": []}}, "'rules' not allowed"),
]


@needs_helm
@pytest.mark.parametrize(("values", "named"), INVALID, ids=lambda v: str(v)[:50])
def test_metrics_values_that_do_not_fit_are_refused_by_name(
    values: dict[str, Any], named: str
) -> None:
    assert named in render_error(values)


@needs_helm
def test_a_public_service_gets_metrics_only_behind_the_network_policy() -> None:
    """A LoadBalancer Service publishes every port it has: metrics then need the NetworkPolicy
    (which admits only the Prometheus peers to that port), or stay off."""
    manifests = render({"service": {"type": "LoadBalancer"}})
    assert "metrics" in ports(one(manifests, "Service")["spec"])
    assert metrics_rules(manifests)
    without_policy = {"networkPolicy": {"enabled": False}, "metrics": {"enabled": False}}
    manifests = render({"service": {"type": "LoadBalancer"}, **without_policy})
    assert "metrics" not in ports(one(manifests, "Service")["spec"])


def with_monitoring(cluster: Cluster) -> dict[str, Pod]:
    """Adds a `monitoring` namespace with the operator's Prometheus and another pod, and a
    pod labelled as Prometheus elsewhere."""
    cluster.namespaces["monitoring"] = {}
    prometheus_labels = {"app.kubernetes.io/name": "prometheus", "prometheus": "k8s"}
    added = {
        "prometheus": Pod("prometheus-k8s-0", "monitoring", prometheus_labels, "10.244.5.2"),
        "grafana": Pod(
            "grafana", "monitoring", {"app.kubernetes.io/name": "grafana"}, "10.244.5.3"
        ),
        "fake-prometheus": Pod("fake-prometheus", NAMESPACE, prometheus_labels, "10.244.0.30"),
    }
    cluster.pods.extend(added.values())
    return added


@needs_helm
def test_only_prometheus_reaches_the_metrics_port() -> None:
    values = render_values({})
    manifests = render({})
    cluster = model_cluster(values, manifests)
    added = with_monitoring(cluster)
    ztgate = cluster.pods[0]
    port = values["metrics"]["port"]
    assert cluster.can_reach(added["prometheus"], ztgate.ip, port)
    others = [p for p in cluster.pods if p is not added["prometheus"] and p.name != ztgate.name]
    assert len(others) > 5
    for pod in others:
        assert not cluster.can_reach(pod, ztgate.ip, port), f"{pod.name} reaches /metrics"
    # The callers' port is unchanged for them.
    assert cluster.can_reach(added["grafana"], ztgate.ip, values["containerPort"])


@needs_helm
def test_no_scrapers_no_rule() -> None:
    """metricsFrom [] admits no one: no rule is rendered (a rule with `from: []` would admit
    every source)."""
    values = render_values({"networkPolicy": {"metricsFrom": []}})
    manifests = render({"networkPolicy": {"metricsFrom": []}})
    assert metrics_rules(manifests) == []
    cluster = model_cluster(values, manifests)
    added = with_monitoring(cluster)
    ztgate = cluster.pods[0]
    assert not cluster.can_reach(added["prometheus"], ztgate.ip, values["metrics"]["port"])


@needs_helm
@pytest.mark.parametrize("case", ["defaults", "production"])
def test_the_metrics_rule_opens_nothing_else(case: str) -> None:
    """With and without the metrics rule, every pod reaches the same pods on the same ports,
    but for Prometheus reaching ztgate's metrics port."""
    values = render_values(CASES[case])
    manifests = render(CASES[case])
    stripped = copy.deepcopy(manifests)
    (gateway,) = network_policies(stripped, "gateway")
    opened = metrics_rules(manifests)
    assert opened
    gateway["spec"]["ingress"] = [r for r in gateway["spec"]["ingress"] if r not in opened]
    with_rule, without = model_cluster(values, manifests), model_cluster(values, stripped)
    prometheus = with_monitoring(with_rule)["prometheus"]
    with_monitoring(without)
    metrics_port = values["metrics"]["port"]
    differences = {
        (source.name, target.name, port)
        for source in with_rule.pods
        for target in with_rule.pods
        for port in (values["containerPort"], metrics_port, 443, 5432, 8080)
        if with_rule.can_reach(source, target.ip, port)
        != without.can_reach(source, target.ip, port)
    }
    ztgate_pods = {p.name for p in with_rule.pods if p.name.startswith("ztgate-")}
    assert differences == {(prometheus.name, name, metrics_port) for name in ztgate_pods}


# --- a live scrape of what the chart configures --------------------------------------------------


@needs_helm
async def test_the_rendered_listener_serves_what_rules_and_dashboard_read(
    signing_key_pem: str,
) -> None:
    """The listener the rendered config turns on (all addresses, as a pod needs; here on a free
    loopback port) answers GET /metrics with the series the rules and the dashboard name, and
    nothing else: the API's paths are not there."""
    config = loaded_config(render({}), signing_key_pem)
    assert config.metrics.listen.rpartition(":")[0] == "0.0.0.0"
    metrics = Metrics()
    server = await serve_metrics(metrics, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]

        async def get(path: str) -> tuple[str, str]:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
            await writer.drain()
            answer = (await reader.read()).decode()
            writer.close()
            await writer.wait_closed()
            head, _, body = answer.partition("\r\n\r\n")
            return head.split("\r\n")[0], body

        status, body = await get("/metrics")
        assert status == "HTTP/1.1 200 OK"
        assert sample_names(body) <= KNOWN_SERIES
        assert {"ztgate_audit_store_up", "ztgate_quota_refusals_total"} <= sample_names(body)
        status, _ = await get("/v1/messages")
        assert status.startswith("HTTP/1.1 404")
    finally:
        server.close()
        await metrics.close()
