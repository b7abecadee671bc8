#!/usr/bin/env bash
# One entry point that does all setup on a fresh machine, then runs what you ask for.
#   ./dev.sh demo            quick demo (NQM scaling table + figures, quick study)
#   ./dev.sh test            the full test suite (what CI runs)
#   ./dev.sh bench           the ratio benchmarks in benchmarks/
#   ./dev.sh batchlab ARGS   any batchlab command inside the project's environment
# The virtual environment lives in .venv and is reused; it is reinstalled only when
# pyproject.toml or requirements.lock change.
set -euo pipefail
cd "$(dirname "$0")"
PY="${BATCHLAB_PYTHON:-python3.11}"
VENV=.venv

ensure_debian_data() {
  # Offline real data sets used by the workloads and their tests (never downloaded at run time).
  local missing=()
  for pkg in dataset-fashion-mnist bible-kjv; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "warning: Debian packages missing (${missing[*]}); install them with: apt-get install -y ${missing[*]}" >&2
      return 0
    fi
  fi
  echo "installing Debian data packages: ${missing[*]}" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
}

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  local stamp="$VENV/.batchlab-stamp" want
  want=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "installing batchlab and its pinned dependencies into $VENV ..." >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -c requirements.lock -e ".[test]" >&2
    echo "$want" > "$stamp"
  fi
}

cmd="${1:-demo}"; shift || true
ensure_debian_data
ensure_venv
export MPLBACKEND=Agg
case "$cmd" in
  demo)  exec "$VENV/bin/batchlab" demo "$@" ;;
  test)  exec "$VENV/bin/python" -m pytest -q "$@" ;;
  bench) exec "$VENV/bin/python" benchmarks/run_all.py "$@" ;;
  batchlab) exec "$VENV/bin/batchlab" "$@" ;;
  *) echo "usage: ./dev.sh {demo|test|bench|batchlab ARGS}" >&2; exit 2 ;;
esac
