#!/usr/bin/env python3
"""Run Debian's docker-registry on 127.0.0.1 with a filesystem store.

Writes its own config: the packaged /etc/docker/registry/config.yml listens
on every interface, which this project must never do. Used by the image
tests (tests/integration/images/conftest.py) and by hand:

    .venv/bin/python deploy/images/local_registry.py --dir /tmp/reg [--port 5000] [--push-busybox]

which serves until interrupted; with --push-busybox the offline busybox
image is pushed as <host>/library/busybox:latest first.
Needs: `apt-get install docker-registry` (deploy/install.sh does it).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGISTRY_BIN = "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalRegistry:
    host: str  # 127.0.0.1:<port>, as used in image references
    root: Path  # the filesystem store
    log: Path
    proc: subprocess.Popen[bytes]
    pushed: dict[str, str] = field(default_factory=dict)  # name → manifest digest

    def blob_data(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes."""
        hexpart = digest.split(":", 1)[1]
        return self.root / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_registry(workdir: str | os.PathLike[str], *, port: int | None = None,
                   auth: dict[str, Any] | None = None, timeout: float = 60) -> LocalRegistry:
    """Start the registry on 127.0.0.1 (a free port unless given); wait until it answers.

    `auth` is the registry's `auth:` config section (e.g. `{"token": {...}}`).
    """
    if not os.access(REGISTRY_BIN, os.X_OK):
        raise FileNotFoundError(f"{REGISTRY_BIN} is missing: apt-get install docker-registry")
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    root = work / "storage"
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if auth:
        config["auth"] = auth
    cfg = work / "config.yml"
    cfg.write_text(json.dumps(config, indent=1))  # JSON is valid YAML
    log = work / "registry.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen([REGISTRY_BIN, "serve", str(cfg)], stdout=logf, stderr=subprocess.STDOUT)
    reg = LocalRegistry(f"127.0.0.1:{port}", root, log, proc)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://{reg.host}/v2/", timeout=5):
                return reg
        except urllib.error.HTTPError:
            return reg  # 401 under token auth: it is up
        except OSError:
            if time.monotonic() > deadline:
                reg.stop()
                raise RuntimeError(f"docker-registry did not answer within {timeout:.0f} s: "
                                   f"{log.read_text()[-2000:]}") from None
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run docker-registry on 127.0.0.1 with a filesystem store.")
    p.add_argument("--dir", required=True, help="working directory (config, storage, log)")
    p.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--push-busybox", action="store_true", help="push the offline busybox test image")
    args = p.parse_args(argv)
    try:
        reg = start_registry(args.dir, port=args.port)
    except (OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"registry: {reg.host} (store {reg.root}, log {reg.log})", flush=True)

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt  # so `finally` stops the registry too

    signal.signal(signal.SIGTERM, on_term)
    try:
        if args.push_busybox:
            import asyncio
            import tempfile

            sys.path.insert(0, str(Path(__file__).parent))
            from busybox import write_busybox_image

            from timonel.node_agent.runtime.images import ImageStore, import_image, push_image

            with tempfile.TemporaryDirectory() as tmp:
                store = ImageStore(Path(tmp) / "store", unpack="never")
                import_image(store, write_busybox_image(Path(tmp) / "img")["oci_dir"])
                digest = asyncio.run(push_image(store, "busybox", f"{reg.host}/library/busybox:latest"))
            print(f"pushed: {reg.host}/library/busybox:latest@{digest}", flush=True)
        reg.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        reg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
