"""The node agent (timonel's kubelet): registers its Node, heartbeats a Lease,
and turns the pods bound to the node into sandboxes and containers through the
runtime's gRPC API (DESIGN.md §3 "Node agent").

- `node`: the Node object from the machine, its conditions, the heartbeat Lease
- `envvars`: a container's environment (`env`, `envFrom`, `valueFrom`) and `$(VAR)` expansion
- `volumes`: emptyDir, configMap and secret volumes as directories under the data dir
- `containers`: pod spec -> runtime sandbox and container configs (resources, security)
- `status`: runtime state -> pod status in the upstream schema
- `pods`: one pod's sync (start, restart with back-off, terminate)
- `probes`: liveness/readiness/startup probe workers and the verdicts the status reads
- `hooks`: postStart and preStop lifecycle hooks
- `handlers`: the actions both run (exec, httpGet, tcpSocket from inside the pod's network namespace)
- `agent`: the loop that ties them together (`Agent`, `AgentConfig`)
"""
