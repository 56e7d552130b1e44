#!/usr/bin/env bash
# Installs timonel and starts a local cluster in the foreground (Ctrl-C stops it).
# Today the cluster is the API server with its embedded etcd; `timonel up`
# (runtime + node agent + control plane) replaces this when it lands.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install.sh
exec .venv/bin/timonel server "$@"
