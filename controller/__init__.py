"""The controller manager and its control loops (DESIGN.md §3 "Controllers").

- `manager.py`: `run_controller_manager` (shared informers, leader election);
  `registry.py`: the controllers by name; `context.py`: what each one gets;
  `loop.py`: wait for the caches, then work the queue.
- Shared rules: `pods.py` (pods from templates, readiness, deletion order),
  `ownership.py` (adoption and release), `expectations.py` (no double
  creates while the watch lags), `history.py` (ControllerRevisions).
- One module or package per controller: `replicaset.py`, `deployment/`,
  `garbage_collector.py`, `namespace.py`, `serviceaccount.py`,
  `node_lifecycle/`, `job/`, `daemonset/`, `statefulset/`.
"""
