"""ImageLocality: prefer nodes that already hold the pod's images, weighted
by image size and by how widely the image is spread (so one node holding a
popular image does not attract every pod)."""

from __future__ import annotations

from typing import Any

from timonel.scheduler.framework import MAX_NODE_SCORE, SKIP, CycleState, Plugin, Status
from timonel.scheduler.nodeinfo import NodeInfo, Snapshot, normalized_image
from timonel.scheduler.podinfo import PodInfo

NAME = "ImageLocality"
MB = 1024 * 1024
MIN_THRESHOLD = 23 * MB
MAX_CONTAINER_THRESHOLD = 1000 * MB


def pre_score(state: CycleState, pod: PodInfo, snap: Snapshot,
              nodes: list[NodeInfo]) -> Status | None:
    images = [normalized_image(i) for i in pod.images]
    spread = {i: snap.image_nodes.get(i, 0) / max(1, len(snap)) for i in set(images)}
    if not any(spread.values()):
        return SKIP
    state[NAME] = (images, spread)
    return None


def score(state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
    images, spread = state[NAME]
    total = 0.0
    for img in images:
        size = node.images.get(img)
        if size is not None:
            total += size * spread[img]
    max_threshold = MAX_CONTAINER_THRESHOLD * max(1, len(images))
    total = min(max(total, MIN_THRESHOLD), max_threshold)
    return int(MAX_NODE_SCORE * (total - MIN_THRESHOLD) / (max_threshold - MIN_THRESHOLD))


def new(args: dict[str, Any] | None = None) -> Plugin:
    return Plugin(NAME, pre_score=pre_score, score=score, events=frozenset())
