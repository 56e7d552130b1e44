"""`timonel agent` flags: where the API server and its credentials come from."""

from __future__ import annotations

from pathlib import Path

import pytest

from timonel.cli.agent_cmd import _cluster_config
from timonel.cli.failures import EXIT_CONFIG, Failure
from timonel.cli.main import build_parser


def parse(*argv: str):  # type: ignore[no-untyped-def]
    return build_parser().parse_args(["agent", *argv])


def test_server_and_token_with_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    cfg = _cluster_config(parse("--server", "https://127.0.0.1:6443", "--token", "t0k",
                                "--certificate-authority", str(ca)), "n1")
    assert (cfg.server, cfg.token, cfg.ca_pem) == ("https://127.0.0.1:6443", "t0k", ca.read_bytes())


@pytest.mark.parametrize(("argv", "reason"), [
    ((), "AGENT_SERVER"),
    (("--server", "https://127.0.0.1:6443", "--token", "t"), "AGENT_CA"),
    (("--server", "https://x", "--certificate-authority", "/nonexistent/ca.crt"), "AGENT_CA"),
    (("--kubeconfig", "/nonexistent/kubeconfig"), "KUBECONFIG"),
    # Shaped like a join token (K10...::) but not one: refused before any request.
    (("--server", "https://127.0.0.1:6443", "--token", "K10abc::node:x"), "AGENT_JOIN_TOKEN"),
])
def test_bad_flags_are_config_failures(argv: tuple[str, ...], reason: str) -> None:
    with pytest.raises(Failure) as err:
        _cluster_config(parse(*argv), "n1")
    assert err.value.reason == reason and err.value.exit_code == EXIT_CONFIG and err.value.advice


def test_defaults() -> None:
    args = parse("--kubeconfig", "k")
    assert args.data_dir == "/var/lib/timonel/agent" and args.node_name == ""
