"""PodTopologySpread's system defaults: pods of one Service, ReplicaSet or
StatefulSet spread over hostnames and zones even without constraints of
their own. The owners come from real informers filled from lists."""

from __future__ import annotations

from tests.unit.scheduler.conftest import node, pod, run_scores, snapshot
from timonel.api.client import Client, Informer
from timonel.api.client.informer import namespace_index
from timonel.api.kubeconfig import ClusterConfig
from timonel.scheduler.owners import OwnerSelectors
from timonel.scheduler.plugins import podtopologyspread

ZONE = "topology.kubernetes.io/zone"


def _informer(rtype: tuple[str, str], items: list[dict[str, object]]) -> Informer:
    inf = Informer(Client(ClusterConfig(server="http://127.0.0.1:9")), rtype)
    if rtype[1] == "Service":
        inf.add_index("namespace", namespace_index)
    inf.replace(items, "1")
    return inf


def _owners(services: list[dict[str, object]] = (), replicasets: list[dict[str, object]] = ()  # type: ignore[assignment]
            ) -> OwnerSelectors:
    return OwnerSelectors(_informer(("v1", "Service"), list(services)),
                          _informer(("apps/v1", "ReplicaSet"), list(replicasets)),
                          _informer(("apps/v1", "StatefulSet"), []))


def _rs_pod(name: str, node_name: str = "") -> dict[str, object]:
    p = pod(name, labels={"app": "web", "pod-template-hash": "abc"}, node_name=node_name)
    p["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                         "name": "web-abc", "uid": "rs", "controller": True}]
    return p


RS = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
      "metadata": {"name": "web-abc", "namespace": "default"},
      "spec": {"selector": {"matchLabels": {"app": "web", "pod-template-hash": "abc"}}}}


def test_replicaset_pods_spread_over_nodes_by_default() -> None:
    nodes = [node(n, labels={ZONE: z}) for n, z in (("a1", "a"), ("a2", "a"), ("b1", "b"))]
    snap = snapshot(nodes, [_rs_pod("w1", "a1"), _rs_pod("w2", "a1"), _rs_pod("w3", "a2")])
    snap.default_spread_selector = _owners(replicasets=[RS])
    scores = run_scores(podtopologyspread.new(), _rs_pod("w4"), snap)
    assert scores["b1"] == 100 and scores["b1"] > scores["a2"] > scores["a1"]


def test_service_selector_counts_and_unowned_pods_are_not_spread() -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "default"},
           "spec": {"selector": {"app": "api"}}}
    nodes = [node("n1"), node("n2")]
    snap = snapshot(nodes, [pod("x", labels={"app": "api"}, node_name="n1")])
    snap.default_spread_selector = _owners(services=[svc])
    scores = run_scores(podtopologyspread.new(), pod(labels={"app": "api"}), snap)
    assert scores["n2"] > scores["n1"]
    # A pod no Service or controller selects gets no default constraints.
    assert run_scores(podtopologyspread.new(), pod(labels={"app": "other"}), snap) == {
        "n1": 0, "n2": 0}
