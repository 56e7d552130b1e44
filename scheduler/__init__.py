"""The scheduler: queue, node cache, filter and score plugins, preemption,
binding (DESIGN.md §3 "Scheduler").

- `run_scheduler(client, config, leader_elect=, identity=)`: run until cancelled
- `Scheduler`: the process's pieces, for tests and embedding
- `SchedulerConfiguration`, `load_config`, `parse_config`: KubeSchedulerConfiguration files
- `algorithm.schedule`: one decision on a `nodeinfo.Snapshot`, no I/O
"""

from timonel.scheduler.config import (
    ConfigError,
    SchedulerConfiguration,
    load_config,
    parse_config,
)
from timonel.scheduler.scheduler import Scheduler, run_scheduler

__all__ = ["ConfigError", "Scheduler", "SchedulerConfiguration", "load_config", "parse_config",
           "run_scheduler"]
