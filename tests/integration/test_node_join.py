"""Joining with the server's node-token: the agent gets its own node identity."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.integration.conftest import ApiServer
from timonel.api.auth.join import JoinToken, join_token_file, parse_join_token
from timonel.api.kubeconfig import load_kubeconfig
from timonel.cli.failures import EXIT_CONFIG, EXIT_UNAVAILABLE
from timonel.node_agent.agent.join import JoinError, join, node_kubeconfig_path


def _token(server: ApiServer) -> str:
    with open(join_token_file(server.data_dir)) as f:
        return f.read().strip()


def _session(config_path: str) -> requests.Session:
    cfg = load_kubeconfig(config_path)
    d = os.path.dirname(config_path)
    s = requests.Session()
    s.trust_env = False
    ca, cert, key = (os.path.join(d, n) for n in ("ca.pem", "cert.pem", "key.pem"))
    for path, data in ((ca, cfg.ca_pem), (cert, cfg.client_cert_pem), (key, cfg.client_key_pem)):
        assert data
        with open(path, "wb") as f:
            f.write(data)
    s.verify, s.cert = ca, (cert, key)
    return s


def test_join_issues_a_node_certificate_the_server_accepts(api_server: ApiServer, tmp_path) -> None:
    data = str(tmp_path / "agent")
    config = join(api_server.url, _token(api_server), "join-node-1", data)
    assert config.ca_pem == api_server.ca_pem and config.token is None
    cert = x509.load_pem_x509_certificate(config.client_cert_pem or b"")
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:join-node-1"
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == \
        ["system:nodes"]
    s = _session(node_kubeconfig_path(data))
    assert s.get(f"{api_server.url}/api/v1/nodes").status_code == 200
    # A second start reuses the saved credentials instead of asking again.
    again = join(api_server.url, _token(api_server), "join-node-1", data)
    assert again.client_cert_pem == config.client_cert_pem
    # Another node name means other credentials.
    other = join(api_server.url, _token(api_server), "join-node-2", data)
    assert other.client_cert_pem != config.client_cert_pem


def test_the_join_secret_is_no_api_credential(api_server: ApiServer) -> None:
    secret = parse_join_token(_token(api_server)).secret
    s = requests.Session()
    s.trust_env = False
    s.verify = api_server.ca_file
    r = s.get(f"{api_server.url}/api/v1/namespaces", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 401
    # Nor does the admin token buy node credentials.
    r = s.post(f"{api_server.url}/v1-timonel/node-credentials", json={"nodeName": "x", "csr": "x"},
               headers={"Authorization": f"Bearer {api_server.token}"})
    assert r.status_code == 401 and r.json()["reason"] == "Unauthorized"
    r = s.post(f"{api_server.url}/v1-timonel/node-credentials", json={"nodeName": "Bad_Name", "csr": "x"},
               headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 400 and "not a valid node name" in r.json()["message"]
    # The CSR is checked by the signing child: its verdict comes back as a 400 with the reason.
    r = s.post(f"{api_server.url}/v1-timonel/node-credentials", json={"nodeName": "x", "csr": "x"},
               headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 400 and "not a PEM certificate signing request" in r.json()["message"]


def test_joining_leaves_no_cryptography_in_the_server(api_server: ApiServer, tmp_path) -> None:
    join(api_server.url, _token(api_server), "lean-node", str(tmp_path))
    with open(f"/proc/{api_server.proc.pid}/maps") as f:
        maps = f.read()
    assert "aiohttp" in maps  # this is the server process itself
    assert "cryptography" not in maps, "the API server loaded cryptography (~10 MB resident)"


def test_wrong_secret_or_wrong_ca_hash_is_refused(api_server: ApiServer, tmp_path) -> None:
    good = parse_join_token(_token(api_server))
    with pytest.raises(JoinError, match="refused the join token"):
        join(api_server.url, JoinToken(good.ca_hash, "wrong").text(), "n", str(tmp_path / "a"))
    with pytest.raises(JoinError, match="does not match the join token's hash"):
        join(api_server.url, JoinToken("0" * 64, good.secret).text(), "n", str(tmp_path / "b"))
    assert not os.path.exists(node_kubeconfig_path(str(tmp_path / "a")))


@pytest.mark.skipif(os.geteuid() != 0, reason="timonel agent refuses to start without root")
def test_agent_command_joins_with_the_token(api_server: ApiServer, tmp_path) -> None:
    data = tmp_path / "agent"
    base = [sys.executable, "-m", "timonel.cli.main", "agent", "--server", api_server.url,
            "--node-name", "cli-join-node", "--data-dir", str(data),
            "--runtime-socket", str(tmp_path / "no-runtime.sock")]
    bad = subprocess.run([*base, "--token", "K10nonsense::node:x"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == EXIT_CONFIG, bad.stderr
    assert "not a usable join token" in bad.stderr
    # A good token joins; then the missing runtime stops it, credentials already saved.
    ran = subprocess.run([*base, "--token", _token(api_server)], capture_output=True, text=True, timeout=60)
    assert ran.returncode == EXIT_UNAVAILABLE, ran.stderr
    assert "no runtime socket" in ran.stderr
    cfg = load_kubeconfig(node_kubeconfig_path(str(data)))
    cert = x509.load_pem_x509_certificate(cfg.client_cert_pem or b"")
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:cli-join-node"
    assert cfg.token is None
