"""Which capabilities a container keeps: Docker's default set plus add, minus drop."""

from __future__ import annotations

from ..linux.constants import CAP_NUMBERS, last_cap
from .spec import SpecError

# Docker's (and containerd's) default set.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)


def normalize(name: str) -> str:
    upper = name.strip().upper()
    return upper if upper == "ALL" or upper.startswith("CAP_") else f"CAP_{upper}"


def _number(name: str, where: str) -> int:
    try:
        return CAP_NUMBERS[name]
    except KeyError:
        raise SpecError(f"{where}: unknown capability {name!r}; use names like NET_ADMIN or "
                        "CAP_NET_ADMIN") from None


def all_mask() -> int:
    return (1 << (last_cap() + 1)) - 1


def effective_set(add: list[str], drop: list[str], privileged: bool) -> int:
    """The capability bitmask the container keeps (bounding = permitted = effective for root)."""
    if privileged:
        return all_mask()
    adds = {normalize(n) for n in add}
    drops = {normalize(n) for n in drop}
    for name in (adds | drops) - {"ALL"}:
        _number(name, "capabilities")
    if "ALL" in drops:  # Kubernetes' idiom: drop ALL, then add back the listed ones
        kept = adds - {"ALL"}
    else:
        kept = set(CAP_NUMBERS) if "ALL" in adds else set(DEFAULT_CAPABILITIES) | adds
        kept -= drops
    mask = 0
    for name in kept:
        mask |= 1 << CAP_NUMBERS[name]
    return mask & all_mask()


def names(mask: int) -> list[str]:
    return [name for name, nr in CAP_NUMBERS.items() if mask >> nr & 1]
