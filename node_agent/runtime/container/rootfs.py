"""The container's root filesystem, built inside its own mount namespace.

Runs in the container's init before pivot_root: everything mounted here
disappears with the mount namespace when the container's last process exits.
Paths inside the rootfs are resolved with `secure_join`, so a symlink in an
image can never point a mount at the host.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..linux import SyscallsLike
from ..linux.constants import (
    CLONE_NEWNS,
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_STRICTATIME,
)
from .spec import Mount

log = logging.getLogger(__name__)

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_SYMLINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
                "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx", "core": "/proc/kcore"}
# Docker's defaults: kernel interfaces a container must not read or write.
MASKED_PATHS = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware", "/sys/devices/virtual/powercap"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def _under_proc(paths: list[str]) -> list[str]:
    return [p for p in paths if p.startswith("/proc/") and ".." not in p.split("/")]


# What stage_kernel_mounts does to /proc: the defaults' /proc paths.
_STAGED_PROC_MASKS = (_under_proc(MASKED_PATHS), _under_proc(READONLY_PATHS))

_MAX_MOUNT_DATA = 4000  # the kernel copies at most one page of mount options
# Errors that mean "overlay cannot be used here" (rather than "bad layers"): copy instead.
_NO_OVERLAY = (errno.EINVAL, errno.ENODEV, errno.EOPNOTSUPP, errno.ENOSYS)


@dataclass
class RootfsPlan:
    root: str  # where the rootfs is assembled (a dir in the state dir)
    layers: list[str]  # read-only, top first (overlay's lowerdir order, as the image store gives them)
    upper: str
    work: str
    copy_dir: str  # used when overlay cannot be mounted
    mounts: list[Mount] = field(default_factory=list)
    etc_files: dict[str, str] = field(default_factory=dict)  # "/etc/hosts" -> file in state dir
    privileged: bool = False
    masked_paths: list[str] = field(default_factory=lambda: list(MASKED_PATHS))
    readonly_paths: list[str] = field(default_factory=lambda: list(READONLY_PATHS))
    working_dir: str = "/"
    force_copy: bool = False
    # The host's cgroup filesystems, re-mounted at /sys/fs/cgroup (seen through the
    # container's cgroup namespace): [dir, fstype, options]; [["", "cgroup2", ""]] on v2.
    cgroup_mounts: list[list[str]] = field(default_factory=list)
    cgroup_links: dict[str, str] = field(default_factory=dict)  # "cpu" -> "cpu,cpuacct"


def secure_join(root: str, path: str) -> str:
    """`root/path` with every symlink resolved as if `root` were `/` (no escape)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 40:
                raise OSError(errno.ELOOP, f"too many symlinks resolving {path} in {root}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def _ensure(path: str, is_dir: bool) -> str:
    """A mount point: made if missing (one syscall when it exists, as it mostly does); `path`."""
    try:
        if is_dir:
            os.mkdir(path)
        else:  # O_EXCL: an existing file, dir or symlink is left alone, not followed
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _ensure(path, is_dir)
    return path


def overlay_options(layers: list[str], upper: str, work: str) -> str:
    return f"lowerdir={':'.join(layers)},upperdir={upper},workdir={work}"


def mount_overlay(sys: SyscallsLike, plan: RootfsPlan, flags: int = 0) -> None:
    data = overlay_options(plan.layers, plan.upper, plan.work)
    if len(data) > _MAX_MOUNT_DATA:
        # Too long for one page: mount from the layers' common parent with relative paths.
        common = os.path.commonpath([*plan.layers, plan.upper, plan.work])
        rel = [os.path.relpath(p, common) for p in plan.layers]
        data = overlay_options(rel, os.path.relpath(plan.upper, common), os.path.relpath(plan.work, common))
        cwd = os.getcwd()
        sys.chdir(common)
        try:
            sys.mount("overlay", plan.root, "overlay", flags, data)
        finally:
            sys.chdir(cwd)
        return
    sys.mount("overlay", plan.root, "overlay", flags, data)


def _clear_dir(path: str) -> None:
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _is_opaque(path: str) -> bool:
    for name in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            pass
    return False


def copy_layers(layers: list[str], dest: str) -> None:
    """Flatten layers (top first, like lowerdir) into `dest`, honouring overlay and AUFS whiteouts."""
    os.makedirs(dest, exist_ok=True)
    for layer in reversed(layers):  # bottom up, so upper layers win
        for dirpath, dirnames, filenames in os.walk(layer):
            rel = os.path.relpath(dirpath, layer)
            target_dir = os.path.normpath(os.path.join(dest, rel))
            opaque = ".wh..wh..opq" in filenames or (rel != "." and _is_opaque(dirpath))
            if opaque and os.path.isdir(target_dir):  # before this layer's entries land
                _clear_dir(target_dir)
            for name in [*dirnames, *filenames]:
                src = os.path.join(dirpath, name)
                dst = os.path.join(target_dir, name)
                st = os.lstat(src)
                if name == ".wh..wh..opq":
                    continue
                if name.startswith(".wh."):
                    _remove(os.path.join(target_dir, name[4:]))
                    continue
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # overlay whiteout
                    _remove(dst)
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if os.path.lexists(dst) and not os.path.isdir(dst):
                        _remove(dst)
                    os.makedirs(dst, exist_ok=True)
                else:
                    _remove(dst)
                    if stat.S_ISLNK(st.st_mode):
                        os.symlink(os.readlink(src), dst)
                    elif stat.S_ISREG(st.st_mode):
                        shutil.copyfile(src, dst, follow_symlinks=False)
                    else:
                        os.mknod(dst, st.st_mode, st.st_rdev)
                os.lchown(dst, st.st_uid, st.st_gid)
                if not stat.S_ISLNK(st.st_mode):
                    os.chmod(dst, stat.S_IMODE(st.st_mode))
                    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def _bind(sys: SyscallsLike, source: str, target: str, read_only: bool, extra: int = 0) -> None:
    sys.mount(source, target, None, MS_BIND | MS_REC)
    if read_only or extra:
        flags = MS_REMOUNT | MS_BIND | extra | (MS_RDONLY if read_only else 0)
        sys.mount(None, target, None, flags)


def mount_rootfs(sys: SyscallsLike, plan: RootfsPlan, staged: StagedMounts | None = None) -> None:
    """Make `/` private, assemble the rootfs at plan.root with its kernel filesystems.

    Unless privileged, everything but the bind-mounted device nodes and
    /dev/pts is `nodev`: with CAP_MKNOD (in Docker's default set) a container
    could otherwise create /dev/sda and read the host's disk. This stands in
    for Docker's device cgroup allow list, on cgroup v1 and v2 alike.
    `staged`: /proc and /dev built ahead of need (stage_kernel_mounts), attached
    when the plan wants them as they are; their descriptors are closed here.
    """
    nodev_unless_privileged = 0 if plan.privileged else MS_NODEV
    sys.mount(None, "/", None, MS_REC | MS_PRIVATE)
    try:
        if plan.force_copy:
            raise OSError(errno.EINVAL, "copy requested")
        mount_overlay(sys, plan, nodev_unless_privileged)
    except OSError as e:
        if e.errno not in _NO_OVERLAY:
            raise OSError(e.errno, f"mounting the overlay rootfs: {e.strerror}; check the image layers "
                                   f"{plan.layers}") from None
        # e.g. the state dir is itself on overlay (a Docker container's root).
        log.info("overlay unavailable, copying layers root=%s err=%s", plan.root, e)
        if not os.path.exists(os.path.join(plan.copy_dir, ".timonel-complete")):
            copy_layers(plan.layers, plan.copy_dir)
            open(os.path.join(plan.copy_dir, ".timonel-complete"), "w").close()
        _bind(sys, plan.copy_dir, plan.root, read_only=False, extra=nodev_unless_privileged)
    r = plan.root
    nodev = MS_NOSUID | MS_NOEXEC | MS_NODEV

    def at(path: str, is_dir: bool = True) -> str:
        return _ensure(secure_join(r, path), is_dir)

    masked, readonly = ([], []) if plan.privileged else (plan.masked_paths, plan.readonly_paths)
    proc_masked, proc_readonly = _under_proc(masked), _under_proc(readonly)
    proc = at("/proc")
    if staged and (proc_masked, proc_readonly) == _STAGED_PROC_MASKS:
        sys.attach_tree(staged.proc, proc)
    else:
        _mount_proc(sys, proc, proc_masked, proc_readonly)
    sysfs = at("/sys")
    sys.mount("sysfs", sysfs, "sysfs", nodev | (0 if plan.privileged else MS_RDONLY))
    dev = at("/dev")
    if staged and not plan.privileged:
        sys.attach_tree(staged.dev, dev)
    else:
        _mount_dev(sys, dev, plan.privileged)
    # mqueue shows the IPC namespace of whoever mounts it: never staged, the pod's is joined later.
    sys.mount("mqueue", _ensure(os.path.join(dev, "mqueue"), True), "mqueue", nodev)
    for dest, source in plan.etc_files.items():
        _bind(sys, source, at(dest, is_dir=False), read_only=False, extra=nodev_unless_privileged)
    for m in plan.mounts:
        try:
            is_dir = os.path.isdir(m.source)
        except OSError:
            is_dir = True
        if not os.path.exists(m.source):
            raise OSError(errno.ENOENT, f"mount source {m.source} (for {m.destination}) does not exist")
        _bind(sys, m.source, at(m.destination, is_dir), m.read_only, extra=nodev_unless_privileged)
    at(plan.working_dir)
    _mask(sys, lambda path: _kernel_path(r, path), [p for p in masked if p not in proc_masked],
          [p for p in readonly if p not in proc_readonly])
    if staged:
        staged.close()


@dataclass
class StagedMounts:
    """A default container's /proc and /dev, as detached mount trees (file descriptors)."""

    proc: int
    dev: int

    def close(self) -> None:
        for fd in (self.proc, self.dev):
            with contextlib.suppress(OSError):
                os.close(fd)


def stage_kernel_mounts(sys: SyscallsLike, scratch: str = "/tmp") -> StagedMounts:
    """Build a default container's /proc (with its masks) and /dev before there is a container.

    For a spare init, PID 1 of its PID namespace already (a procfs shows the PID
    namespace of whoever mounts it), in a throwaway mount namespace: the mounts
    are made under a tmpfs over `scratch` and cloned out as detached trees that
    outlive that namespace. mount_rootfs attaches them, submounts and all: ~25
    of a container's ~45 mounts leave CreateContainer's path. /sys and
    /dev/mqueue are not staged: they show the network and IPC namespaces of their
    mounter, and the pod's are joined later.
    """
    sys.mount(None, "/", None, MS_REC | MS_PRIVATE)
    sys.mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NOEXEC | MS_NODEV, "mode=700,size=64k")
    proc = _ensure(os.path.join(scratch, "proc"), True)
    _mount_proc(sys, proc, *_STAGED_PROC_MASKS)
    dev = _ensure(os.path.join(scratch, "dev"), True)
    _mount_dev(sys, dev, privileged=False)
    proc_tree = sys.clone_tree(proc)
    try:
        return StagedMounts(proc_tree, sys.clone_tree(dev))
    except OSError:
        os.close(proc_tree)
        raise


def staging_namespace(sys: SyscallsLike, base: str = "/tmp") -> int:
    """A mount namespace of two mounts, for stage_kernel_mounts to copy: a tmpfs root with
    /tmp and the host's /dev (bound, without its submounts); an fd to it (close-on-exec).

    Must be called by a single-threaded process (setns back to our namespace). A spare's
    init stages in a copy of a namespace, and a copy takes every mount of the one copied,
    each cloned again and unmounted when the copy goes: the host's grows by three per pod
    (the namespace pins), and with 320 mounts an unshare-and-back took 531 us of CPU
    against 40 us with 22. `base`: where the tmpfs goes in our throwaway copy (it is
    hidden by nothing there: the copy is private and pivoted away from).
    """
    own = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    made = -1
    try:
        sys.unshare(CLONE_NEWNS)
        try:
            made = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            sys.mount(None, "/", None, MS_REC | MS_PRIVATE)
            sys.mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=64k")
            for name in ("dev", "tmp"):
                os.mkdir(os.path.join(base, name), 0o755)
            sys.mount("/dev", os.path.join(base, "dev"), None, MS_BIND)
            sys.chdir(base)
            sys.pivot_root(".", ".")
            sys.umount2(".", MNT_DETACH)
        finally:
            sys.setns(own, CLONE_NEWNS)  # an error here ends the process: it is in neither
            os.fchdir(cwd)  # setns moved us to the root
    except BaseException:
        if made >= 0:
            os.close(made)
        raise
    finally:
        os.close(own)
        os.close(cwd)
    return made


def _mount_proc(sys: SyscallsLike, proc: str, masked: list[str], readonly: list[str]) -> None:
    """procfs at `proc` with the given /proc/... paths masked and read-only."""
    sys.mount("proc", proc, "proc", MS_NOSUID | MS_NOEXEC | MS_NODEV)
    _mask(sys, lambda path: proc + path[len("/proc"):], masked, readonly)


def _mount_dev(sys: SyscallsLike, dev: str, privileged: bool) -> None:
    """A tmpfs /dev with pts, shm, the device nodes and the usual links (mqueue apart)."""
    nodev = MS_NOSUID | MS_NOEXEC | MS_NODEV
    sys.mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_STRICTATIME | (0 if privileged else MS_NODEV),
              "mode=755,size=65536k")
    # From here on paths are inside the tmpfs just mounted (nothing of the image's): plain
    # joins and mkdirs, without secure_join's walk.
    sys.mount("devpts", _ensure(os.path.join(dev, "pts"), True), "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=0620,gid=5")
    sys.mount("shm", _ensure(os.path.join(dev, "shm"), True), "tmpfs", nodev, "mode=1777,size=65536k")
    if privileged:
        _host_devices(dev)
    else:
        for name in DEVICES:
            sys.mount(f"/dev/{name}", _ensure(os.path.join(dev, name), False), None, MS_BIND)
    for name, target in DEV_SYMLINKS.items():
        with contextlib.suppress(FileExistsError):  # a host device of that name (privileged)
            os.symlink(target, os.path.join(dev, name))


def mount_cgroup_fs(sys: SyscallsLike, plan: RootfsPlan, cgroup_dirs: Sequence[str] = ()) -> None:
    """/sys/fs/cgroup, read-only unless privileged: runtimes such as the JVM size themselves from it.

    Separate from mount_rootfs because it comes after the init has joined its
    cgroup and made its cgroup namespace (the mounts show that namespace's root).
    `cgroup_dirs`: the container's own cgroup in each of plan.cgroup_mounts' hierarchies
    (same order); when given, those are bound rather than the hierarchies mounted again.
    """
    if not plan.cgroup_mounts:
        return
    base = _ensure(_kernel_path(plan.root, "/sys/fs/cgroup"), True)  # in the sysfs mount_rootfs made
    flags = MS_NOSUID | MS_NOEXEC | MS_NODEV | (0 if plan.privileged else MS_RDONLY)
    if len(plan.cgroup_mounts) == 1 and plan.cgroup_mounts[0][0] == "":
        sys.mount("cgroup2", base, "cgroup2", flags)
        return
    sys.mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NOEXEC | MS_NODEV, "mode=755,size=64k")
    binds = len(cgroup_dirs) == len(plan.cgroup_mounts)
    for i, (name, fstype, options) in enumerate(plan.cgroup_mounts):
        target = _ensure(os.path.join(base, name), True)
        if binds:
            # The same directory the cgroup namespace's root shows, at a third of the cost:
            # a new mount of a v1 hierarchy takes the kernel's cgroup mutex (which every
            # cgroup mkdir and rmdir on the node also takes) and ~0.1 ms; a bind does not.
            sys.mount(cgroup_dirs[i], target, None, MS_BIND)
            sys.mount(None, target, None, MS_REMOUNT | MS_BIND | flags)
        else:
            sys.mount(fstype, target, fstype, flags, options or None)
    for link, target in plan.cgroup_links.items():
        os.symlink(target, os.path.join(base, link))
    sys.mount(None, base, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC | MS_NODEV)


def _host_devices(dev: str) -> None:
    # Privileged: every top-level device node of the host, as Docker does.
    for entry in os.scandir("/dev"):
        st = entry.stat(follow_symlinks=False)
        if (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) and entry.name != "console":
            target = os.path.join(dev, entry.name)
            if not os.path.lexists(target):
                os.mknod(target, st.st_mode, st.st_rdev)


def _mask(sys: SyscallsLike, where: Callable[[str], str], masked: list[str], readonly: list[str]) -> None:
    """Hide `masked` paths (tmpfs over dirs, /dev/null over files) and make `readonly` ones so;
    `where` maps a container path to the host path to mount on."""
    for path in masked:
        target = where(path)
        try:
            is_dir = stat.S_ISDIR(os.stat(target).st_mode)
        except FileNotFoundError:
            continue
        if is_dir:
            sys.mount("tmpfs", target, "tmpfs", MS_RDONLY, "size=0")
        else:
            sys.mount("/dev/null", target, None, MS_BIND)
    for path in readonly:
        target = where(path)
        if os.path.exists(target):
            _bind(sys, target, target, read_only=True, extra=MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _kernel_path(root: str, path: str) -> str:
    """A path of the container; a plain join under /sys, the kernel's filesystem mounted
    just now (no image file can redirect it), else secure_join. (/proc paths are masked
    where procfs is mounted, by _mount_proc.)"""
    if path.startswith("/sys/") and ".." not in path.split("/"):
        return root + path
    return secure_join(root, path)


def pivot(sys: SyscallsLike, root: str, read_only: bool) -> None:
    """Make `root` the new `/` and detach the host's root from this namespace.

    The new root is a recursive bind of the assembled tree onto itself: its copy
    numbers the mounts afresh in tree order, so the container's mountinfo lists
    `/` first and each mount after its parent, however the tree was assembled
    (trees attached from stage_kernel_mounts were made first). The original tree
    goes with the old root.
    """
    sys.mount(root, root, None, MS_BIND | MS_REC)
    sys.chdir(root)
    # pivot_root(".", ".") stacks the old root under the new one; unmounting "."
    # then removes it, without needing a put_old directory in the image.
    sys.pivot_root(".", ".")
    sys.umount2(".", MNT_DETACH)
    sys.chdir("/")
    if read_only:
        sys.mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY)
