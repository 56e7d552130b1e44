#!/usr/bin/env bash
# Static checks: ruff, the layer contracts (import-linter) and types (mypy).
# mypy and import-linter cannot map the `timonel.api` package onto the `api/`
# folder by themselves (pyproject's package-dir), so both look at a tree of
# symlinks shaped like the installed package.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$PWD/.venv/bin"
echo "== lint (ruff) =="
"$venv/ruff" check .
root=.typecheck
rm -rf "$root" && mkdir -p "$root/timonel"
for d in api controller scheduler node_agent cli; do ln -s "../../$d" "$root/timonel/$d"; done
cd "$root"
echo "== layers (import-linter) =="
PYTHONPATH="$PWD" "$venv/lint-imports" --config ../pyproject.toml
echo "== types (mypy) =="
"$venv/mypy" --config-file ../pyproject.toml -p timonel
