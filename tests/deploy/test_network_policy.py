"""Who can reach what under the chart's NetworkPolicies, asked of the rendered manifests.

A small evaluator of Kubernetes NetworkPolicy semantics (below) answers "can this pod reach
this address and port?" over a model cluster: ztgate's pods as the chart's Deployment labels
them, other workloads in the namespaces the chart covers (one of them wearing ztgate's labels
in another namespace), a namespace it does not cover, the cluster's DNS, a database, and
addresses inside and around each of the Claude API's ranges. Then:

- ztgate reaches the API on 443; no other workload in a covered namespace reaches it, on any
  port; every workload reaches ztgate's port and DNS;
- a policy set with a way out to the API for anyone else is caught: the same questions over
  the rendered policies with one thing changed (the default egress policy dropped, the API
  added to it, ztgate's selector widened, an exception removed) find the way.

The semantics, as the Kubernetes documentation states them: policies are namespaced and only
add permissions. A pod selected by no policy with Egress in its policyTypes may send anywhere;
once one selects it, a connection is allowed when some selecting policy has an egress rule
whose `to` (absent or empty: everywhere) has a matching peer and whose `ports` (absent or empty:
all) match. A peer is an ipBlock (the address in `cidr` and in no `except`), or pods chosen by
podSelector (in the policy's namespace) and/or namespaceSelector (in the namespaces it
selects). The destination pod's ingress policies apply the same way to the source. Label
selectors have matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist; NotIn and
DoesNotExist match a pod without the key).
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.deploy.test_chart import CASES, NAMESPACE, Manifest, one, render, render_values

Labels = Mapping[str, str]


def selects(selector: Mapping[str, Any], labels: Labels) -> bool:
    """A Kubernetes label selector over a set of labels; {} selects everything."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: Labels
    ip: str
    ports: Mapping[str, int] = field(default_factory=dict)  # named container ports


@dataclass
class Cluster:
    """Namespaces (with their labels), pods and NetworkPolicies."""

    namespaces: dict[str, Labels]
    pods: list[Pod]
    policies: list[Manifest]

    def namespace_labels(self, name: str) -> Labels:
        # The API server labels every namespace with its name.
        return {**self.namespaces[name], "kubernetes.io/metadata.name": name}

    def pod_at(self, ip: str) -> Pod | None:
        return next((p for p in self.pods if p.ip == ip), None)

    def _selecting(self, pod: Pod, direction: str) -> list[Manifest]:
        found = []
        for policy in self.policies:
            spec = policy["spec"]
            if policy["metadata"]["namespace"] != pod.namespace:
                continue
            if not selects(spec["podSelector"], pod.labels):
                continue
            types = spec.get("policyTypes") or (
                ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]
            )
            if direction in types:
                found.append(policy)
        return found

    def _peer_matches(self, peer: Mapping[str, Any], namespace: str, ip: str) -> bool:
        """Whether `ip` (a pod's, or an outside address) is one of this peer's, for a policy
        in `namespace`."""
        if "ipBlock" in peer:
            address = ipaddress.ip_address(ip)
            block = peer["ipBlock"]
            if address not in _network(block["cidr"]):
                return False
            return not any(address in _network(e) for e in block.get("except", []))
        pod = self.pod_at(ip)
        if pod is None:
            return False  # selectors choose pods, never an outside address
        if "namespaceSelector" in peer:
            if not selects(peer["namespaceSelector"], self.namespace_labels(pod.namespace)):
                return False
        elif pod.namespace != namespace:
            return False
        return "podSelector" not in peer or selects(peer["podSelector"], pod.labels)

    @staticmethod
    def _ports_match(
        ports: Iterable[Mapping[str, Any]] | None, port: int, protocol: str, target: Pod | None
    ) -> bool:
        if not ports:
            return True
        for entry in ports:
            if entry.get("protocol", "TCP") != protocol:
                continue
            wanted = entry.get("port")
            if wanted is None:
                return True
            if isinstance(wanted, str):
                # A named port means a port of the destination pod by that name.
                if target is not None and target.ports.get(wanted) == port:
                    return True
                continue
            if wanted <= port <= entry.get("endPort", wanted):
                return True
        return False

    def _allowed(
        self,
        policies: list[Manifest],
        direction: str,
        peer_ip: str,
        port: int,
        protocol: str,
        target: Pod | None,
    ) -> bool:
        rules_key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        for policy in policies:
            namespace = policy["metadata"]["namespace"]
            for rule in policy["spec"].get(rules_key) or []:
                peers = rule.get(peers_key)
                if peers and not any(self._peer_matches(p, namespace, peer_ip) for p in peers):
                    continue
                if self._ports_match(rule.get("ports"), port, protocol, target):
                    return True
        return False

    def can_reach(self, source: Pod, ip: str, port: int, protocol: str = "TCP") -> bool:
        """Whether `source` can open a connection to `ip:port`: its egress allows it and, if the
        address is a pod's, that pod's ingress does too."""
        target = self.pod_at(ip)
        egress = self._selecting(source, "Egress")
        if egress and not self._allowed(egress, "Egress", ip, port, protocol, target):
            return False
        if target is None:
            return True
        ingress = self._selecting(target, "Ingress")
        return not ingress or self._allowed(ingress, "Ingress", source.ip, port, protocol, target)


def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr, strict=True)


def api_addresses(cidrs: Iterable[str]) -> list[str]:
    """Addresses that stand for each range: its first, a middle and its last address."""
    addresses = []
    for cidr in cidrs:
        network = _network(cidr)
        middle = network.network_address + network.num_addresses // 2
        addresses += [str(network.network_address), str(middle), str(network.broadcast_address)]
    return addresses


def neighbours(cidrs: Iterable[str]) -> list[str]:
    """Addresses just outside each range: ordinary internet addresses."""
    addresses = []
    for cidr in cidrs:
        network = _network(cidr)
        addresses += [str(network.network_address - 1), str(network.broadcast_address + 1)]
    return addresses


ELSEWHERE = "elsewhere"  # a namespace the chart does not cover


def model_cluster(values: Mapping[str, Any], manifests: list[Manifest]) -> Cluster:
    """The rendered policies over a cluster shaped by these values."""
    covered = [NAMESPACE, *values["networkPolicy"]["defaultEgress"]["namespaces"]]
    namespaces: dict[str, Labels] = {
        n: {} for n in [*covered, ELSEWHERE, "kube-system", "databases", "ingress-nginx"]
    }
    # The production example admits callers from namespaces labelled as clients.
    for name in covered[1:]:
        namespaces[name] = {"ztgate.io/client": "true"}
    template = one(manifests, "Deployment")["spec"]["template"]
    ztgate_labels = template["metadata"]["labels"]
    ztgate_ports = {
        p["name"]: p["containerPort"] for p in template["spec"]["containers"][0]["ports"]
    }
    pods = [
        Pod("ztgate-0", NAMESPACE, ztgate_labels, "10.244.0.10", ztgate_ports),
        Pod("ztgate-1", NAMESPACE, ztgate_labels, "10.244.0.11", ztgate_ports),
        Pod("coredns", "kube-system", {"k8s-app": "kube-dns"}, "10.244.9.2"),
        Pod("postgresql", "databases", {"app.kubernetes.io/name": "postgresql"}, "10.244.8.2"),
        Pod("redis", "databases", {"app.kubernetes.io/name": "redis"}, "10.244.8.3"),
        Pod(
            "ingress-nginx",
            "ingress-nginx",
            {"app.kubernetes.io/name": "ingress-nginx"},
            "10.244.7.2",
        ),
        Pod("worker-outside", ELSEWHERE, {"app": "worker"}, "10.244.6.2"),
    ]
    for index, name in enumerate(covered, start=1):
        pods.append(Pod(f"worker-{name}", name, {"app": "worker"}, f"10.244.{index}.2"))
        # A pod wearing ztgate's own labels outside ztgate's namespace is not ztgate.
        if name != NAMESPACE:
            pods.append(Pod(f"impostor-{name}", name, ztgate_labels, f"10.244.{index}.3"))
    # Another release of something in ztgate's namespace with the same app name.
    pods.append(
        Pod(
            "other-release",
            NAMESPACE,
            {**ztgate_labels, "app.kubernetes.io/instance": "other"},
            "10.244.0.20",
        )
    )
    policies = [m for m in manifests if m["kind"] == "NetworkPolicy"]
    return Cluster(namespaces, pods, policies)


def is_ztgate(pod: Pod) -> bool:
    return pod.name.startswith("ztgate-")


def ways_to_the_api(cluster: Cluster, api: list[str]) -> list[tuple[str, str, int]]:
    """Every (pod, address, port) by which a workload other than ztgate, in a namespace the
    chart covers, reaches the API."""
    return [
        (pod.name, ip, port)
        for pod in cluster.pods
        if not is_ztgate(pod)
        and pod.namespace not in (ELSEWHERE, "kube-system", "databases", "ingress-nginx")
        for ip in api_addresses(api)
        for port in (443, 80, 8443)
        if cluster.can_reach(pod, ip, port)
    ]


@pytest.fixture(scope="module", params=sorted(CASES))
def scene(request: pytest.FixtureRequest) -> tuple[Mapping[str, Any], list[Manifest]]:
    values = render_values(CASES[request.param])
    return values, render(CASES[request.param])


def test_ztgate_reaches_the_api_and_nothing_else_outside(
    scene: tuple[Mapping[str, Any], list[Manifest]],
) -> None:
    values, manifests = scene
    cluster = model_cluster(values, manifests)
    api = values["networkPolicy"]["anthropicCIDRs"]
    ztgate = cluster.pods[0]
    for ip in api_addresses(api):
        assert cluster.can_reach(ztgate, ip, 443), ip
        assert not cluster.can_reach(ztgate, ip, 80), ip
    for ip in neighbours(api):
        assert not cluster.can_reach(ztgate, ip, 443), f"ztgate reaches {ip}, outside the API"


def test_no_other_workload_reaches_the_api(scene: tuple[Mapping[str, Any], list[Manifest]]) -> None:
    values, manifests = scene
    cluster = model_cluster(values, manifests)
    assert ways_to_the_api(cluster, values["networkPolicy"]["anthropicCIDRs"]) == []


def test_every_workload_reaches_ztgate_and_dns(
    scene: tuple[Mapping[str, Any], list[Manifest]],
) -> None:
    values, manifests = scene
    cluster = model_cluster(values, manifests)
    port = values["containerPort"]
    dns = next(p for p in cluster.pods if p.name == "coredns")
    # The callers: the namespaces given the default egress policy for them, and ztgate's own
    # when ztgate admits calls from every namespace (the default).
    callers = set(values["networkPolicy"]["defaultEgress"]["namespaces"])
    if values["networkPolicy"]["ingressFrom"] == [{"namespaceSelector": {}}]:
        callers.add(NAMESPACE)
    assert callers
    for pod in cluster.pods:
        if pod.namespace in ("kube-system", "databases"):
            continue
        assert cluster.can_reach(pod, dns.ip, 53, "UDP"), pod.name
        assert cluster.can_reach(pod, dns.ip, 53, "TCP"), pod.name
        if pod.namespace in callers and not is_ztgate(pod):
            assert cluster.can_reach(pod, "10.244.0.10", port), f"{pod.name} cannot reach ztgate"
    # ztgate takes calls on its port only.
    worker = next(p for p in cluster.pods if p.name == f"worker-{NAMESPACE}")
    assert not cluster.can_reach(worker, "10.244.0.10", 22)


def test_what_the_pair_does_not_cover(scene: tuple[Mapping[str, Any], list[Manifest]]) -> None:
    """Kept honest in docs/deployment.md: a namespace with no default egress policy is not
    restricted by this chart; its pods reach the API."""
    values, manifests = scene
    cluster = model_cluster(values, manifests)
    outside = next(p for p in cluster.pods if p.namespace == ELSEWHERE)
    api = api_addresses(values["networkPolicy"]["anthropicCIDRs"])
    assert all(cluster.can_reach(outside, ip, 443) for ip in api)


def test_production_admits_only_its_callers_and_reaches_its_stores() -> None:
    values = render_values(CASES["production"])
    cluster = model_cluster(values, render(CASES["production"]))
    ztgate = cluster.pods[0]
    port = values["containerPort"]
    by_name = {p.name: p for p in cluster.pods}
    assert cluster.can_reach(by_name["ingress-nginx"], ztgate.ip, port)
    assert not cluster.can_reach(by_name["worker-outside"], ztgate.ip, port)
    assert cluster.can_reach(ztgate, by_name["postgresql"].ip, 5432)
    assert cluster.can_reach(ztgate, by_name["redis"].ip, 6379)
    # Teams reach HTTPS on the internet, just not the API.
    team = by_name["worker-team-a"]
    assert cluster.can_reach(team, "1.1.1.1", 443)
    assert cluster.can_reach(team, "2001:4860:4860::8888", 443)
    assert not cluster.can_reach(team, "1.1.1.1", 80)


# The policy sets below each leave some workload a way to the API; the evaluator must find it.
def _drop_default_egress(policies: list[Manifest]) -> None:
    policies[:] = [p for p in policies if not p["metadata"]["name"].endswith("-default-egress")]


def _open_the_api_in_the_default(policies: list[Manifest]) -> None:
    default = next(p for p in policies if p["metadata"]["name"].endswith("-default-egress"))
    default["spec"]["egress"].append({"to": [{"ipBlock": {"cidr": "160.79.104.0/23"}}]})


def _widen_ztgates_selector(policies: list[Manifest]) -> None:
    gateway = next(
        p for p in policies if p["metadata"]["labels"]["ztgate.io/network-policy"] == "gateway"
    )
    gateway["spec"]["podSelector"] = {}


def _select_by_app_name_only(policies: list[Manifest]) -> None:
    gateway = next(
        p for p in policies if p["metadata"]["labels"]["ztgate.io/network-policy"] == "gateway"
    )
    gateway["spec"]["podSelector"]["matchLabels"].pop("app.kubernetes.io/instance")


def _forget_egress_isolation(policies: list[Manifest]) -> None:
    for policy in policies:
        if policy["metadata"]["name"].endswith("-default-egress"):
            policy["spec"]["policyTypes"] = ["Ingress"]


def _allow_every_port_anywhere(policies: list[Manifest]) -> None:
    default = next(p for p in policies if p["metadata"]["name"].endswith("-default-egress"))
    default["spec"]["egress"].append({"ports": [{"protocol": "TCP", "port": 443}]})


def _drop_an_exception(policies: list[Manifest]) -> None:
    for policy in policies:
        for rule in policy["spec"]["egress"]:
            for peer in rule.get("to", []):
                if peer.get("ipBlock", {}).get("cidr") == "0.0.0.0/0":
                    peer["ipBlock"]["except"].remove("160.79.104.0/23")


LEAKS = {
    "default-egress-dropped": ("defaults", _drop_default_egress),
    "api-opened-in-the-default": ("defaults", _open_the_api_in_the_default),
    "ztgate-selector-widened": ("defaults", _widen_ztgates_selector),
    "ztgate-selected-by-app-name": ("defaults", _select_by_app_name_only),
    "egress-not-isolated": ("minimal", _forget_egress_isolation),
    "rule-without-to": ("minimal", _allow_every_port_anywhere),
    "exception-dropped": ("production", _drop_an_exception),
}


@pytest.mark.parametrize("leak", sorted(LEAKS))
def test_a_way_to_the_api_for_another_workload_is_caught(leak: str) -> None:
    case, mutate = LEAKS[leak]
    values = render_values(CASES[case])
    manifests = render(CASES[case])
    cluster = model_cluster(values, manifests)
    api = values["networkPolicy"]["anthropicCIDRs"]
    assert ways_to_the_api(cluster, api) == [], "the rendered policies already leak"
    mutate(cluster.policies)
    assert ways_to_the_api(cluster, api), f"{leak}: the evaluator found no way out"


def test_the_evaluator_follows_label_selectors() -> None:
    """The selector semantics the rest relies on, including the ones the chart does not use."""
    labels = {"app": "worker", "tier": "back"}
    assert selects({}, labels)
    assert selects({"matchLabels": {"app": "worker"}}, labels)
    assert not selects({"matchLabels": {"app": "web"}}, labels)
    assert selects(
        {"matchExpressions": [{"key": "app", "operator": "In", "values": ["worker"]}]}, labels
    )
    assert selects(
        {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["x"]}]}, labels
    )
    assert not selects(
        {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["back"]}]}, labels
    )
    assert selects({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, labels)
    assert not selects({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, labels)
    # Named ports and port ranges.
    pod = Pod("db", "data", {}, "10.0.0.2", {"pg": 5432})
    assert Cluster._ports_match([{"port": "pg"}], 5432, "TCP", pod)
    assert not Cluster._ports_match([{"port": "pg"}], 5432, "TCP", None)
    assert Cluster._ports_match([{"port": 8000, "endPort": 8100}], 8080, "TCP", None)
    assert not Cluster._ports_match([{"port": 53, "protocol": "UDP"}], 53, "TCP", None)
    # A pod no policy selects may send anywhere; one that is selected, only where allowed.
    free = Pod("free", "open", {}, "10.0.0.3")
    isolated = Pod("isolated", "closed", {}, "10.0.0.4")
    deny_all = {
        "metadata": {"namespace": "closed"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"]},
    }
    cluster = Cluster({"open": {}, "closed": {}}, [free, isolated], [copy.deepcopy(deny_all)])
    assert cluster.can_reach(free, "203.0.113.7", 443)
    assert not cluster.can_reach(isolated, "203.0.113.7", 443)
    assert not cluster.can_reach(isolated, free.ip, 443)
