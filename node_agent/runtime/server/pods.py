"""Pod sandboxes over CRI: namespaces, pod network, cgroup, and their teardown.

RunPodSandbox records the sandbox (phase "creating") before any work, then
creates the network namespace, plugs it into the node bridge (an IP from the
pod CIDR), creates the IPC/UTS namespaces and the pod cgroup, applies
sysctls, and marks it ready. Any failure, now or found after a crash,
is undone by `destroy`, which is also RemovePodSandbox: idempotent, and the
record goes only when every piece is gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time

from ..api import runtime_pb2 as pb
from ..container import namespaces as ns_files
from ..network import create_netns, delete_netns, is_netns, setup_pod_network, teardown_pod_network
from ..sandbox import SandboxError, SandboxSpec
from . import containers, messages, sysctls
from .errors import AlreadyExists, FailedPrecondition, InvalidArgument, Unimplemented
from .records import CREATING, READY, STOPPED, SandboxRecord, new_id
from .runtime import Runtime
from .specs import resources

log = logging.getLogger(__name__)

_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,62}[A-Za-z0-9])?$")
_CGROUP = re.compile(r"^[A-Za-z0-9_.:@-]+(/[A-Za-z0-9_.:@-]+)*$")


# -- validation --

def _check(cfg: pb.PodSandboxConfig, handler: str, default_parent: str) -> tuple[bool, str, str, dict[str, str]]:
    """(host network, hostname, cgroup parent, sysctls) of a valid config, else InvalidArgument."""
    md = cfg.metadata
    if not md.name:
        raise InvalidArgument("RunPodSandbox: config.metadata.name is empty; give the pod's name")
    where = f"pod sandbox {md.namespace + '/' if md.namespace else ''}{md.name}"
    if handler:
        raise InvalidArgument(f"{where}: runtime_handler {handler!r} is unknown; leave it empty")
    opts = cfg.linux.security_context.namespace_options
    if opts.network not in (pb.POD, pb.NODE):
        raise Unimplemented(f"{where}: network namespace mode {pb.NamespaceMode.Name(opts.network)} is not "
                            "supported; use POD or NODE")
    if opts.ipc != pb.POD:
        raise Unimplemented(f"{where}: ipc namespace mode {pb.NamespaceMode.Name(opts.ipc)} is not supported; "
                            "pods always get their own IPC namespace (POD)")
    if opts.pid in (pb.NODE, pb.TARGET):
        raise Unimplemented(f"{where}: pid namespace mode {pb.NamespaceMode.Name(opts.pid)} is not supported")
    host_network = opts.network == pb.NODE
    hostname = cfg.hostname or md.name[:63].rstrip("-.")
    if not _HOSTNAME.match(hostname):
        raise InvalidArgument(f"{where}: hostname {hostname!r} is not a valid host name "
                              "(letters, digits, '-' and '.', at most 64 characters)")
    for i, pm in enumerate(cfg.port_mappings):
        if pm.host_port:
            raise Unimplemented(f"{where}: port_mappings[{i}].host_port {pm.host_port}: host ports are not "
                                "supported by this runtime yet; use a Service")
    parent = cfg.linux.cgroup_parent.strip("/") or default_parent
    if not _CGROUP.match(parent) or ".." in parent.split("/"):
        raise InvalidArgument(f"{where}: linux.cgroup_parent {cfg.linux.cgroup_parent!r} is not a valid "
                              "cgroup path (e.g. kubepods/burstable)")
    if cfg.log_directory and not os.path.isabs(cfg.log_directory):
        raise InvalidArgument(f"{where}: log_directory {cfg.log_directory!r} must be absolute")
    return host_network, hostname, parent, sysctls.validate(dict(cfg.linux.sysctls), host_network, where)


def hosts_file(hostname: str, ip: str | None) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    if ip:
        lines.append(f"{ip}\t{hostname}")
    else:
        lines.append(f"127.0.1.1\t{hostname}")
    return "\n".join(lines) + "\n"


def resolv_conf(dns: pb.DNSConfig) -> str | None:
    if not (dns.servers or dns.searches or dns.options):
        return None  # the node's, without loopback resolvers
    lines = [f"nameserver {s}" for s in dns.servers]
    if dns.searches:
        lines.append("search " + " ".join(dns.searches))
    if dns.options:
        lines.append("options " + " ".join(dns.options))
    return "\n".join(lines) + "\n"


# -- lifecycle --

def run_sandbox(rt: Runtime, req: pb.RunPodSandboxRequest) -> str:
    cfg = req.config
    host_network, hostname, parent, wanted_sysctls = _check(cfg, req.runtime_handler, rt.opts.cgroup_parent)
    if not host_network and not rt.network_ready:
        raise FailedPrecondition(f"the pod network is not ready ({rt.network_error}); fix it and restart "
                                 "the runtime, or use the node's network (namespace_options.network=NODE)")
    md = cfg.metadata
    sid = new_id()
    rec = SandboxRecord(id=sid, name=f"{md.name}_{md.namespace}_{md.uid}_{md.attempt}", config=messages.to_dict(cfg),
                        created_at=time.time_ns(), cgroup_parent=parent, host_network=host_network)
    taken = rt.records.claim_sandbox(rec)
    if taken is not None:
        raise AlreadyExists(f"pod sandbox name {rec.name!r} is in use by sandbox {taken.id}; remove it "
                            "first or raise metadata.attempt")
    messages.remember_sandbox_config(rec, cfg)
    log.info("sandbox=%s name=%s msg=creating", sid, rec.name)
    with rt.sandbox_lock(sid):
        try:
            if not host_network:
                # Not saved until ready: a crash before that leaves a "creating" record, and
                # destroy finds the namespace (its path is the ID) and the address (IPAM
                # knows it by ID) without them; each save is a file created, in a burst.
                rec.netns = create_netns(sid, rt.netns_dir)
                rec.ip = setup_pod_network(rec.netns, sid, rt.network).ip
            st = rt.sandboxes.create(SandboxSpec(
                id=sid, hostname=hostname, netns_path=rec.netns or rt.host_netns(),
                resources=resources(cfg.linux.resources if cfg.linux.HasField("resources") else None,
                                    f"pod sandbox {md.name}"),
                cgroup_parent=parent, hosts=hosts_file(hostname, rec.ip),
                resolv_conf=resolv_conf(cfg.dns_config),
                labels=dict(cfg.labels), annotations=dict(cfg.annotations)))
            sysctls.apply(rt.sys, wanted_sysctls, st.namespaces, f"pod sandbox {md.name}")
            rec.phase = READY
            rt.records.save_sandbox(rec)
        except BaseException:
            try:
                destroy(rt, sid)
            except Exception as e:  # the record stays: the next start's recovery retries
                log.error("sandbox=%s msg=cleanup after a failed create failed error=%s", sid, e)
            raise
    log.info("sandbox=%s ip=%s msg=ready", sid, rec.ip)
    return sid


def stop_sandbox(rt: Runtime, ref: str) -> None:
    """Kill every container, then free the pod's IP; the namespaces stay until removal."""
    rec = rt.records.sandbox(ref)
    with rt.sandbox_lock(rec.id):
        for c in rt.records.containers_of(rec.id):
            containers.kill_quietly(rt, c.id)
        with contextlib.suppress(SandboxError):
            rt.sandboxes.stop(rec.id)
        if rec.ip is not None:
            teardown_pod_network(rec.id, rt.network, rec.netns)
            rec.ip = None
        if rec.phase != STOPPED:
            rec.phase = STOPPED
            rt.records.save_sandbox(rec)
    log.info("sandbox=%s msg=stopped", rec.id)


def remove_sandbox(rt: Runtime, ref: str) -> None:
    rec = rt.records.find_sandbox(ref)
    if rec is None:
        return  # CRI: removing a removed sandbox is not an error
    with rt.sandbox_lock(rec.id):
        destroy(rt, rec.id)
    rt.forget_lock(rec.id)
    log.info("sandbox=%s msg=removed", rec.id)


def destroy(rt: Runtime, sid: str) -> None:
    """Remove every trace of sandbox `sid`, whatever state a crash left it in; idempotent.

    Tries every step; raises the first failure after trying the rest, and
    keeps the record then, so that a retry (or the next start) finishes.
    """
    rec = rt.records.sandboxes.get(sid)
    errors: list[BaseException] = []

    def step(fn, *args) -> None:  # type: ignore[no-untyped-def]
        try:
            fn(*args)
        except Exception as e:
            log.error("sandbox=%s step=%s error=%s", sid, getattr(fn, "__name__", fn), e)
            errors.append(e)

    for c in rt.records.containers_of(sid):
        step(containers.destroy, rt, c.id)
    for st in rt.containers.list():  # created by a CreateContainer that died before its record
        if st.sandbox_id == sid and st.id not in rt.records.containers:
            step(rt.containers.remove, st.id)
    step(_remove_namespaces_and_cgroup, rt, sid, rec.cgroup_parent if rec else rt.opts.cgroup_parent)
    netns = rec.netns if rec else None
    if netns is None and os.path.lexists(os.path.join(rt.netns_dir, sid)):
        netns = os.path.join(rt.netns_dir, sid)
    if rec is None or not rec.host_network:
        step(teardown_pod_network, sid, rt.network, netns if netns and is_netns(netns) else None)
    if netns is not None:
        step(delete_netns, sid, rt.netns_dir)
    if errors:
        raise errors[0]
    rt.records.drop_sandbox(sid)


def _remove_namespaces_and_cgroup(rt: Runtime, sid: str, parent: str) -> None:
    try:
        rt.sandboxes.remove(sid)
        return
    except SandboxError:
        pass  # no sandbox.json: a create that died early; clean up what it may have made
    d = rt.sandboxes.state_dir(sid)
    ns_dir = os.path.join(d, "ns")
    for name in os.listdir(ns_dir) if os.path.isdir(ns_dir) else ():
        ns_files.release(rt.sys, os.path.join(ns_dir, name))
    cgroup = f"{parent.strip('/')}/{sid}"
    if rt.cgroups.exists(cgroup):
        rt.cgroups.kill(cgroup)
        rt.cgroups.remove(cgroup)
    shutil.rmtree(d, ignore_errors=True)


# -- queries --

def state_of(rt: Runtime, rec: SandboxRecord) -> int:
    return pb.SANDBOX_READY if rt.sandbox_ready(rec) else pb.SANDBOX_NOTREADY


def sandbox_status(rt: Runtime, ref: str, verbose: bool) -> pb.PodSandboxStatusResponse:
    rec = rt.records.sandbox(ref)
    cfg = messages.sandbox_config(rec)
    status = pb.PodSandboxStatus(
        id=rec.id, metadata=cfg.metadata, state=state_of(rt, rec),  # type: ignore[arg-type]
        created_at=rec.created_at, network=pb.PodSandboxNetworkStatus(ip=rec.ip or ""),
        linux=pb.LinuxPodSandboxStatus(namespaces=pb.Namespace(options=pb.NamespaceOption(
            network=pb.NODE if rec.host_network else pb.POD, pid=pb.CONTAINER, ipc=pb.POD))),
        labels=dict(cfg.labels), annotations=dict(cfg.annotations))
    resp = pb.PodSandboxStatusResponse(status=status, timestamp=time.time_ns())
    if verbose:
        info: dict[str, object] = {"phase": rec.phase, "netns": rec.netns, "ip": rec.ip,
                                   "cgroupParent": rec.cgroup_parent, "config": rec.config}
        with contextlib.suppress(SandboxError):
            st = rt.sandboxes.status(rec.id)
            info.update(namespaces=st.namespaces, cgroup=st.cgroup, hostname=st.hostname)
        resp.info["info"] = json.dumps(info)
    return resp


def list_sandboxes(rt: Runtime, f: pb.PodSandboxFilter | None) -> list[pb.PodSandbox]:
    with rt.records.lock:
        recs = sorted(rt.records.sandboxes.values(), key=lambda r: r.created_at)
    out = []
    for rec in recs:
        if rec.phase == CREATING:
            continue
        if f is not None and f.id and not rec.id.startswith(f.id):
            continue
        labels = rec.config.get("labels") or {}  # on the stored JSON: parsing is the costly part
        if f is not None and any(labels.get(k) != v for k, v in f.label_selector.items()):
            continue
        state = state_of(rt, rec)
        if f is not None and f.HasField("state") and f.state.state != state:
            continue
        out.append(messages.sandbox(rec, state))
    return out
