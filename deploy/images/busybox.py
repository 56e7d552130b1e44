#!/usr/bin/env python3
"""Build the tiny busybox test image offline, from Debian's busybox-static.

The image has one layer: the static /bin/busybox, a symlink per applet
(from `busybox --list-full`), /etc/passwd and /etc/group with root, nobody
and a uid-1000 user, and the usual empty dirs. Its config runs `sh`.

Written three ways, all with the same image (same config and layer
digests): an OCI image layout dir, the same layout as a tar, and a legacy
`docker save` archive. Default names: timonel.local/busybox:latest and
busybox:latest.

As a script:   .venv/bin/python deploy/images/busybox.py --out DIR
From tests:    load this file (see tests/integration/images/conftest.py) and
               call build_busybox_image() / write_busybox_image(DIR).
Needs: `apt-get install busybox-static` (deploy/install.sh does it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from timonel.node_agent.runtime.images.builder import (
    BuiltImage,
    layer_from_dir,
    make_config,
    write_docker_archive,
    write_oci_layout,
    write_oci_tar,
)

BUSYBOX = "/bin/busybox"
DEFAULT_NAMES = ("timonel.local/busybox:latest", "busybox:latest")

PASSWD = """root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
user:x:1000:1000:user:/home/user:/bin/sh
"""
GROUP = """root:x:0:
nobody:x:65534:
user:x:1000:
"""


def busybox_binary() -> str:
    """Path of a static busybox, or a clear error saying how to get one."""
    if not os.path.isfile(BUSYBOX):
        raise FileNotFoundError(f"{BUSYBOX} is missing: install Debian's busybox-static (apt-get install busybox-static)")
    out = subprocess.run(["file", "-L", BUSYBOX], capture_output=True, text=True, check=False).stdout \
        if shutil.which("file") else ""
    if out and "dynamically linked" in out:
        raise RuntimeError(f"{BUSYBOX} is dynamically linked: install busybox-static, not busybox")
    return BUSYBOX


def build_busybox_rootfs(dest: str | os.PathLike[str]) -> Path:
    """Lay out the busybox root filesystem in `dest` (created if missing)."""
    dest = Path(dest)
    binary = busybox_binary()
    (dest / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, dest / "bin" / "busybox")
    os.chmod(dest / "bin" / "busybox", 0o755)
    applets = subprocess.run([binary, "--list-full"], capture_output=True, text=True, check=True).stdout.split()
    for rel in applets:
        link = dest / rel
        if rel == "bin/busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    for d, mode in (("etc", 0o755), ("root", 0o700), ("home/user", 0o755), ("tmp", 0o1777),
                    ("proc", 0o555), ("sys", 0o555), ("dev", 0o755), ("var/tmp", 0o1777), ("run", 0o755)):
        (dest / d).mkdir(parents=True, exist_ok=True)
        os.chmod(dest / d, mode)
    (dest / "etc" / "passwd").write_text(PASSWD)
    (dest / "etc" / "group").write_text(GROUP)
    return dest


def build_busybox_image(names: tuple[str, ...] | list[str] = DEFAULT_NAMES) -> BuiltImage:
    """The busybox image in memory (one gzip layer, Cmd ["sh"])."""
    with tempfile.TemporaryDirectory(prefix="busybox-rootfs-") as tmp:
        rootfs = build_busybox_rootfs(tmp)
        layer = layer_from_dir(rootfs, "gzip")
    config = make_config([layer], cmd=["sh"])
    return BuiltImage([layer], config, list(names))


def write_busybox_image(out: str | os.PathLike[str], names: tuple[str, ...] | list[str] = DEFAULT_NAMES,
                        image: BuiltImage | None = None) -> dict[str, Path]:
    """Write the image as `oci/` (layout dir), `busybox-oci.tar` and `busybox-docker.tar`."""
    out = Path(out)
    img = image or build_busybox_image(names)
    return {
        "oci_dir": write_oci_layout([img], out / "oci"),
        "oci_tar": write_oci_tar([img], out / "busybox-oci.tar"),
        "docker_archive": write_docker_archive([img], out / "busybox-docker.tar"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="directory to write the image files into")
    p.add_argument("--name", action="append", help="image name (repeatable); default: {}".format(", ".join(DEFAULT_NAMES)))
    args = p.parse_args(argv)
    try:
        paths = write_busybox_image(args.out, tuple(args.name or DEFAULT_NAMES))
    except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
