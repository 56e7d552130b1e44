"""The admission chain: mutating plugins, then validation, then validating plugins.

A plugin is a plain async function `(request, obj, old) -> None` that may
change `obj` (mutating) or raise ApiError (refusing). The security policy
plugs in here as two more functions; `timonel audit` reuses its checks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from timonel.api.resources import ResourceType

Obj = dict[str, Any]


@dataclass
class AdmissionRequest:
    operation: str  # CREATE, UPDATE, DELETE, CONNECT
    rtype: ResourceType
    namespace: str
    name: str
    subresource: str = ""
    user: Any = None  # auth.UserInfo of the caller, when known
    dry_run: bool = False
    field_validation: str = "Strict"
    warnings: list[str] = field(default_factory=list)


Plugin = Callable[[AdmissionRequest, Obj, Obj | None], Awaitable[None]]


@dataclass
class Chain:
    mutating: list[Plugin] = field(default_factory=list)
    validating: list[Plugin] = field(default_factory=list)

    async def admit(self, req: AdmissionRequest, obj: Obj, old: Obj | None,
                    validate: Plugin | None = None) -> None:
        for plugin in self.mutating:
            await plugin(req, obj, old)
        if validate is not None:
            await validate(req, obj, old)
        for plugin in self.validating:
            await plugin(req, obj, old)
