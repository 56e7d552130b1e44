"""The async client every timonel component uses to talk to the API server.

- `rest`: `Client` (REST verbs, watch), `ApiConnectionError`
- `watcher`: `watch_forever` (resumes, bookmarks, 410 relist)
- `informer`: `Informer`, `InformerFactory` (list + watch into a cache, handlers, indexes)
- `workqueue`: `WorkQueue` (dedupe, one worker per key, rate-limited retries), `run_workers`
- `leader`: `LeaderElector`, `run_with_leader_election` (coordination.k8s.io Lease)
- `backoff`: `Backoff`, `retry_on_conflict`
"""

from timonel.api.client.backoff import Backoff, retry_on_conflict
from timonel.api.client.informer import Informer, InformerFactory
from timonel.api.client.leader import LeaderElector, run_with_leader_election
from timonel.api.client.rest import ApiConnectionError, Client
from timonel.api.client.watcher import watch_forever
from timonel.api.client.workqueue import WorkQueue, run_workers

__all__ = [
    "ApiConnectionError",
    "Backoff",
    "Client",
    "Informer",
    "InformerFactory",
    "LeaderElector",
    "WorkQueue",
    "retry_on_conflict",
    "run_with_leader_election",
    "run_workers",
    "watch_forever",
]
