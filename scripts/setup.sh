#!/usr/bin/env bash
# Idempotent set-up, quick when already satisfied.
#   scripts/setup.sh                 python virtualenv with the pinned requirements (+ dev tools)
#   scripts/setup.sh --apt PKG...    also the named Debian packages (installed only if missing)
# The virtualenv lives outside the clone (VENV, default ~/.cache/cgan-lab/venv) so fresh
# clones reuse it; a hash of the requirement files decides whether pip needs to run.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-$HOME/.cache/cgan-lab/venv}

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating virtualenv $VENV"
  python3 -m venv "$VENV"
fi
want=$(cat requirements.txt requirements-dev.txt requirements-nodeps.txt | sha256sum | cut -c1-16)
stamp="$VENV/.cgan-lab-requirements"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "setup: installing requirements into $VENV (first time: ~4 GB for torch, a few minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade "pip<26" wheel
  "$VENV/bin/python" -m pip install -q -r requirements-dev.txt
  "$VENV/bin/python" -m pip install -q --no-deps -r requirements-nodeps.txt
  echo "$want" > "$stamp"
fi

if [ "${1:-}" = "--apt" ]; then
  shift
  missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi
