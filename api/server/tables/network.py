"""Rows for services, endpoints, endpoint slices and network policies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from timonel.api.server.tables.common import (
    AGE,
    CORE,
    NAME,
    Column,
    Obj,
    Printer,
    age,
    format_label_selector,
    format_labels,
    items,
    join_host_port,
    list_with_more,
    name,
    num,
    sub,
    text,
)

# -- Service ------------------------------------------------------------------

SERVICE_COLUMNS = (
    NAME,
    Column("Type", doc=CORE + "ServiceSpec#type"),
    Column("Cluster-IP", doc=CORE + "ServiceSpec#clusterIP"),
    Column("External-IP", doc=CORE + "ServiceSpec#externalIPs"),
    Column("Port(s)", doc=CORE + "ServiceSpec#ports"),
    AGE,
    Column("Selector", priority=1, doc=CORE + "ServiceSpec#selector"),
)


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _load_balancer_ips(status: Obj) -> list[str]:
    found = {text(i.get("ip")) or text(i.get("hostname"))
             for i in items(sub(status, "loadBalancer"), "ingress")}
    found.discard("")
    return sorted(found)


def external_ip(svc: Obj) -> str:
    spec = sub(svc, "spec")
    external = _strings(spec.get("externalIPs"))
    svc_type = text(spec.get("type")) or "ClusterIP"
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if svc_type == "LoadBalancer":
        # The server builds the table "wide", so the list is never clipped.
        lb = _load_balancer_ips(sub(svc, "status"))
        if external:
            return ",".join([*lb, *external])
        return ",".join(lb) or "<pending>"
    if svc_type == "ExternalName":
        return text(spec.get("externalName"))
    return "<unknown>"


def port_string(ports: list[Obj]) -> str:
    pieces = []
    for p in ports:
        protocol = text(p.get("protocol")) or "TCP"
        node_port = num(p.get("nodePort"))
        if node_port > 0:
            pieces.append(f"{num(p.get('port'))}:{node_port}/{protocol}")
        else:
            pieces.append(f"{num(p.get('port'))}/{protocol}")
    return ",".join(pieces)


def service_cells(svc: Obj, now: datetime) -> list[Any]:
    spec = sub(svc, "spec")
    cluster_ips = _strings(spec.get("clusterIPs"))
    cluster_ip = cluster_ips[0] if cluster_ips else text(spec.get("clusterIP"))
    return [name(svc), text(spec.get("type")) or "ClusterIP", cluster_ip or "<none>",
            external_ip(svc), port_string(items(spec, "ports")) or "<none>", age(svc, now),
            format_labels(spec.get("selector"))]


# -- Endpoints ----------------------------------------------------------------

ENDPOINTS_COLUMNS = (NAME, Column("Endpoints", doc=CORE + "Endpoints#subsets"), AGE)


def format_endpoints(obj: Obj) -> str:
    subsets = items(obj, "subsets")
    if not subsets:
        return "<none>"
    shown: list[str] = []
    limit, more, count = 3, False, 0
    for ss in subsets:
        addresses = items(ss, "addresses")
        ports = items(ss, "ports")
        # Headless services may have no ports: list the bare addresses.
        shown_ports: list[dict[str, Any] | None] = list(ports) or [None]
        for port in shown_ports:
            count += len(addresses)
            for addr in addresses:
                if len(shown) == limit:
                    more = True
                    break
                ip = text(addr.get("ip"))
                shown.append(ip if port is None else join_host_port(ip, num(port.get("port"))))
    joined = ",".join(shown)
    return f"{joined} + {count - limit} more..." if more else joined


def endpoints_cells(obj: Obj, now: datetime) -> list[Any]:
    return [name(obj), format_endpoints(obj), age(obj, now)]


# -- EndpointSlice ------------------------------------------------------------

_DISCOVERY = "io.k8s.api.discovery.v1.EndpointSlice#"
ENDPOINTSLICE_COLUMNS = (
    NAME,
    Column("AddressType", doc=_DISCOVERY + "addressType"),
    Column("Ports", doc=_DISCOVERY + "ports"),
    Column("Endpoints", doc=_DISCOVERY + "endpoints"),
    AGE,
)


def _limited(values: list[str], limit: int = 3) -> str:
    return list_with_more(values[:limit], len(values) > limit, len(values), limit)


def endpointslice_cells(obj: Obj, now: datetime) -> list[Any]:
    ports = []
    for p in items(obj, "ports"):
        port = p.get("port")
        if isinstance(port, int) and not isinstance(port, bool):
            ports.append(str(port))
        elif isinstance(p.get("name"), str):
            ports.append(p["name"])
        else:
            ports.append("*")
    addresses = [a for e in items(obj, "endpoints") for a in _strings(e.get("addresses"))]
    return [name(obj), text(obj.get("addressType")), _limited(ports), _limited(addresses),
            age(obj, now)]


# -- NetworkPolicy ------------------------------------------------------------

NETWORKPOLICY_COLUMNS = (
    NAME,
    Column("Pod-Selector", doc="io.k8s.api.networking.v1.NetworkPolicySpec#podSelector"),
    AGE,
)


def networkpolicy_cells(obj: Obj, now: datetime) -> list[Any]:
    # podSelector is a struct, not a pointer, upstream: absent reads as {}.
    return [name(obj), format_label_selector(sub(obj, "spec").get("podSelector") or {}),
            age(obj, now)]


PRINTERS = {
    ("", "Service"): Printer(SERVICE_COLUMNS, service_cells),
    ("", "Endpoints"): Printer(ENDPOINTS_COLUMNS, endpoints_cells),
    ("discovery.k8s.io", "EndpointSlice"): Printer(ENDPOINTSLICE_COLUMNS, endpointslice_cells),
    ("networking.k8s.io", "NetworkPolicy"): Printer(NETWORKPOLICY_COLUMNS, networkpolicy_cells),
}
