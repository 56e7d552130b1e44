"""The in-tree plugins, by name, and the default profile's plugin set.

Each plugin module has `new(args) -> Plugin`; `REGISTRY` maps the plugin
name used in configuration files to it. `DEFAULT_FILTERS` is the filter
order (cheap, decisive checks first) and `DEFAULT_SCORE_WEIGHTS` upstream's
default weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from timonel.scheduler.framework import Plugin
from timonel.scheduler.plugins import (
    imagelocality,
    interpodaffinity,
    nodeaffinity,
    nodename,
    nodeports,
    nodeready,
    noderesources,
    nodeunschedulable,
    podtopologyspread,
    tainttoleration,
)

REGISTRY: dict[str, Callable[[dict[str, Any] | None], Plugin]] = {
    nodename.NAME: nodename.new,
    nodeunschedulable.NAME: nodeunschedulable.new,
    nodeready.NAME: nodeready.new,
    tainttoleration.NAME: tainttoleration.new,
    nodeaffinity.NAME: nodeaffinity.new,
    nodeports.NAME: nodeports.new,
    noderesources.FIT: noderesources.fit,
    noderesources.BALANCED: noderesources.balanced,
    interpodaffinity.NAME: interpodaffinity.new,
    podtopologyspread.NAME: podtopologyspread.new,
    imagelocality.NAME: imagelocality.new,
}

DEFAULT_FILTERS = [
    nodeunschedulable.NAME, nodename.NAME, nodeready.NAME, tainttoleration.NAME,
    nodeaffinity.NAME, nodeports.NAME, noderesources.FIT, podtopologyspread.NAME,
    interpodaffinity.NAME,
]

DEFAULT_SCORE_WEIGHTS = {
    tainttoleration.NAME: 3,
    nodeaffinity.NAME: 2,
    podtopologyspread.NAME: 2,
    interpodaffinity.NAME: 2,
    noderesources.FIT: 1,
    noderesources.BALANCED: 1,
    imagelocality.NAME: 1,
}
