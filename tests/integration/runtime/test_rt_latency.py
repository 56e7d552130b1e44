"""Start-to-exit latency of a container running `true`: create+start+wait+remove.

Prints the median and p90 next to runc and crun on the same rootfs with the same
namespaces when they are installed and work on this host (crun 1.8 refuses
hybrid cgroup hosts). The assertion is a loose ceiling; the numbers are the point.
A quick sanity check: bench/runtime_start.py is the full comparison (also
through the gRPC API, and crun on hybrid hosts).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import time
from pathlib import Path

from .conftest import Runtime, needs_root


def _bench_module(name: str):  # type: ignore[no-untyped-def]
    """bench/<name>.py: the runc/crun bundle code shared with bench/runtime_start.py."""
    path = Path(__file__).resolve().parents[3] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"timonel_bench_{name}", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


_peers = _bench_module("oci_peers")
summary, oci_bundle, oci_once = _peers.summary, _peers.oci_bundle, _peers.oci_once

pytestmark = needs_root

RUNS = 40


def timonel_once(rt: Runtime, cid: str) -> float:
    t0 = time.perf_counter()
    rt.containers.create(rt.spec(cid, ["/bin/true"]))
    rt.containers.start(cid)
    st = rt.containers.wait(cid, 30)
    rt.containers.remove(cid)
    took = time.perf_counter() - t0
    assert st.exit_code == 0
    return took


def test_start_to_exit_latency(rt: Runtime, tmp_path: Path) -> None:
    peers: dict[str, Path] = {}
    notes: list[str] = []
    for peer in ("crun", "runc"):
        if shutil.which(peer) is None:
            notes.append(f"{peer}: not installed")
            continue
        oci_bundle(peer, rt.layer, tmp_path / peer)
        peers[peer] = tmp_path / peer
    for i in range(3):  # warm the seccomp cache and the page cache
        timonel_once(rt, f"warm{i}")
    samples: dict[str, list[float]] = {"timonel": [], **{p: [] for p in peers}}
    # Interleaved, so a burst of load on a shared box hits every runtime alike.
    for i in range(RUNS):
        samples["timonel"].append(timonel_once(rt, f"lat{i}"))
        for peer, bundle in list(peers.items()):
            result = oci_once(peer, bundle, f"timonel-lat-{peer}-{i}")
            if isinstance(result, str):
                notes.append(f"{peer}: cannot run here ({result})")
                del peers[peer], samples[peer]
            else:
                samples[peer].append(result)
    ours = summary(samples["timonel"])
    lines = [f"timonel: median {ours[0]:.1f} ms, p90 {ours[1]:.1f} ms"]
    for peer in peers:
        median, p90 = summary(samples[peer])
        lines.append(f"{peer}: median {median:.1f} ms, p90 {p90:.1f} ms, timonel/{peer} = {ours[0] / median:.2f}")
    print("\nstart-to-exit latency (create+start+wait+remove of /bin/true):\n  " + "\n  ".join(lines + notes))
    assert ours[0] < 250, lines  # a ceiling for a loaded 2-core box; unloaded it is ~15 ms
    if "runc" in peers:  # ~0.5 on an idle box; interleaving makes load hit both alike
        assert ours[0] < 3.0 * summary(samples["runc"])[0], lines
