"""Reading CRI-format container logs as the kubelet serves them.

A log line on disk is `<RFC3339Nano> <stdout|stderr> <F|P> <content>`; what a
reader gets is the content, a newline after each `F` (whole) line, and with
`timestamps` the line's time in front of each new line. As upstream:
`tailLines` counts lines of the file (a long line split into `P` pieces
counts each piece), `sinceTime`/`sinceSeconds` drop older lines, `limitBytes`
cuts the output, and only the current file is read (not rotated ones).
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
FOLLOW_POLL_SECONDS = 0.1


class OptionError(ValueError):
    """A log query parameter that cannot be used (400 for the caller)."""


@dataclass
class LogOptions:
    follow: bool = False
    previous: bool = False
    tail_lines: int | None = None
    since_ns: int | None = None  # drop lines before this time (ns since the epoch)
    timestamps: bool = False
    limit_bytes: int | None = None
    stream: str = ""  # "stdout" or "stderr" (PodLogOptions.stream Stdout/Stderr); "": both


def _bool(query: Mapping[str, str], key: str) -> bool:
    value = query.get(key, "").lower()
    if value in ("", "0", "false"):
        return False
    if value in ("1", "true"):
        return True
    raise OptionError(f"{key}={query[key]!r} is not a boolean: use true or false")


def _positive(query: Mapping[str, str], key: str, minimum: int) -> int | None:
    if key not in query or query[key] == "":
        return None
    try:
        value = int(query[key])
    except ValueError:
        raise OptionError(f"{key}={query[key]!r} is not an integer") from None
    if value < minimum:
        raise OptionError(f"{key}: Invalid value: {value}: must be greater than or equal to {minimum}")
    return value


def parse_time(text: str) -> int:
    """RFC 3339 (fraction optional, Z or an offset) to ns since the epoch."""
    s = text.strip()
    try:
        if s.endswith(("Z", "z")):
            s, offset = s[:-1], 0
        elif len(s) > 6 and s[-6] in "+-" and s[-3] == ":":
            sign = 1 if s[-6] == "+" else -1
            offset = sign * (int(s[-5:-3]) * 3600 + int(s[-2:]) * 60)
            s = s[:-6]
        else:
            raise ValueError("no time zone")
        whole, _, frac = s.partition(".")
        secs = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) - offset
        if frac and not frac.isdigit():
            raise ValueError("bad fraction")
        ns = int((frac + "000000000")[:9]) if frac else 0
    except ValueError:
        raise OptionError(f"{text!r} is not an RFC 3339 time (like 2006-01-02T15:04:05Z)") from None
    return secs * 1_000_000_000 + ns


def format_time(ns: int) -> str:
    """RFC3339Nano as Go prints it: trailing zeros of the fraction dropped."""
    secs, frac = divmod(ns, 1_000_000_000)
    out = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    digits = f"{frac:09d}".rstrip("0")
    return f"{out}.{digits}Z" if digits else f"{out}Z"


def parse_options(query: Mapping[str, str], now_ns: int | None = None) -> LogOptions:
    """The kubelet's log options from a `/containerLogs` or `pods/X/log` query."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    opts = LogOptions(follow=_bool(query, "follow"), previous=_bool(query, "previous"),
                      timestamps=_bool(query, "timestamps"),
                      tail_lines=_positive(query, "tailLines", 0),
                      limit_bytes=_positive(query, "limitBytes", 1))
    stream = query.get("stream") or "All"
    if stream not in ("All", "Stdout", "Stderr"):
        raise OptionError(f'stream: Unsupported value: "{stream}": supported values: "All", '
                          '"Stderr", "Stdout"')
    opts.stream = "" if stream == "All" else stream.lower()
    since_seconds = _positive(query, "sinceSeconds", 1)
    since_time = query.get("sinceTime") or ""
    if since_seconds is not None and since_time:
        raise OptionError("at most one of sinceTime or sinceSeconds may be specified")
    if since_seconds is not None:
        opts.since_ns = now_ns - since_seconds * 1_000_000_000
    elif since_time:
        opts.since_ns = parse_time(since_time)
    return opts


@dataclass
class LogLine:
    ns: int
    stream: str
    full: bool
    content: bytes


def parse_line(raw: bytes) -> LogLine | None:
    """One line of a CRI log file (without its newline); None if malformed."""
    parts = raw.split(b" ", 3)
    if len(parts) < 3:
        return None
    try:
        ns = parse_time(parts[0].decode())
    except (OptionError, UnicodeDecodeError):
        return None
    return LogLine(ns, parts[1].decode(errors="replace"), parts[2] != b"P",
                   parts[3] if len(parts) > 3 else b"")


class Formatter:
    """Turns log lines into what the reader gets, keeping the state that
    spans lines (a line continued by `P` pieces, the bytes left to send)."""

    def __init__(self, opts: LogOptions) -> None:
        self.opts = opts
        self.remaining = opts.limit_bytes
        self._new_line = True

    @property
    def done(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def format(self, raw: bytes) -> bytes:
        line = parse_line(raw)
        if line is None or self.done:
            return b""
        if self.opts.since_ns is not None and line.ns < self.opts.since_ns:
            return b""
        if self.opts.stream and line.stream != self.opts.stream:
            return b""
        out = line.content + (b"\n" if line.full else b"")
        if self.opts.timestamps and self._new_line:
            out = format_time(line.ns).encode() + b" " + out
        self._new_line = line.full
        if self.remaining is not None:
            out = out[:self.remaining]
            self.remaining -= len(out)
        return out


def tail_offset(fd: int, size: int, lines: int) -> int:
    """Offset in the open file `fd` where its last `lines` lines start."""
    if lines <= 0:
        return size
    found = 0
    pos = size
    while pos > 0:
        start = max(0, pos - READ_SIZE)
        block = os.pread(fd, pos - start, start)
        i = len(block)
        while (j := block.rfind(b"\n", 0, i)) >= 0:
            # The newline ending the file does not start a line.
            if start + j != size - 1:
                found += 1
                if found >= lines:
                    return start + j + 1
            i = j
        pos = start
    return 0


async def raw_lines(path: str, follow: bool, tail: int | None = None, from_end: bool = False,
                    alive: Callable[[], Awaitable[bool]] | None = None) -> AsyncGenerator[list[bytes], None]:
    """Batches of lines (without newlines) of the CRI log at `path`: all of
    them, the last `tail`, or (`from_end`) only those written from now on.
    With `follow`, also later ones until `alive()` says the container ended
    and the file is drained; a rotation in between is followed to the new file."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        pos = size if from_end else tail_offset(fd, size, tail) if tail is not None else 0
        pending = b""
        while True:
            data = os.pread(fd, READ_SIZE, pos)
            if data:
                pos += len(data)
                lines = (pending + data).split(b"\n")
                pending = lines.pop()
                batch = [line for line in lines if line]
                if batch:
                    yield batch
                continue
            if not follow:
                if pending:  # a last line without newline (the runtime writes whole lines)
                    yield [pending]
                return
            if _rotated(path, fd):
                os.close(fd)
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                pos, pending = 0, b""
                continue
            if alive is not None and not await alive():
                if os.fstat(fd).st_size > pos:  # written just before the end
                    continue
                return
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
    finally:
        os.close(fd)


async def read_log(path: str, opts: LogOptions,
                   alive: Callable[[], Awaitable[bool]] | None = None) -> AsyncIterator[bytes]:
    """The log at `path` as `kubectl logs` shows it, in chunks."""
    fmt = Formatter(opts)
    async with contextlib.aclosing(raw_lines(path, opts.follow, opts.tail_lines, alive=alive)) as it:
        async for batch in it:
            out = b"".join(fmt.format(line) for line in batch)
            if out:
                yield out
            if fmt.done:
                return


def _rotated(path: str, fd: int) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    cur = os.fstat(fd)
    return (st.st_ino, st.st_dev) != (cur.st_ino, cur.st_dev)
