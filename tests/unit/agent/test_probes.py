"""Probe workers: defaults, thresholds, initial delay, startup gating, the
verdict table the status reads, and the network actions against loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from timonel.node_agent.agent import handlers
from timonel.node_agent.agent.handlers import HandlerError, Outcome, Target
from timonel.node_agent.agent.probes import ProbeManager, Worker, observe, probe_spec
from timonel.node_agent.agent.status import PodRuntimeState, pod_status
from timonel.node_agent.runtime.api import runtime_pb2 as pb

START = 1_000.0  # the containers' start, wall-clock seconds


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    async def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


class Script:
    """Probe results handed out in order, and who asked."""

    def __init__(self, *results: bool) -> None:
        self.results = list(results)
        self.calls: list[str] = []

    async def __call__(self, w: Worker) -> Outcome:
        self.calls.append(f"{w.name}/{w.kind}")
        ok = self.results.pop(0)
        return Outcome(ok, "" if ok else "boom")


def pod(**probes: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "app", "image": "busybox", **{f"{k}Probe": v for k, v in probes.items()}}
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": [c]}, "status": {}}


def running(cid: str = "c1", name: str = "app") -> PodRuntimeState:
    st = pb.ContainerStatus(id=cid, metadata=pb.ContainerMetadata(name=name), state=pb.CONTAINER_RUNNING,
                            started_at=int(START * 1e9))
    return PodRuntimeState(sandbox_ip="10.0.0.5", sandbox_ready=True, containers={name: [st]})


def manager(script: Script, now: list[float], changes: list[str] | None = None,
            recorder: Recorder | None = None) -> ProbeManager:
    out = changes if changes is not None else []
    return ProbeManager(None, recorder, out.append, runner=script, clock=lambda: now[0],  # type: ignore[arg-type]
                        spawn=False)


EXEC = {"exec": {"command": ["true"]}}


def test_defaults_and_liveness_needs_one_success() -> None:
    s = probe_spec("readiness", EXEC)
    assert (s.initial_delay, s.period, s.timeout, s.success_threshold, s.failure_threshold, s.grace) == \
        (0.0, 10.0, 1.0, 1, 3, None)
    s = probe_spec("liveness", {**EXEC, "successThreshold": 3, "periodSeconds": 2, "timeoutSeconds": 5,
                                "terminationGracePeriodSeconds": 7})
    assert (s.success_threshold, s.period, s.timeout, s.grace) == (1, 2.0, 5.0, 7)
    assert probe_spec("readiness", {**EXEC, "successThreshold": 2}).success_threshold == 2


def test_thresholds_count_results_in_a_row() -> None:
    w = Worker("u", "c", "readiness", "id", probe_spec("readiness", {**EXEC, "successThreshold": 2,
                                                                     "failureThreshold": 2}),
               0.0, {}, {}, "s", "", result=False)
    assert not observe(w, True) and w.result is False      # 1 of 2 successes
    assert observe(w, True) and w.result is True           # 2 of 2: ready
    assert not observe(w, False) and w.result is True      # 1 of 2 failures
    assert not observe(w, True) and w.result is True       # the run starts over
    assert not observe(w, False)
    assert observe(w, False) and w.result is False
    assert not w.on_hold  # readiness keeps probing


def test_liveness_failure_holds_the_worker() -> None:
    w = Worker("u", "c", "liveness", "id", probe_spec("liveness", {**EXEC, "failureThreshold": 2}),
               0.0, {}, {}, "s", "", result=True)
    assert not observe(w, False)
    assert observe(w, False) and w.result is False and w.on_hold


async def test_readiness_false_until_first_success_then_flips_back() -> None:
    now, changes, rec = [START + 5], list[str](), Recorder()
    m = manager(Script(True, False), now, changes, rec)
    p = pod(readiness={**EXEC, "failureThreshold": 1})
    st = running()
    m.update(p, st, "sb")
    assert st.started == {"app": True} and st.ready == {"app": False}
    status = pod_status(p, st, "10.0.0.1")
    assert status["containerStatuses"][0]["ready"] is False
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "ContainersNotReady")
    w = m.workers[("u1", "app", "readiness")]
    assert await m.tick(w) and changes == ["u1"]
    st = running()
    m.update(p, st, "sb")
    assert st.ready == {"app": True}
    assert {c["type"]: c["status"] for c in pod_status(p, st, "h")["conditions"]}["ContainersReady"] == "True"
    assert await m.tick(w) and changes == ["u1", "u1"]
    st = running()
    m.update(p, st, "sb")
    assert st.ready == {"app": False}
    assert rec.events == [("Warning", "Unhealthy", "Readiness probe failed: boom")]


async def test_nothing_is_probed_before_the_initial_delay() -> None:
    now, script = [START + 1], Script(True)
    m = manager(script, now)
    m.update(pod(readiness={**EXEC, "initialDelaySeconds": 5}), running(), "sb")
    w = m.workers[("u1", "app", "readiness")]
    assert await m.tick(w) and script.calls == []
    now[0] = START + 5
    assert await m.tick(w) and script.calls == ["app/readiness"] and w.result is True


async def test_startup_probe_gates_liveness_and_readiness() -> None:
    now, changes = [START], list[str]()
    script = Script(False, True, True, True)
    m = manager(script, now, changes)
    p = pod(startup={**EXEC, "failureThreshold": 5}, liveness=EXEC, readiness=EXEC)
    st = running()
    m.update(p, st, "sb")
    assert st.started == {"app": False} and st.ready == {"app": False}
    status = pod_status(p, st, "h")["containerStatuses"][0]
    assert (status["started"], status["ready"]) == (False, False)
    live, ready, start = (m.workers[("u1", "app", k)] for k in ("liveness", "readiness", "startup"))
    assert await m.tick(live) and await m.tick(ready) and script.calls == []  # gated
    assert await m.tick(start) and start.result is None  # one failure of five: still unknown
    assert not await m.tick(start) and start.result is True  # started: never probed again
    assert changes == ["u1"]
    assert await m.tick(live) and await m.tick(ready)
    assert script.calls == ["app/startup", "app/startup", "app/liveness", "app/readiness"]
    st = running()
    m.update(p, st, "sb")
    assert st.started == {"app": True} and st.ready == {"app": True}


async def test_liveness_failure_condemns_the_container_until_it_restarts() -> None:
    now, changes, rec = [START], list[str](), Recorder()
    m = manager(Script(False, False), now, changes, rec)
    p = pod(liveness={**EXEC, "failureThreshold": 2, "terminationGracePeriodSeconds": 3})
    m.update(p, running("c1"), "sb")
    w = m.workers[("u1", "app", "liveness")]
    assert await m.tick(w) and m.failed("u1") == []
    assert not await m.tick(w)  # held: nothing more until the restart
    assert [x.name for x in m.failed("u1")] == ["app"] and m.failed("u1")[0].spec.grace == 3
    assert changes == ["u1"]
    assert rec.events == [("Warning", "Unhealthy", "Liveness probe failed: boom")] * 2
    m.update(p, running("c2"), "sb")  # restarted: a fresh worker, presumed alive
    assert m.failed("u1") == [] and m.workers[("u1", "app", "liveness")].cid == "c2"


async def test_workers_go_with_their_containers_and_pods() -> None:
    m = manager(Script(), [START])
    p = pod(readiness=EXEC, liveness=EXEC)
    m.update(p, running(), "sb")
    assert len(m.workers) == 2
    m.update(p, PodRuntimeState(), "sb")  # not running any more
    assert m.workers == {}
    m.update(p, running(), "sb", start=False)  # a status-only pass starts nothing
    assert m.workers == {}
    m.update(p, running(), "sb")
    m.forget("u1")
    assert m.workers == {}


async def test_a_worker_stopped_mid_probe_drops_its_verdict() -> None:
    m = manager(Script(True), [START])
    p = pod(readiness=EXEC)
    m.update(p, running(), "sb")
    w = m.workers[("u1", "app", "readiness")]
    m.forget("u1")
    assert not await m.tick(w) and w.result is False


def test_named_and_numbered_ports() -> None:
    c = {"name": "web", "ports": [{"name": "http", "containerPort": 8080}]}
    assert handlers.resolve_port(80, c) == 80
    assert handlers.resolve_port("81", c) == 81
    assert handlers.resolve_port("http", c) == 8080
    with pytest.raises(HandlerError, match="'admin' is not the name of any port of container 'web'"):
        handlers.resolve_port("admin", c)


async def _http_server(codes: dict[str, int], seen: list[bytes],
                       moves: dict[str, str] | None = None) -> tuple[asyncio.Server, int]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:  # a TCP probe: connects and goes
            writer.close()
            return
        seen.append(head)
        path = head.split()[1].decode().split("?")[0]
        code = codes.get(path, 404)
        location = f"Location: {(moves or {})[path]}\r\n" if path in (moves or {}) else ""
        writer.write(f"HTTP/1.1 {code} X\r\n{location}Content-Length: 2\r\n\r\nok".encode())
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_http_get_and_tcp_against_loopback() -> None:
    seen: list[bytes] = []
    moves = {"/moved": "/bad", "/away": "http://elsewhere.invalid/", "/loop": "/loop?again=1",
             "/fine": "ok"}
    server, port = await _http_server({"/ok": 200, "/moved": 302, "/bad": 500, "/away": 301,
                                       "/loop": 302, "/fine": 307}, seen, moves)
    target = Target(None, "127.0.0.1")
    c = {"name": "web", "ports": [{"name": "http", "containerPort": port}]}
    try:
        code, out = await handlers.http_get(target, {"path": "/ok", "port": "http", "httpHeaders": [
            {"name": "X-Probe", "value": "1"}, {"name": "user-agent", "value": "mine"}]}, c, 2, "kube-probe/1.31")
        assert (code, out.ok, out.message) == (200, True, "ok")
        assert b"X-Probe: 1\r\n" in seen[0] and b"user-agent: mine\r\n" in seen[0]
        assert b"kube-probe" not in seen[0] and b"GET /ok HTTP/1.1\r\n" in seen[0]
        # Redirects: followed on the same host, not to another one, 10 at most.
        assert (await handlers.http_get(target, {"path": "/fine", "port": port}, c, 2, "x"))[0] == 200
        code, out = await handlers.http_get(target, {"path": "/moved", "port": port}, c, 2, "x")
        assert (code, out.ok) == (500, False)
        code, out = await handlers.http_get(target, {"path": "/away", "port": port}, c, 2, "x")
        assert (code, out.ok) == (301, True)
        code, out = await handlers.http_get(target, {"path": "/loop", "port": port}, c, 2, "x")
        assert not out.ok and out.message.endswith("stopped after 10 redirects"), out.message
        code, out = await handlers.http_get(target, {"path": "bad", "port": port}, c, 2, "x")
        assert (code, out.ok, out.message) == (500, False, "HTTP probe failed with statuscode: 500")
        assert (await handlers.tcp_check(target, "", port, 2)).ok
    finally:
        server.close()
        await server.wait_closed()
    code, out = await handlers.http_get(target, {"path": "/ok", "port": port}, c, 2, "x")
    assert code is None and not out.ok
    assert out.message == f'Get "http://127.0.0.1:{port}/ok": dial tcp 127.0.0.1:{port}: connect: connection refused'
    out = await handlers.tcp_check(target, "", port, 2)
    assert out.message == f"dial tcp 127.0.0.1:{port}: connect: connection refused"
