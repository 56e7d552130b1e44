"""Containers: the spec, the launcher (fork server, shim, init) and their manager.

The runtime service starts the fork server first, before any thread:

    sys = Syscalls()
    cgroups = detect()                                  # cgroup v1 or v2
    forkserver = start_fork_server(sys, cgroups)
    state = mount_state(sys, root)                      # ..statefs: a tmpfs at root/run
    containers = ContainerManager(root, cgroups, forkserver, sys, state_root=state)
    sandboxes = SandboxManager(state, cgroups, sys)     # ..sandbox

then, per CRI call:

    RunPodSandbox        sandboxes.create(SandboxSpec(id, hostname, netns_path, resources))
    CreateContainer      containers.create(sandboxes.container_spec(pod_id, ContainerSpec(...)))
    StartContainer       containers.start(id)
    StopContainer        containers.stop(id, timeout)     # SIGTERM, SIGKILL after timeout
    RemoveContainer      containers.remove(id)
    ContainerStatus      containers.status(id), containers.spec(id)
    ListContainers       containers.list()
    ExecSync             containers.exec_sync(id, argv, timeout)
    Exec (streaming)     containers.exec(id, argv, tty=, stdin=, tty_size=) -> ExecProcess
    ContainerStats       containers.stats(id)
    UpdateContainerResources  containers.update_resources(id, Resources(...))
    ReopenContainerLog   containers.reopen_log(id)
    Stop/RemovePodSandbox     sandboxes.stop(id), sandboxes.remove(id) (after its containers)

Everything a container needs is in `<root>/containers/<id>/`; a new manager
over the same root finds running containers again.
"""

from .exec import ExecProcess, ExecResult
from .manager import ContainerError, ContainerManager, ContainerStats, NotFoundError
from .ops import start_fork_server
from .spec import ContainerSpec, Mount, Rlimit, Seccomp, SpecError, User
from .state import ContainerStatus

__all__ = [
    "ContainerError", "ContainerManager", "ContainerSpec", "ContainerStats", "ContainerStatus",
    "ExecProcess", "ExecResult", "Mount", "NotFoundError", "Rlimit", "Seccomp", "SpecError", "User",
    "start_fork_server",
]
