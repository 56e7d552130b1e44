"""The one place that talks to the kernel through ctypes (DESIGN.md §4).

`Syscalls` is the real thing; `FakeSyscalls` records calls with the same
methods, so the runtime's logic is unit-tested without root.
"""

from __future__ import annotations

from .fake import ExecCalled, FakeSyscalls
from .syscalls import Syscalls

# What the container code accepts: the kernel, or the recording fake.
SyscallsLike = Syscalls | FakeSyscalls

__all__ = ["ExecCalled", "FakeSyscalls", "Syscalls", "SyscallsLike"]
