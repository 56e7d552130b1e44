"""Fixtures for integration tests: a real etcd and a real `timonel server`.

The server runs as a subprocess exactly as a user starts it, against an etcd
this session starts (so tests can also look at etcd directly, compact it, or
restart the server on the same data).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
import urllib3

from timonel.api.storage.etcd_process import EtcdProcess, free_port

urllib3.disable_warnings()

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMONEL = os.path.join(os.path.dirname(sys.executable), "timonel")


@pytest.fixture(scope="session")
def etcd() -> Iterator[EtcdProcess]:
    d = tempfile.mkdtemp(prefix="timonel-etcd-")
    proc = EtcdProcess(os.path.join(d, "data"), free_port(), free_port())
    proc.start()
    yield proc
    proc.stop()
    shutil.rmtree(d, ignore_errors=True)


@dataclass
class ApiServer:
    url: str
    data_dir: str
    kubeconfig: str
    token: str
    ca_file: str
    ca_pem: bytes
    etcd_endpoint: str
    proc: subprocess.Popen[bytes]
    log_path: str

    def session(self, token: str | None = None) -> requests.Session:
        s = requests.Session()
        # REQUESTS_CA_BUNDLE in the environment would override `verify`.
        s.trust_env = False
        s.verify = self.ca_file
        s.headers["Authorization"] = f"Bearer {token or self.token}"
        return s

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-4000:]


def start_server(data_dir: str, etcd_endpoint: str = "", port: int = 0,
                 timeout: float = 60.0, control_plane: bool = False) -> ApiServer:
    """Run `timonel server` and wait until it answers /readyz over HTTPS.

    Without `control_plane` the in-process scheduler and controllers are off."""
    port = port or free_port()
    os.makedirs(data_dir, exist_ok=True)
    log_path = os.path.join(data_dir, "server.log")
    args = [TIMONEL, "-v", "server", "--data-dir", data_dir, "--port", str(port)]
    if not control_plane:
        # API tests see only what they do; control-plane tests run the loops
        # they test themselves.
        args += ["--disable-scheduler", "--disable-controller-manager"]
    if etcd_endpoint:
        args += ["--etcd-endpoints", etcd_endpoint]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"https://127.0.0.1:{port}"
    ca_file = os.path.join(data_dir, "tls", "ca.crt")
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log_path, errors="replace") as f:
                raise RuntimeError(f"timonel server exited {proc.returncode}:\n{f.read()[-3000:]}")
        if os.path.exists(ca_file) and os.path.exists(os.path.join(data_dir, "admin.kubeconfig")):
            try:
                r = requests.get(f"{url}/readyz", verify=ca_file, timeout=2)
                if r.status_code == 200:
                    break
                last = r.text
            except requests.RequestException as e:
                last = str(e)
        time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError(f"timonel server not ready in {timeout}s: {last}")
    from timonel.api.auth.tokens import ensure_admin_token

    with open(ca_file, "rb") as f:
        ca_pem = f.read()
    return ApiServer(url, data_dir, os.path.join(data_dir, "admin.kubeconfig"),
                     ensure_admin_token(data_dir), ca_file, ca_pem, etcd_endpoint, proc, log_path)


@pytest.fixture(scope="session")
def api_server(etcd: EtcdProcess) -> Iterator[ApiServer]:
    d = tempfile.mkdtemp(prefix="timonel-server-")
    server = start_server(d, etcd.endpoint)
    yield server
    server.stop()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def http(api_server: ApiServer) -> requests.Session:
    return api_server.session()


@pytest.fixture
def namespace(http: requests.Session, api_server: ApiServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, so tests never see each other's objects."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower())[:40].strip("-")
    name = f"t-{base}-{os.urandom(3).hex()}"
    r = http.post(f"{api_server.url}/api/v1/namespaces",
                  json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    assert r.status_code == 201, r.text
    yield name
