"""Container logs in the CRI file format, with size rotation.

Each line: `<RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>`; `P`
marks a piece of a line longer than the buffer, `F` its end or a whole line.
The kubelet and `kubectl logs` read exactly this.
"""

from __future__ import annotations

import os
import time

MAX_LINE = 16 * 1024  # containerd's buffer: longer lines are split into P pieces


def timestamp(ns: int | None = None) -> bytes:
    ns = time.time_ns() if ns is None else ns
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)).encode() + b".%09dZ" % frac


def format_line(stream: str, tag: bytes, content: bytes, ns: int | None = None) -> bytes:
    return b"%s %s %s %s\n" % (timestamp(ns), stream.encode(), tag, content)


class LogWriter:
    def __init__(self, path: str, max_size: int = 10 * 1024 * 1024, max_files: int = 5):
        self.path = path
        self.max_size = max_size
        self.max_files = max(max_files, 1)
        self._partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        self._fd = -1
        self._size = 0
        self.reopen()

    def reopen(self) -> None:
        """Start writing to `path` again (after the kubelet or logrotate moved it away)."""
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        self._size = os.fstat(self._fd).st_size

    def _rotate(self) -> None:
        # path.1 is the newest old file; at most max_files files in all.
        for i in range(self.max_files - 1, 0, -1):
            older = f"{self.path}.{i}"
            if os.path.exists(older):
                if i + 1 >= self.max_files:
                    os.unlink(older)
                else:
                    os.rename(older, f"{self.path}.{i + 1}")
        if self.max_files > 1:
            os.rename(self.path, f"{self.path}.1")
        else:
            os.truncate(self.path, 0)
        self.reopen()

    def _emit(self, stream: str, tag: bytes, content: bytes) -> None:
        line = format_line(stream, tag, content)
        if self.max_size > 0 and self._size > 0 and self._size + len(line) > self.max_size:
            self._rotate()
        os.write(self._fd, line)
        self._size += len(line)

    def write(self, stream: str, data: bytes) -> None:
        buf = self._partial[stream] + data
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl >= 0 and nl - start <= MAX_LINE:
                self._emit(stream, b"F", buf[start:nl])
                start = nl + 1
            elif len(buf) - start >= MAX_LINE:  # no newline within the buffer: a piece
                self._emit(stream, b"P", buf[start:start + MAX_LINE])
                start += MAX_LINE
            else:
                break
        self._partial[stream] = buf[start:]

    def flush(self, stream: str) -> None:
        """At end of stream: a last line without newline is still a whole line."""
        if self._partial[stream]:
            self._emit(stream, b"F", self._partial[stream])
            self._partial[stream] = b""

    def close(self) -> None:
        for stream in self._partial:
            self.flush(stream)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def parse_line(line: bytes) -> tuple[str, str, bool, bytes]:
    """(timestamp, stream, full, content) of one log line; for tests and `logs` readers."""
    ts, stream, tag, content = line.rstrip(b"\n").split(b" ", 3)
    return ts.decode(), stream.decode(), tag == b"F", content
