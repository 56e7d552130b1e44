"""What every request handler of one API server shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from timonel.api.admission import AdmissionRequest, Chain
from timonel.api.server.objects import Objects
from timonel.api.storage.etcd import Store
from timonel.api.storage.watch_cache import WatchCaches
from timonel.api.validation import validate as validate_object


async def validation_step(req: AdmissionRequest, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Schema and semantic validation, between mutating and validating admission."""
    if req.subresource not in ("", "status", "scale"):
        return
    warnings = validate_object(obj, req.rtype, old=old, field_validation=req.field_validation)
    req.warnings.extend(warnings)


@dataclass
class Server:
    store: Store
    caches: WatchCaches
    objects: Objects
    admission: Chain
    metrics: Any = None
    authenticator: Any = None
    # Bookmarks are sent this often on watches that asked for them.
    bookmark_interval: float = 60.0
    extra: dict[str, Any] = field(default_factory=dict)

    async def validate(self, req: AdmissionRequest, obj: dict[str, Any],
                       old: dict[str, Any] | None) -> None:
        await validation_step(req, obj, old)
