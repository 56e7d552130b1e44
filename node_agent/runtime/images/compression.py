"""Layer blob streams: decompression (gzip, zstd, none) with hashing on the way.

One pass over a blob both verifies its digest (compressed bytes) and its
diff_id (uncompressed bytes) while the tar is being unpacked.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import threading
from typing import Any

from .errors import InvalidImageError

_CHUNK = 1 << 20


class HashingReader:
    """Passes reads through while hashing, so one pass both unpacks and verifies."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.h = hashlib.sha256()
        self.n = 0

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.h.update(data)
        self.n += len(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.h.hexdigest()


def sniff_compression(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return "none"


class Decompressed:
    """The uncompressed byte stream of a layer blob, whatever its compression."""

    def __init__(self, raw: HashingReader, kind: str, where: str) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None
        self._pump_error: BaseException | None = None
        self.stream: Any
        if kind == "gzip":
            self.stream = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[call-overload]
        elif kind == "zstd":
            self.stream = self._zstd(raw, where)
        else:
            self.stream = raw

    def _zstd(self, raw: HashingReader, where: str) -> Any:
        try:
            import zstandard  # type: ignore[import-not-found]

            return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        except ImportError:
            pass
        exe = shutil.which("zstd")
        if exe is None:
            raise InvalidImageError(
                f"{where}: layer is zstd-compressed but neither the 'zstandard' Python package "
                "nor the 'zstd' program is installed; install one (apt-get install zstd)"
            )
        self._proc = subprocess.Popen([exe, "-dcq"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL)

        def pump() -> None:
            assert self._proc is not None and self._proc.stdin is not None
            try:
                while chunk := raw.read(_CHUNK):
                    self._proc.stdin.write(chunk)
            except BrokenPipeError:
                pass
            except BaseException as e:
                self._pump_error = e
            finally:
                try:
                    self._proc.stdin.close()
                except BrokenPipeError:
                    pass

        self._pump = threading.Thread(target=pump, name="zstd-pump", daemon=True)
        self._pump.start()
        return self._proc.stdout

    def finish(self, where: str) -> None:
        """Read to the end (so the digests cover every byte) and reap helpers."""
        while self.stream.read(_CHUNK):
            pass
        if self._proc is not None:
            assert self._pump is not None
            self._pump.join()
            rc = self._proc.wait()
            if self._pump_error is not None:
                raise self._pump_error
            if rc != 0:
                raise InvalidImageError(f"{where}: zstd could not decompress the layer (exit {rc})")

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
