"""Events: what components tell users about objects (`kubectl describe`).

Like client-go's recorder: an event about the same object with the same
reason and message is not written again but counted (`count`,
`lastTimestamp`), so a crash-looping pod yields one Event, not thousands.
Writing an event never fails the caller: events are best effort.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from timonel.api import meta
from timonel.api.client.rest import Client
from timonel.api.errors import ApiError

log = logging.getLogger(__name__)

EVENTS = ("v1", "Event")
NORMAL, WARNING = "Normal", "Warning"


def object_reference(obj: dict[str, Any]) -> dict[str, Any]:
    md = obj.get("metadata") or {}
    ref = {"kind": obj.get("kind", ""), "apiVersion": obj.get("apiVersion", ""),
           "name": md.get("name", ""), "uid": md.get("uid", ""),
           "resourceVersion": md.get("resourceVersion", "")}
    if md.get("namespace"):
        ref["namespace"] = md["namespace"]
    return ref


class EventRecorder:
    def __init__(self, client: Client, component: str, host: str = "",
                 cache_seconds: float = 600.0) -> None:
        self.client = client
        self.component = component
        self.host = host
        self.cache_seconds = cache_seconds
        # (uid, reason, message) -> (event namespace, event name, count, written at)
        self._seen: dict[tuple[str, str, str], tuple[str, str, int, float]] = {}

    async def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        try:
            await self._record(obj, type_, reason, message)
        except (ApiError, ConnectionError) as e:
            log.info("event not recorded reason=%s object=%s err=%s", reason,
                     meta.name_of(obj), e)

    async def _record(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        ref = object_reference(obj)
        namespace = ref.get("namespace") or "default"
        key = (ref["uid"] or ref["name"], reason, message)
        now_ts, mono = meta.now(), time.monotonic()
        seen = self._seen.get(key)
        if seen is not None and mono - seen[3] < self.cache_seconds:
            ns, name, count, _ = seen
            try:
                await self.client.patch(EVENTS, ns, name, {"count": count + 1, "lastTimestamp": now_ts},
                                        patch_type="merge")
                self._seen[key] = (ns, name, count + 1, mono)
                return
            except ApiError as e:
                if e.code != 404:
                    raise
        ev = {
            "apiVersion": "v1", "kind": "Event",
            # client-go's naming: the object's name and a nanosecond stamp.
            "metadata": {"name": f"{ref['name']}.{time.time_ns():x}", "namespace": namespace},
            "involvedObject": ref, "reason": reason, "message": message[:1024], "type": type_,
            "source": {"component": self.component, **({"host": self.host} if self.host else {})},
            "firstTimestamp": now_ts, "lastTimestamp": now_ts, "count": 1,
            "reportingComponent": self.component, "reportingInstance": self.host or self.component,
        }
        created = await self.client.create(EVENTS, ev, namespace=namespace)
        self._seen[key] = (namespace, created["metadata"]["name"], 1, mono)
        if len(self._seen) > 4096:
            cutoff = mono - self.cache_seconds
            self._seen = {k: v for k, v in self._seen.items() if v[3] >= cutoff}
