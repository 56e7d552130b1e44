"""How many feasible nodes to look for before scoring, and where to start.

Upstream's rule: all nodes in clusters under 100 nodes; otherwise
`percentageOfNodesToScore` percent (adaptive default
max(5, 50 - nodes/125)), but never fewer than 100. Each cycle starts where
the previous one stopped, so every node gets its turn.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_PERCENTAGE = 5
DEFAULT_PERCENTAGE_BASE = 50


def num_feasible_nodes_to_find(percentage: int, num_all_nodes: int) -> int:
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND:
        return num_all_nodes
    pct = percentage
    if pct <= 0:
        pct = max(MIN_FEASIBLE_PERCENTAGE, DEFAULT_PERCENTAGE_BASE - num_all_nodes // 125)
    if pct >= 100:
        return num_all_nodes
    return max(MIN_FEASIBLE_NODES_TO_FIND, num_all_nodes * pct // 100)


@dataclass
class RoundRobin:
    """The index the next cycle starts filtering at."""

    next_start: int = 0

    def advance(self, processed: int, num_all_nodes: int) -> None:
        if num_all_nodes:
            self.next_start = (self.next_start + processed) % num_all_nodes
