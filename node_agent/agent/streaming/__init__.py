"""The agent's HTTPS endpoint for the API server: container logs, exec and
attach, like the kubelet's `/containerLogs`, `/exec` and `/attach`."""
