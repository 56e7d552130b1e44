"""What each long-running process imports: every module held is resident memory in it (and,
for the runtime, in each process it forks), so a command loads only its own component."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from timonel.cli.main import COMMANDS, build_parser

SERVER_ONLY = ["kubernetes_validate", "jsonschema", "aetcd", "timonel.api.validation", "timonel.api.storage.etcd",
               "timonel.api.server.app"]


def loaded_after(code: str, modules: list[str]) -> dict[str, bool]:
    """Which of `modules` a fresh interpreter holds after running `code`."""
    probe = f"import sys\n{code}\nprint(__import__('json').dumps({{m: m in sys.modules for m in {modules!r}}}))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def subcommands(parser: object) -> list[str]:
    sub = next(a for a in parser._actions if a.dest == "command")  # type: ignore[attr-defined]
    return list(sub.choices)


@pytest.mark.parametrize("argv", [[], ["-h"], ["-v", "--help", "server"], ["bogus"], ["-v"]])
def test_without_a_known_command_every_command_is_offered(argv: list[str]) -> None:
    assert subcommands(build_parser(argv)) == list(COMMANDS)


@pytest.mark.parametrize("argv", [["runtime", "ps"], ["-v", "agent", "--help"], ["-vv", "up"], ["server"]])
def test_a_named_command_gets_its_own_parser_only(argv: list[str]) -> None:
    command = next(a for a in argv if not a.startswith("-"))
    assert subcommands(build_parser(argv)) == [command]


def test_the_runtime_command_loads_no_api_client_server_or_grpc() -> None:
    loaded = loaded_after("from timonel.cli.main import build_parser\n"
                          "build_parser(['-v', 'runtime', '--root', '/x']).parse_args(['-v', 'runtime'])",
                          ["aiohttp", "grpc", "cryptography", "yaml", *SERVER_ONLY])
    assert not any(loaded.values()), loaded


def test_the_agent_loads_none_of_the_servers_modules() -> None:
    loaded = loaded_after("from timonel.cli.main import build_parser\nbuild_parser(['agent'])\n"
                          "import timonel.node_agent.agent.agent, timonel.node_agent.agent.join",
                          ["aiohttp", *SERVER_ONLY, "timonel.node_agent.runtime.daemon",
                           "timonel.node_agent.runtime.container"])
    assert loaded.pop("aiohttp"), "the probe imported nothing: the test would pass vacuously"
    assert not any(loaded.values()), loaded


def test_the_runtime_service_loads_aiohttp_only_for_a_pull() -> None:
    loaded = loaded_after("import timonel.node_agent.runtime.server.serve", ["aiohttp", "grpc"])
    assert loaded == {"aiohttp": False, "grpc": True}
    loaded = loaded_after("import asyncio\nfrom timonel.node_agent.runtime.images import RegistryClient\n"
                          "async def pull():\n    async with RegistryClient() as c:\n        c.session\n"
                          "asyncio.run(pull())", ["aiohttp"])
    assert loaded == {"aiohttp": True}


def test_the_runtime_service_loads_rtnetlink_not_all_of_pyroute2() -> None:
    loaded = loaded_after("import timonel.node_agent.runtime.server.serve",
                          ["pyroute2.iproute.linux", "pyroute2.ndb.main", "pyroute2.ipdb", "sqlite3",
                           "pyroute2.netlink.nl80211"])
    assert loaded.pop("pyroute2.iproute.linux"), "the probe imported no netlink: it would pass vacuously"
    assert not any(loaded.values()), loaded


def test_server_and_agent_keep_cryptography_out() -> None:
    # Certificates are made by `python -m timonel.api.pki` children (api/tls.py says why).
    loaded = loaded_after("import timonel.cli.server_cmd, timonel.api.server.run, timonel.api.server.app\n"
                          "import timonel.api.server.proxy, timonel.api.server.join\n"
                          "import timonel.cli.agent_cmd, timonel.node_agent.agent.agent\n"
                          "import timonel.node_agent.agent.streaming.server, timonel.node_agent.agent.join",
                          ["aiohttp", "cryptography"])
    assert loaded == {"aiohttp": True, "cryptography": False}


def test_pyroute2_still_whole_for_other_code_in_the_process() -> None:
    # Tests and other code import names of the package itself; the runtime's lean
    # registration must not break them (it did: CI collected ImportErrors).
    loaded = loaded_after("import timonel.node_agent.runtime.network\n"
                          "from pyroute2 import IPRoute, NDB, config\n"
                          "from timonel.node_agent.runtime.network._netlink import IPRoute as ours\n"
                          "assert IPRoute is ours and config.__name__ == 'pyroute2.config'",
                          ["pyroute2.ndb.main"])
    assert loaded == {"pyroute2.ndb.main": True}
