#!/usr/bin/env bash
# mypy cannot map the `timonel.api` package onto the `api/` folder by itself
# (pyproject's package-dir), so check a tree of symlinks shaped like the
# installed package.
set -euo pipefail
cd "$(dirname "$0")/.."
root=.typecheck
rm -rf "$root" && mkdir -p "$root/timonel"
for d in api controller scheduler node_agent cli; do ln -s "../../$d" "$root/timonel/$d"; done
cd "$root"
exec ../.venv/bin/mypy --config-file ../pyproject.toml -p timonel
