"""A pod spec turned into the runtime's sandbox and container configs.

Labels on sandboxes and containers carry the pod's identity (upstream's
`io.kubernetes.*` keys), so a restarted agent finds its pods in the runtime
alone.
"""

from __future__ import annotations

import os
from typing import Any

from timonel.api.quantity import int_value, milli_value
from timonel.node_agent.runtime.api import runtime_pb2 as pb

from .envvars import ConfigError
from .volumes import MountSpec

Obj = dict[str, Any]

POD_UID = "io.kubernetes.pod.uid"
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
CONTAINER_NAME = "io.kubernetes.container.name"
NODE = "timonel.io/node"
# "init" or "regular": init containers run to completion before the others.
CONTAINER_KIND = "timonel.io/container-kind"

CPU_PERIOD = 100_000
MIN_SHARES = 2


def pod_labels(pod: Obj, node: str) -> dict[str, str]:
    md = pod["metadata"]
    return {POD_UID: str(md["uid"]), POD_NAME: str(md["name"]),
            POD_NAMESPACE: str(md.get("namespace", "")), NODE: node}


def log_directory(data_dir: str, pod: Obj) -> str:
    md = pod["metadata"]
    return os.path.join(data_dir, "logs", f"{md.get('namespace')}_{md['name']}_{md['uid']}")


def _requests_limits(c: Obj) -> tuple[dict[str, Any], dict[str, Any]]:
    res = c.get("resources") or {}
    limits = dict(res.get("limits") or {})
    # A limit without a request makes the request equal to the limit (API defaulting).
    requests = {**limits, **(res.get("requests") or {})}
    return requests, limits


def qos_class(pod: Obj) -> str:
    spec = pod.get("spec") or {}
    containers = list(spec.get("initContainers") or []) + list(spec.get("containers") or [])
    any_set, guaranteed = False, True
    for c in containers:
        requests, limits = _requests_limits(c)
        for r in ("cpu", "memory"):
            if r in requests or r in limits:
                any_set = True
            if r not in limits or _value(r, requests.get(r)) != _value(r, limits[r]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _value(resource: str, q: Any) -> int:
    if q is None:
        return -1
    return milli_value(q) if resource == "cpu" else int_value(q)


def linux_resources(pod: Obj, c: Obj, memory_capacity: int) -> pb.LinuxContainerResources:
    requests, limits = _requests_limits(c)
    r = pb.LinuxContainerResources()
    if "cpu" in limits:
        r.cpu_period = CPU_PERIOD
        r.cpu_quota = max(1000, milli_value(limits["cpu"]) * CPU_PERIOD // 1000)
    r.cpu_shares = max(MIN_SHARES, milli_value(requests["cpu"]) * 1024 // 1000) \
        if "cpu" in requests else MIN_SHARES
    if "memory" in limits:
        r.memory_limit_in_bytes = int_value(limits["memory"])
    qos = qos_class(pod)
    if qos == "Guaranteed":
        r.oom_score_adj = -997
    elif qos == "BestEffort":
        r.oom_score_adj = 1000
    else:
        mem = int_value(requests["memory"]) if "memory" in requests else 0
        adj = 1000 - (1000 * mem) // max(memory_capacity, 1)
        r.oom_score_adj = min(max(adj, 2), 999)
    return r


def _seccomp(sc: Obj) -> pb.SecurityProfile | None:
    prof = sc.get("seccompProfile")
    if not prof:
        return None
    kind = prof.get("type")
    if kind == "RuntimeDefault":
        return pb.SecurityProfile(profile_type=pb.SecurityProfile.RuntimeDefault)
    if kind == "Localhost":
        return pb.SecurityProfile(profile_type=pb.SecurityProfile.Localhost,
                                  localhost_ref=str(prof.get("localhostProfile", "")))
    return pb.SecurityProfile(profile_type=pb.SecurityProfile.Unconfined)


def effective_security(pod: Obj, c: Obj) -> Obj:
    """The container's securityContext with the pod's defaults filled in."""
    psc = (pod.get("spec") or {}).get("securityContext") or {}
    csc = dict(c.get("securityContext") or {})
    for key in ("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile"):
        if key not in csc and key in psc:
            csc[key] = psc[key]
    return csc


def check_non_root(pod: Obj, c: Obj, image: pb.Image | None) -> None:
    """runAsNonRoot is enforced at start, against the image's user when the pod names none."""
    sc = effective_security(pod, c)
    if not sc.get("runAsNonRoot"):
        return
    if sc.get("runAsUser") is not None:
        if int(sc["runAsUser"]) == 0:
            raise ConfigError("container's runAsUser breaks non-root policy")
        return
    if image is not None and image.username and not image.username.isdigit():
        raise ConfigError(f"container has runAsNonRoot and image has non-numeric user "
                          f"({image.username}), cannot verify user is non-root")
    uid = image.uid.value if image is not None and image.HasField("uid") else 0
    if uid == 0:
        raise ConfigError("container has runAsNonRoot and image will run as root")


def linux_security(pod: Obj, c: Obj) -> pb.LinuxContainerSecurityContext:
    sc = effective_security(pod, c)
    psc = (pod.get("spec") or {}).get("securityContext") or {}
    out = pb.LinuxContainerSecurityContext()
    if sc.get("runAsUser") is not None:
        out.run_as_user.value = int(sc["runAsUser"])
    if sc.get("runAsGroup") is not None:
        out.run_as_group.value = int(sc["runAsGroup"])
    groups = [int(g) for g in psc.get("supplementalGroups") or []]
    if psc.get("fsGroup") is not None:
        groups.append(int(psc["fsGroup"]))
    out.supplemental_groups.extend(groups)
    caps = sc.get("capabilities") or {}
    out.capabilities.add_capabilities.extend(str(x) for x in caps.get("add") or [])
    out.capabilities.drop_capabilities.extend(str(x) for x in caps.get("drop") or [])
    out.privileged = bool(sc.get("privileged"))
    out.readonly_rootfs = bool(sc.get("readOnlyRootFilesystem"))
    # As upstream: no_new_privs only when escalation is explicitly refused.
    out.no_new_privs = sc.get("allowPrivilegeEscalation") is False and not out.privileged
    prof = _seccomp(sc)
    if prof is not None:
        out.seccomp.CopyFrom(prof)
    return out


def sandbox_config(pod: Obj, node: str, data_dir: str, attempt: int) -> pb.PodSandboxConfig:
    md = pod["metadata"]
    spec = pod.get("spec") or {}
    psc = spec.get("securityContext") or {}
    cfg = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=str(md["name"]), uid=str(md["uid"]),
                                       namespace=str(md.get("namespace", "")), attempt=attempt),
        hostname=str(spec.get("hostname") or md["name"])[:63],
        log_directory=log_directory(data_dir, pod),
        labels=pod_labels(pod, node),
    )
    for c in spec.get("containers") or []:
        for port in c.get("ports") or []:
            cfg.port_mappings.append(pb.PortMapping(
                protocol=pb.Protocol.Value(str(port.get("protocol") or "TCP")),
                container_port=int(port["containerPort"]), host_port=int(port.get("hostPort") or 0),
                host_ip=str(port.get("hostIP") or "")))
    ns_opts = cfg.linux.security_context.namespace_options
    ns_opts.network = pb.NODE if spec.get("hostNetwork") else pb.POD
    if psc.get("runAsUser") is not None:
        cfg.linux.security_context.run_as_user.value = int(psc["runAsUser"])
    if psc.get("runAsGroup") is not None:
        cfg.linux.security_context.run_as_group.value = int(psc["runAsGroup"])
    for sysctl in psc.get("sysctls") or []:
        cfg.linux.sysctls[str(sysctl["name"])] = str(sysctl["value"])
    return cfg


def container_config(pod: Obj, c: Obj, kind: str, attempt: int, node: str, image_ref: str,
                     command: list[str], args: list[str], env: list[tuple[str, str]],
                     mounts: list[MountSpec], memory_capacity: int) -> pb.ContainerConfig:
    name = str(c["name"])
    cfg = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=name, attempt=attempt),
        image=pb.ImageSpec(image=image_ref, user_specified_image=str(c.get("image", ""))),
        command=command, args=args, working_dir=str(c.get("workingDir") or ""),
        envs=[pb.KeyValue(key=k, value=v) for k, v in env],
        mounts=[pb.Mount(container_path=m.container_path, host_path=m.host_path,
                         readonly=m.readonly) for m in mounts],
        labels={**pod_labels(pod, node), CONTAINER_NAME: name, CONTAINER_KIND: kind},
        log_path=f"{name}/{attempt}.log",
        stdin=bool(c.get("stdin")), stdin_once=bool(c.get("stdinOnce")), tty=bool(c.get("tty")),
    )
    cfg.linux.resources.CopyFrom(linux_resources(pod, c, memory_capacity))
    cfg.linux.security_context.CopyFrom(linux_security(pod, c))
    return cfg
