"""Pseudo-terminals opened inside a container (for a tty container's init and for exec).

Imported by init before pivot_root: it must stay free of lazy imports.
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios

_TIOCGPTN, _TIOCSPTLCK = 0x80045430, 0x40045431


def open_container_pty(uid: int, size: tuple[int, int] | None) -> tuple[int, int]:
    """A pty from the container's own devpts (we are in its mount namespace): (master, slave).

    So the process' tty has a name inside the container, as with runc's console.
    """
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, _TIOCGPTN, b"\0" * 4))[0]
    slave = os.open(f"/dev/pts/{number}", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    os.fchown(slave, uid, -1)
    if size:
        set_winsize(master, *size)
    return master, slave


def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def make_controlling(fd: int) -> None:
    """Make the tty on `fd` our controlling terminal, in a session of our own (job control, ^C)."""
    os.setsid()
    fcntl.ioctl(fd, termios.TIOCSCTTY, 0)
