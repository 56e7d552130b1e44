#!/usr/bin/env bash
# Installs everything (Debian packages as root, the venv) and runs all checks:
# lint, type checks, layer contracts, then every test (unit, integration, e2e).
# Root is needed for the runtime and e2e tests; without it they skip, saying why.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install.sh
export PATH="$PWD/.venv/bin:$PATH"

bash deploy/lint.sh
echo "== tests =="
pytest -q -ra --timeout=600 -p no:cacheprovider "$@" tests
