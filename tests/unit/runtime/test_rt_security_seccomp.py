"""Capabilities, privilege dropping order (recording fake) and seccomp profiles."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest

from timonel.node_agent.runtime.container import capabilities, seccomp
from timonel.node_agent.runtime.container.security import (
    Credentials,
    drop_privileges,
    resolve_rlimits,
)
from timonel.node_agent.runtime.container.spec import Rlimit, Seccomp, SpecError
from timonel.node_agent.runtime.linux import FakeSyscalls, libseccomp
from timonel.node_agent.runtime.linux.constants import CAP_NUMBERS, last_cap

DOCKER_DEFAULT_CAPEFF = 0xA80425FB  # what `docker run busybox grep CapEff /proc/self/status` shows


def test_default_capabilities_are_dockers() -> None:
    assert capabilities.effective_set([], [], privileged=False) == DOCKER_DEFAULT_CAPEFF


def test_add_and_drop_accept_both_spellings() -> None:
    mask = capabilities.effective_set(["NET_ADMIN"], ["CAP_CHOWN", "net_raw"], privileged=False)
    assert mask >> CAP_NUMBERS["CAP_NET_ADMIN"] & 1
    assert not mask >> CAP_NUMBERS["CAP_CHOWN"] & 1
    assert not mask >> CAP_NUMBERS["CAP_NET_RAW"] & 1


def test_drop_all_then_add_back() -> None:
    mask = capabilities.effective_set(["NET_BIND_SERVICE"], ["ALL"], privileged=False)
    assert capabilities.names(mask) == ["CAP_NET_BIND_SERVICE"]


def test_privileged_and_add_all_keep_everything() -> None:
    full = (1 << (last_cap() + 1)) - 1
    assert capabilities.effective_set([], [], privileged=True) == full
    assert capabilities.effective_set(["ALL"], [], privileged=False) == full


def test_unknown_capability_says_which() -> None:
    with pytest.raises(SpecError, match="CAP_NET_ADMINN"):
        capabilities.effective_set(["NET_ADMINN"], [], privileged=False)


def test_drop_privileges_order_for_root() -> None:
    sys = FakeSyscalls()
    cred = Credentials(uid=0, gid=0, caps=DOCKER_DEFAULT_CAPEFF, no_new_privs=True, seccomp=b"\0" * 8)
    drop_privileges(sys, cred)
    names = [n for n in sys.names() if n != "capbset_drop"]
    assert names == ["ambient_clear", "capset", "set_no_new_privs", "setgroups", "setresgid",
                     "setresuid", "capset", "seccomp_load"]
    assert sys.names()[0] == "capbset_drop"  # bounding set first
    assert sys.bounding == DOCKER_DEFAULT_CAPEFF
    assert sys.effective == sys.permitted == DOCKER_DEFAULT_CAPEFF
    assert sys.inheritable == 0 and sys.no_new_privs
    assert sys.names()[-1] == "seccomp_load"  # last, right before execve


def test_drop_privileges_for_a_user_clears_capabilities() -> None:
    sys = FakeSyscalls()
    drop_privileges(sys, Credentials(uid=1000, gid=1000, groups=[5, 20], caps=DOCKER_DEFAULT_CAPEFF))
    assert (sys.uid, sys.gid, sys.groups) == (1000, 1000, [5, 20])
    assert sys.effective == sys.permitted == 0  # as Docker: non-root has no effective caps
    assert sys.bounding == DOCKER_DEFAULT_CAPEFF


def test_dropping_setuid_still_switches_user() -> None:
    sys = FakeSyscalls()
    caps = DOCKER_DEFAULT_CAPEFF & ~(1 << CAP_NUMBERS["CAP_SETUID"]) & ~(1 << CAP_NUMBERS["CAP_SETGID"])
    drop_privileges(sys, Credentials(uid=0, gid=0, caps=caps))
    # the transition set keeps SETUID/SETGID for setresuid; the final set drops them
    assert sys.effective == caps


def test_without_no_new_privs_seccomp_loads_before_the_capabilities_change() -> None:
    # Only CAP_SYS_ADMIN (effective) may load a filter without no_new_privs: before capset.
    sys = FakeSyscalls()
    drop_privileges(sys, Credentials(caps=DOCKER_DEFAULT_CAPEFF, no_new_privs=False, seccomp=b"\0" * 8))
    names = sys.names()
    assert names.index("seccomp_load") < names.index("capset")
    assert names.count("seccomp_load") == 1 and "set_no_new_privs" not in names


def test_rlimits_resolve_names() -> None:
    import resource

    assert resolve_rlimits([Rlimit("nofile", 64, 128), Rlimit("RLIMIT_NPROC", 5, 5)]) == [
        (resource.RLIMIT_NOFILE, 64, 128), (resource.RLIMIT_NPROC, 5, 5)]
    with pytest.raises(SpecError, match="soft 10 is above hard 5"):
        resolve_rlimits([Rlimit("nofile", 10, 5)])
    with pytest.raises(SpecError, match="unknown type 'bogus'"):
        resolve_rlimits([Rlimit("bogus", 1, 1)])


def _rules(flt: libseccomp.Filter) -> dict[str, list[libseccomp.Rule]]:
    out: dict[str, list[libseccomp.Rule]] = {}
    for r in flt.rules:
        out.setdefault(r.syscall, []).append(r)
    return out


def test_runtime_default_blocks_dockers_list() -> None:
    rules = _rules(seccomp.build_filter(seccomp.default_profile(), DOCKER_DEFAULT_CAPEFF))
    for name in ("mount", "umount2", "unshare", "setns", "keyctl", "ptrace", "kexec_load", "reboot",
                 "init_module", "bpf", "pivot_root", "add_key", "open_by_handle_at"):
        assert rules[name][0].action == libseccomp.act_errno(1), name
    clone_flags = {r.args[0].value for r in rules["clone"]}
    assert 0x10000000 in clone_flags and 0x20000 in clone_flags  # NEWUSER, NEWNS
    assert rules["clone3"][0].action == libseccomp.act_errno(38)  # ENOSYS: libc falls back to clone


def test_capabilities_lift_blocks_like_docker() -> None:
    with_admin = DOCKER_DEFAULT_CAPEFF | 1 << CAP_NUMBERS["CAP_SYS_ADMIN"]
    rules = _rules(seccomp.build_filter(seccomp.default_profile(), with_admin))
    assert "mount" not in rules and "clone" not in rules
    assert "keyctl" in rules  # not tied to a capability


def test_default_profile_compiles_with_real_libseccomp() -> None:
    bpf = seccomp.compile_for(Seccomp(), DOCKER_DEFAULT_CAPEFF, privileged=False)
    assert bpf is not None and len(bpf) % 8 == 0 and len(bpf) > 8 * 50


def test_unconfined_and_privileged_have_no_filter() -> None:
    assert seccomp.compile_for(Seccomp(type="Unconfined"), DOCKER_DEFAULT_CAPEFF, False) is None
    assert seccomp.compile_for(Seccomp(), DOCKER_DEFAULT_CAPEFF, privileged=True) is None


def test_localhost_profile_in_docker_format(tmp_path: Path) -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
        "syscalls": [
            {"names": ["read", "write", "exit_group", "no_such_syscall"], "action": "SCMP_ACT_ALLOW"},
            {"name": "personality", "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                      {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["kill"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "99.0"}},
        ],
    }
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    flt = seccomp.build_filter(seccomp.load_localhost(str(path)), DOCKER_DEFAULT_CAPEFF)
    rules = _rules(flt)
    assert flt.default_action == libseccomp.act_errno(1)
    assert "mount" not in rules  # included only with CAP_SYS_ADMIN
    assert "kill" in rules
    if platform.machine() == "x86_64":
        assert flt.architectures == ["x86_64", "x86"]
    # two conditions on one argument become two rules; unknown names are skipped
    assert seccomp.compile_for(Seccomp(type="Localhost", localhost_path=str(path)),
                               DOCKER_DEFAULT_CAPEFF, False)


def test_localhost_profile_errors_name_the_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.json")
    with pytest.raises(SpecError, match=r"nope\.json"):
        seccomp.compile_for(Seccomp(type="Localhost", localhost_path=missing), 0, False)
    bad = tmp_path / "bad.json"
    bad.write_text('{"defaultAction": "SCMP_ACT_ALLOW",\n "syscalls": [}')
    with pytest.raises(SpecError, match=r"bad.json:2:\d+: invalid JSON"):
        seccomp.compile_for(Seccomp(type="Localhost", localhost_path=str(bad)), 0, False)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"defaultAction": "SCMP_ACT_BOGUS"}))
    with pytest.raises(SpecError, match="SCMP_ACT_BOGUS"):
        seccomp.compile_for(Seccomp(type="Localhost", localhost_path=str(wrong)), 0, False)
