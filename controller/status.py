"""Writing a controller's status: through the status subresource, re-reading
and retrying when someone else wrote the object in between."""

from __future__ import annotations

from typing import Any

from timonel.api import meta
from timonel.api.client import Client
from timonel.api.errors import ApiError

Obj = dict[str, Any]


async def write_status(client: Client, rtype: tuple[str, str], obj: Obj, status: Obj,
                       attempts: int = 3) -> bool:
    """Put `status` on `obj`; False when the object is gone. The status was
    computed from what the controller saw, so a conflict only needs the newer
    resourceVersion, not a new computation."""
    body = {**obj, "status": status}
    for _ in range(attempts):
        try:
            await client.update_status(rtype, body)
            return True
        except ApiError as e:
            if e.code == 404:
                return False
            if e.code != 409:
                raise
        live = await client.get(rtype, meta.namespace_of(obj), meta.name_of(obj))
        body = {**live, "status": status}
    raise ApiError(409, f"could not write the status of {rtype[1]} "
                   f"{meta.namespace_of(obj)}/{meta.name_of(obj)}: kept conflicting", "Conflict")
