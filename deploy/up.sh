#!/usr/bin/env bash
# Installs timonel and starts a one-node cluster in the foreground (Ctrl-C stops it):
# `timonel up` runs the API server (embedded etcd, scheduler, controllers), the
# container runtime and a node agent for this machine. The offline busybox test
# image goes into DATA_DIR/images first, so manifests/examples/ run without any
# registry. DATA_DIR: $TIMONEL_DATA_DIR or /var/lib/timonel. Extra arguments go to
# `timonel up` (e.g. --port 7443).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR="${TIMONEL_DATA_DIR:-/var/lib/timonel}"
bash deploy/install.sh
mkdir -p "$DATA_DIR/images"
if [ ! -e "$DATA_DIR/images/busybox.tar" ]; then
  tmp="$(mktemp -d)"
  .venv/bin/python deploy/images/busybox.py --out "$tmp" >/dev/null
  cp "$tmp/busybox-docker.tar" "$DATA_DIR/images/busybox.tar"
  rm -rf "$tmp"
fi
exec .venv/bin/timonel up --data-dir "$DATA_DIR" "$@"
