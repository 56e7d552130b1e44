"""Exec streaming (stdin, stderr, exit codes, tty and resize) and the image RPCs (import,
pull from a local registry, status, list, remove) through a real daemon."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from timonel.node_agent.runtime.api import runtime_pb2 as pb
from timonel.node_agent.runtime.client import RuntimeClient
from timonel.node_agent.runtime.images import ImageStore, import_image, push_image
from timonel.node_agent.runtime.images.builder import BuiltImage, make_config, write_oci_layout
from timonel.node_agent.runtime.images.registry import RegistryClient
from timonel.node_agent.runtime.server.options import RuntimeOptions

from .rtsvc_daemon import (
    REPO,
    Daemon,
    load_busybox_module,
    log_text,
    needs_root,
    run_pod,
    running_daemon,
)

pytestmark = needs_root


@pytest.fixture(scope="module")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    files: dict[str, Path] = load_busybox_module().write_busybox_image(tmp_path_factory.mktemp("image"))
    return files


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory,
           image_files: dict[str, Path]) -> Iterator[tuple[Daemon, RuntimeClient]]:
    yield from running_daemon(tmp_path_factory.mktemp("rtsvc-exec"), str(image_files["docker_archive"]))


@pytest.fixture(scope="module")
def running(daemon: tuple[Daemon, RuntimeClient]) -> str:
    _, c = daemon
    _, ids = run_pod(c, "exec-target", {"main": ["sleep", "1000"]})
    return ids["main"]


def test_exec_streams_stdin_stdout_stderr_and_exit_code(daemon: tuple[Daemon, RuntimeClient], running: str) -> None:
    _, c = daemon
    session = c.exec(running, ["sh", "-c", "tr a-z A-Z; echo to-stderr >&2; exit 7"], stdin=True)
    for chunk in (b"hello ", b"streaming ", b"world\n"):
        session.send(chunk)
    session.close_stdin()
    code, out, err = session.collect()
    assert (code, out, err) == (7, b"HELLO STREAMING WORLD\n", b"to-stderr\n")


def test_exec_large_output_and_input(daemon: tuple[Daemon, RuntimeClient], running: str) -> None:
    _, c = daemon
    data = os.urandom(3 << 20)
    session = c.exec(running, ["sh", "-c", "cat | md5sum; head -c 5000000 /dev/zero"], stdin=True)
    for i in range(0, len(data), 1 << 16):
        session.send(data[i:i + (1 << 16)])
    session.close_stdin()
    code, out, _ = session.collect()
    assert code == 0
    assert out.startswith(hashlib.md5(data).hexdigest().encode()) and out.count(b"\0") == 5_000_000


def test_execs_whose_process_never_reads_its_input_do_not_hold_up_pod_starts(
        daemon: tuple[Daemon, RuntimeClient], running: str) -> None:
    _, c = daemon
    # More sessions than the daemon has threads for pod work, each with more input queued
    # than a pipe holds, for a process that never reads it.
    sessions = [c.exec(running, ["sleep", "60"], stdin=True) for _ in range(RuntimeOptions().workers + 2)]
    try:
        for s in sessions:
            for _ in range(4):
                s.send(b"x" * (1 << 16))
        time.sleep(1)  # the writes are under way and blocked
        t0 = time.monotonic()
        sid, ids = run_pod(c, "while-execs-block", {"main": ["sleep", "1000"]})
        assert time.monotonic() - t0 < 30
        assert c.container_status(ids["main"]).status.state == pb.CONTAINER_RUNNING
    finally:
        for s in sessions:
            s.cancel()
    c.stop_sandbox(sid)
    c.remove_sandbox(sid)


def test_exec_with_a_tty_and_resize(daemon: tuple[Daemon, RuntimeClient], running: str) -> None:
    _, c = daemon
    session = c.exec(running, ["sh"], tty=True, stdin=True, size=(20, 70))
    session.send(b"stty size; tty\n")
    seen = b""
    it = iter(session)
    while b"/dev/pts/" not in seen:
        seen += next(it)[1]
    assert b"20 70" in seen
    session.resize(33, 120)
    session.send(b"stty size; exit 5\n")
    rest = b"".join(data for _, data in it)
    assert b"33 120" in rest and session.exit_code == 5


def test_exec_sync_ends_when_a_background_child_holds_the_output(daemon: tuple[Daemon, RuntimeClient],
                                                                 running: str) -> None:
    _, c = daemon
    t0 = time.monotonic()
    r = c.exec_sync(running, ["sh", "-c", "sleep 1000 & echo $!; exit 3"], timeout=60)
    assert r.exit_code == 3 and r.stdout.strip().isdigit()
    assert time.monotonic() - t0 < 30  # the exit plus a short drain, not the background sleep
    assert c.exec_sync(running, ["kill", r.stdout.decode().strip()], timeout=10).exit_code == 0


def test_exec_errors(daemon: tuple[Daemon, RuntimeClient], running: str) -> None:
    _, c = daemon
    with pytest.raises(grpc.RpcError) as e:
        c.exec("0" * 64, ["true"]).collect()
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        c.exec(running, []).collect()
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        c.exec(running, ["/no/such/command"]).collect()
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "/no/such/command" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        c.exec_sync(running, ["no-such-command"])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_log_reopen_stats_filters_and_status(daemon: tuple[Daemon, RuntimeClient]) -> None:
    _, c = daemon
    sid, ids = run_pod(c, "ticker", {"tick": ["sh", "-c", "while :; do echo tick; sleep 0.05; done"]})
    cid = ids["tick"]
    st = c.container_status(cid).status
    deadline = time.monotonic() + 20
    while "tick" not in log_text(st.log_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.rename(st.log_path, st.log_path + ".1")  # what log rotation does
    c.reopen_log(cid)
    while "tick" not in log_text(st.log_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "tick" in log_text(st.log_path) and "tick" in log_text(st.log_path + ".1")

    stats = c.container_stats(cid)
    assert stats.attributes.id == cid and stats.cpu.usage_core_nano_seconds.value > 0
    assert stats.memory.working_set_bytes.value > 0 and stats.process.process_count.value >= 1

    labeled = c.create_container(sid, pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="labeled"), image=pb.ImageSpec(image="busybox"), command=["true"],
        labels={"tier": "db"}))
    only = c.list_containers(pb.ContainerFilter(label_selector={"tier": "db"}))
    assert [x.id for x in only] == [labeled] and only[0].state == pb.CONTAINER_CREATED
    created = c.list_containers(pb.ContainerFilter(state=pb.ContainerStateValue(state=pb.CONTAINER_CREATED)))
    assert labeled in {x.id for x in created} and cid not in {x.id for x in created}
    assert [x.id for x in c.list_sandboxes(pb.PodSandboxFilter(id=sid[:10]))] == [sid]

    conditions = {cond.type: cond.status for cond in c.status().status.conditions}
    assert conditions == {"RuntimeReady": True, "NetworkReady": True}
    assert c.version().runtime_name == "timonel"
    c.remove_sandbox(sid)


def test_import_and_image_rpcs(daemon: tuple[Daemon, RuntimeClient], image_files: dict[str, Path]) -> None:
    _, c = daemon
    imported = c.import_image(str(image_files["oci_tar"]), "example.test/tools/busybox:oci")
    assert len(imported) == 1 and "example.test/tools/busybox:oci" in imported[0].repo_tags
    busybox = c.image_status("busybox").image
    assert busybox.id == imported[0].id  # same image, whatever the format it came in
    assert c.image_status("busybox:latest").image.id == c.image_status("docker.io/library/busybox").image.id
    assert not c.image_status("no-such-image").HasField("image")  # absent is not an error
    verbose = c.image_status("busybox", verbose=True)
    assert '"cmd": ["sh"]' in verbose.info["config"]
    assert any("example.test/tools/busybox:oci" in i.repo_tags for i in c.list_images())
    with pytest.raises(grpc.RpcError) as e:
        c.import_image("/no/such/archive.tar")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    bad = Path(image_files["oci_tar"]).with_name("garbage.tar")
    bad.write_bytes(b"not an archive")
    with pytest.raises(grpc.RpcError) as e:
        c.import_image(str(bad))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def start_registry(base: Path) -> object:
    import importlib.util
    import sys

    path = REPO / "deploy" / "images" / "local_registry.py"
    spec = importlib.util.spec_from_file_location("timonel_deploy_local_registry_rtsvc", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod.start_registry(base)


def test_pull_from_a_local_registry_and_run_with_image_defaults(
        daemon: tuple[Daemon, RuntimeClient], tmp_path: Path) -> None:
    if not os.access("/usr/bin/docker-registry", os.X_OK):
        pytest.fail("docker-registry missing: apt-get install docker-registry (deploy/install.sh does)")
    _, c = daemon
    base = load_busybox_module().build_busybox_image()
    # Not busybox's config: its own ID, and defaults a container must take.
    config = make_config(base.layers, entrypoint=["sh", "-c"], cmd=['echo "$GREETING in $(pwd) as $(id -u)"'],
                         env=["PATH=/usr/bin:/bin", "GREETING=hello"], working_dir="/tmp", user="nobody")
    write_oci_layout([BuiltImage(base.layers, config, ["rtsvc/defaults:1"])], tmp_path / "layout")
    reg = start_registry(tmp_path / "registry")
    try:
        store = ImageStore(tmp_path / "push-store", unpack="never")
        import_image(store, tmp_path / "layout")
        target = f"{reg.host}/rtsvc/defaults:pulled"  # type: ignore[attr-defined]

        async def push() -> str:
            async with RegistryClient() as client:
                return await push_image(store, "rtsvc/defaults:1", target, client=client)

        digest = asyncio.run(push())
        ref = c.pull_image(target)
        status = c.image_status(target).image
        assert status.id == ref and status.username == "nobody"
        assert f"{reg.host}/rtsvc/defaults@{digest}" in status.repo_digests  # type: ignore[attr-defined]
        assert c.pull_image(f"{reg.host}/rtsvc/defaults@{digest}") == ref  # type: ignore[attr-defined]
        with pytest.raises(grpc.RpcError) as e:
            c.pull_image(f"{reg.host}/rtsvc/missing:1")  # type: ignore[attr-defined]
        assert e.value.code() == grpc.StatusCode.NOT_FOUND

        sid, _ = run_pod(c, "pulled", {})
        outputs = {}
        for name, kw in {"defaults": {}, "args": {"args": ['echo "args replace cmd: $GREETING"']},
                         "command": {"command": ["id", "-g"], "envs": [pb.KeyValue(key="GREETING", value="x")]}
                         }.items():
            cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image=target),
                                     **kw)  # type: ignore[arg-type]
            cid = c.create_container(sid, cfg)
            assert c.container_status(cid).status.image_id == ref
            c.start_container(cid)
            st = c.wait_container(cid, 30)
            outputs[name] = (st.exit_code, log_text(st.log_path))
        assert outputs == {"defaults": (0, "hello in /tmp as 65534\n"), "args": (0, "args replace cmd: hello\n"),
                           "command": (0, "65534\n")}
        with pytest.raises(grpc.RpcError) as e:
            c.remove_image(target)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # in use by a container
        c.remove_sandbox(sid)
        c.remove_image(target)
        c.remove_image(target)  # idempotent
        assert not c.image_status(target).HasField("image")
    finally:
        reg.stop()  # type: ignore[attr-defined]
