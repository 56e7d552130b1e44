"""Unpack layer tars safely, for overlayfs or flattened into one rootfs.

Two modes:
- `overlay`: each layer goes into its own empty dir and its whiteouts take
  overlayfs' form (a 0/0 char device for `.wh.<name>`, the
  `trusted.overlay.opaque=y` xattr for `.wh..wh..opq`), so the dirs can be
  stacked as `lowerdir=`. Whiteouts need root (mknod, trusted xattrs).
- `copy`: layers are applied in order onto one dir and whited-out paths are
  deleted; used where overlayfs is unavailable.

Layers are untrusted. Every path is walked component by component from an
fd of the layer root with O_NOFOLLOW, so nothing is ever written through a
symlink; a symlink met as a *parent* is resolved inside the root, the way a
chroot would see it, so `lib -> /usr/lib` style layouts still work but can
never point outside. `..` escaping the root and hardlinks to outside targets
refuse the layer; device nodes other than whiteouts are skipped; `trusted.*`
xattrs (which would let a layer forge overlayfs metadata) are dropped.
"""

from __future__ import annotations

import errno
import gzip
import logging
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .compression import Decompressed, HashingReader, sniff_compression
from .errors import DigestMismatchError, ImageError, InvalidImageError, UnsafeLayerError

log = logging.getLogger(__name__)

Mode = Literal["overlay", "copy"]

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
_MAX_SYMLINK_HOPS = 40
_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class UnpackStats:
    entries: int = 0
    bytes: int = 0
    whiteouts: int = 0
    skipped: list[str] = field(default_factory=list)
    digest: str = ""
    diff_id: str = ""


def clean_components(name: str, where: str, what: str = "entry") -> list[str]:
    """Split a tar path into components; `..` that would leave the root is refused.

    Absolute names are taken relative to the root (as Docker and containerd do).
    """
    parts: list[str] = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if not parts:
                raise UnsafeLayerError(f"{where}: {what} {name!r} points outside the layer root; refusing the layer")
            parts.pop()
        else:
            parts.append(p)
    return parts


def _close(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)
    fds.clear()


class LayerRoot:
    """An fd on a directory and path resolution that never leaves it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, _DIR_FLAGS)

    def close(self) -> None:
        os.close(self.fd)

    def open_dir(self, comps: Sequence[str], *, create: bool, follow: bool = True) -> int:
        """Return an fd of the dir at `comps`, resolving symlinks inside the root.

        With `create`, missing dirs are made (0755, like tar does for parents
        it was not given). With `follow=False` a symlink anywhere raises
        FileNotFoundError: the caller wanted that exact dir.
        """
        todo = list(comps)
        stack = [os.dup(self.fd)]
        hops = 0
        try:
            while todo:
                c = todo.pop(0)
                if c in ("", "."):
                    continue
                if c == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                    continue
                cur = stack[-1]
                try:
                    fd = os.open(c, _DIR_FLAGS, dir_fd=cur)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(c, 0o755, dir_fd=cur)
                    fd = os.open(c, _DIR_FLAGS, dir_fd=cur)
                except OSError as e:
                    if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    st = os.stat(c, dir_fd=cur, follow_symlinks=False)
                    if not stat.S_ISLNK(st.st_mode) or not follow:
                        raise NotADirectoryError(errno.ENOTDIR, f"{'/'.join(comps)}: {c} is not a directory") from None
                    hops += 1
                    if hops > _MAX_SYMLINK_HOPS:
                        raise UnsafeLayerError(f"too many levels of symbolic links resolving {'/'.join(comps)!r}") from None
                    target = os.readlink(c, dir_fd=cur)
                    if target.startswith("/"):
                        root = stack[0]
                        _close(stack[1:])
                        stack = [root]
                    todo = target.split("/") + todo
                    continue
                stack.append(fd)
            return os.dup(stack[-1])
        finally:
            _close(stack)


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _remove(name: str, dir_fd: int, st: os.stat_result | None = None) -> None:
    st = st or _lstat(name, dir_fd)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)  # fd-based: never follows symlinks
    else:
        os.unlink(name, dir_fd=dir_fd)


def _xattrs(member: tarfile.TarInfo, as_root: bool) -> list[tuple[str, bytes]]:
    out = []
    for k, v in member.pax_headers.items():
        if not k.startswith("SCHILY.xattr."):
            continue
        name = k[len("SCHILY.xattr."):]
        if name.startswith("trusted."):
            continue  # would let a layer forge overlayfs whiteouts/redirects
        if not as_root and not name.startswith("user."):
            continue
        out.append((name, v.encode("utf-8", "surrogateescape")))
    return out


@dataclass
class _DirMeta:
    comps: list[str]
    member: tarfile.TarInfo


class _Extractor:
    def __init__(self, dest: str, mode: Mode, where: str, lower_dirs: Sequence[str],
                 same_owner: bool) -> None:
        self.root = LayerRoot(dest)
        self.mode = mode
        self.where = where
        self.lower_dirs = list(lower_dirs)
        self.same_owner = same_owner
        self.stats = UnpackStats()
        self.created: set[tuple[str, ...]] = set()
        self.dirs: list[_DirMeta] = []

    def close(self) -> None:
        self.root.close()

    def _mark(self, comps: list[str]) -> None:
        for i in range(1, len(comps) + 1):
            self.created.add(tuple(comps[:i]))

    def entry(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        comps = clean_components(m.name, self.where)
        self.stats.entries += 1
        if not comps:
            if m.isdir():
                self.dirs.append(_DirMeta([], m))
            return
        base = comps[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(comps, base)
            return
        if m.ischr() and m.devmajor == 0 and m.devminor == 0:
            # An overlay-style whiteout exported as-is: same meaning as `.wh.<name>`.
            self._whiteout([*comps[:-1], WHITEOUT_PREFIX + base], WHITEOUT_PREFIX + base)
            return
        if m.ischr() or m.isblk():
            log.warning("layer=%s skipped=%s reason=device-node major=%d minor=%d",
                        self.where, m.name, m.devmajor, m.devminor)
            self.stats.skipped.append(m.name)
            return
        if not (m.isreg() or m.isdir() or m.issym() or m.islnk() or m.isfifo()):
            log.warning("layer=%s skipped=%s reason=unsupported-type type=%r", self.where, m.name, m.type)
            self.stats.skipped.append(m.name)
            return
        self._mark(comps)
        parent = self.root.open_dir(comps[:-1], create=True)
        try:
            existing = _lstat(base, parent)
            if m.isdir():
                if existing is None or not stat.S_ISDIR(existing.st_mode):
                    _remove(base, parent, existing)
                    os.mkdir(base, 0o755, dir_fd=parent)
                self.dirs.append(_DirMeta(comps, m))
                return
            if existing is not None:
                _remove(base, parent, existing)
            if m.isreg():
                self._file(tf, m, base, parent)
            elif m.issym():
                os.symlink(m.linkname, base, dir_fd=parent)
                self._owner_times(m, base, parent)
            elif m.islnk():
                self._hardlink(m, base, parent)
            elif m.isfifo():
                os.mkfifo(base, 0o600, dir_fd=parent)
                fd = os.open(base, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
                try:
                    self._meta_fd(fd, m)
                finally:
                    os.close(fd)
        finally:
            os.close(parent)

    def _file(self, tf: tarfile.TarFile, m: tarfile.TarInfo, base: str, parent: int) -> None:
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=parent)
        try:
            src = tf.extractfile(m)
            if src is not None:
                with open(fd, "wb", closefd=False) as out:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        self.stats.bytes += len(chunk)
            self._meta_fd(fd, m)
        finally:
            os.close(fd)

    def _setxattr(self, fd: int, name: str, value: bytes, path: str) -> None:
        try:
            os.setxattr(fd, name, value)
        except OSError as e:
            log.warning("layer=%s path=%s xattr=%s skipped error=%s", self.where, path, name, e.strerror)

    def _meta_fd(self, fd: int, m: tarfile.TarInfo) -> None:
        # chown first: it clears setuid/setgid and file capabilities, which
        # the xattrs and fchmod then restore.
        if self.same_owner:
            os.fchown(fd, m.uid, m.gid)
        for name, value in _xattrs(m, self.same_owner):
            self._setxattr(fd, name, value, m.name)
        os.fchmod(fd, m.mode & 0o7777)
        ns = int(m.mtime * 1e9)
        os.utime(fd, ns=(ns, ns))

    def _owner_times(self, m: tarfile.TarInfo, base: str, parent: int) -> None:
        if self.same_owner:
            os.chown(base, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
        ns = int(m.mtime * 1e9)
        os.utime(base, ns=(ns, ns), dir_fd=parent, follow_symlinks=False)

    def _hardlink(self, m: tarfile.TarInfo, base: str, parent: int) -> None:
        tcomps = clean_components(m.linkname, self.where, what=f"hardlink {m.name!r} ->")
        if not tcomps:
            raise UnsafeLayerError(f"{self.where}: hardlink {m.name!r} points at the layer root; refusing the layer")
        if self._link_from(self.root, tcomps, base, parent):
            return
        # Hardlinks may name a file of a lower layer; in overlay mode that
        # file lives in another dir, so copy it (a link cannot cross layers).
        for lower in self.lower_dirs:
            lroot = LayerRoot(lower)
            try:
                if self._link_from(lroot, tcomps, base, parent, copy=True):
                    return
            finally:
                lroot.close()
        raise UnsafeLayerError(
            f"{self.where}: hardlink {m.name!r} -> {m.linkname!r}: target is not inside the image; refusing the layer"
        )

    def _link_from(self, root: LayerRoot, tcomps: list[str], base: str, parent: int,
                   copy: bool = False) -> bool:
        try:
            tparent = root.open_dir(tcomps[:-1], create=False)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            st = _lstat(tcomps[-1], tparent)
            if st is None or stat.S_ISDIR(st.st_mode):
                return False
            if not copy:
                os.link(tcomps[-1], base, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False)
                return True
            if not stat.S_ISREG(st.st_mode):
                return False
            src = os.open(tcomps[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=tparent)
            try:
                dst = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                              dir_fd=parent)
                try:
                    with open(src, "rb", closefd=False) as fin, open(dst, "wb", closefd=False) as fout:
                        shutil.copyfileobj(fin, fout, _CHUNK)
                    if self.same_owner:
                        os.fchown(dst, st.st_uid, st.st_gid)
                    os.fchmod(dst, stat.S_IMODE(st.st_mode))
                finally:
                    os.close(dst)
            finally:
                os.close(src)
            return True
        finally:
            os.close(tparent)

    def _whiteout(self, comps: list[str], base: str) -> None:
        self.stats.whiteouts += 1
        dir_comps = comps[:-1]
        if base.startswith(WHITEOUT_META_PREFIX) and base != WHITEOUT_OPAQUE:
            return  # aufs bookkeeping (.wh..wh.plnk etc.), meaningless here
        target = base[len(WHITEOUT_PREFIX):]
        if base != WHITEOUT_OPAQUE and target in ("", ".", ".."):
            raise UnsafeLayerError(f"{self.where}: invalid whiteout {'/'.join(comps)!r}; refusing the layer")
        if self.mode == "copy":
            try:
                parent = self.root.open_dir(dir_comps, create=False)
            except (FileNotFoundError, NotADirectoryError):
                return  # nothing below to hide
        else:
            self._mark(dir_comps)
            parent = self.root.open_dir(dir_comps, create=True)
        try:
            if base == WHITEOUT_OPAQUE:
                if self.mode == "copy":
                    self._clear_lower(parent, dir_comps)
                else:
                    self._root_only(lambda: os.setxattr(parent, OVERLAY_OPAQUE_XATTR, b"y"))
                return
            if tuple([*dir_comps, target]) in self.created:
                return  # this layer's own entry of that name wins over its whiteout
            if self.mode == "copy":
                _remove(target, parent)
            else:
                existing = _lstat(target, parent)
                if existing is not None:
                    _remove(target, parent, existing)
                self._root_only(lambda: os.mknod(target, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent))
        finally:
            os.close(parent)

    def _root_only(self, op: Any) -> None:
        try:
            op()
        except PermissionError:
            raise ImageError(
                f"{self.where}: overlay-mode whiteouts need root (device nodes and trusted.* xattrs); "
                "run as root or unpack in copy mode"
            ) from None

    def _clear_lower(self, dir_fd: int, dir_comps: list[str]) -> None:
        """Opaque dir in copy mode: drop what lower layers put under it."""
        for child in os.listdir(dir_fd):
            key = (*dir_comps, child)
            st = _lstat(child, dir_fd)
            if st is None:
                continue
            if key not in self.created:
                _remove(child, dir_fd, st)
            elif stat.S_ISDIR(st.st_mode):
                fd = os.open(child, _DIR_FLAGS, dir_fd=dir_fd)
                try:
                    self._clear_lower(fd, list(key))
                finally:
                    os.close(fd)

    def finish_dirs(self) -> None:
        # Directory metadata last: entries written into a dir would bump its
        # mtime, and a read-only mode must not stop later writes as non-root.
        # Deepest first, so a restrictive parent mode never blocks reaching a child.
        for d in sorted(self.dirs, key=lambda x: -len(x.comps)):  # stable: a later entry wins
            try:
                fd = self.root.open_dir(d.comps, create=False, follow=False)
            except (FileNotFoundError, NotADirectoryError):
                continue  # replaced by a later entry
            except PermissionError:
                log.warning("layer=%s dir=%s metadata skipped: no access", self.where, "/".join(d.comps))
                continue
            try:
                self._meta_fd(fd, d.member)
            finally:
                os.close(fd)


def unpack_layer(
    blob_path: str,
    dest: str,
    *,
    mode: Mode = "overlay",
    expected_digest: str | None = None,
    expected_diff_id: str | None = None,
    lower_dirs: Sequence[str] = (),
    same_owner: bool | None = None,
    where: str | None = None,
) -> UnpackStats:
    """Unpack the layer tar at `blob_path` (plain, gzip or zstd) into `dest`.

    `dest` must exist (empty in overlay mode). The compressed and
    uncompressed streams are hashed on the way and checked against
    `expected_digest` / `expected_diff_id`; on a mismatch the caller must
    discard `dest`. `lower_dirs` (top first) serve hardlinks to files of lower
    layers in overlay mode. Ownership is kept when `same_owner` (default: when
    running as root).
    """
    where = where or f"layer {expected_digest or blob_path}"
    if same_owner is None:
        same_owner = os.geteuid() == 0
    kind = sniff_compression(blob_path)
    ex = _Extractor(dest, mode, where, lower_dirs, same_owner)
    with open(blob_path, "rb") as f:
        raw = HashingReader(f)
        dec = Decompressed(raw, kind, where)
        try:
            tar_stream = HashingReader(dec.stream)
            try:
                with tarfile.open(fileobj=tar_stream, mode="r|") as tf:  # type: ignore[call-overload]
                    for member in tf:
                        ex.entry(tf, member)
                ex.finish_dirs()
                tar_stream.drain()
                dec.finish(where)
                raw.drain()
            except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
                raise InvalidImageError(f"{where}: not a valid layer tar ({e}); the blob is corrupt") from None
        finally:
            dec.close()
            ex.close()
    st = ex.stats
    st.digest, st.diff_id = raw.digest, tar_stream.digest
    if expected_digest and st.digest != expected_digest:
        raise DigestMismatchError(
            f"{where}: blob content hashes to {st.digest}, expected {expected_digest}; "
            "the blob is corrupt or was tampered with"
        )
    if expected_diff_id and st.diff_id != expected_diff_id:
        raise DigestMismatchError(
            f"{where}: uncompressed layer hashes to {st.diff_id}, but the image config says "
            f"{expected_diff_id}; the layer is corrupt or was tampered with"
        )
    log.debug("layer=%s unpacked entries=%d bytes=%d whiteouts=%d skipped=%d mode=%s",
              where, st.entries, st.bytes, st.whiteouts, len(st.skipped), mode)
    return st
