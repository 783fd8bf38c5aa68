#!/usr/bin/env bash
# A Python virtual environment for the benchmarks' peers (pyarrow, pylance, torch, faiss,
# lancedb), built once into the cache folder outside the repository. Prints the path of its
# python. DREAMDB_PYTHON_VENV puts it elsewhere (an existing venv gets what it lacks).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
VENV="${DREAMDB_PYTHON_VENV:-$DREAMDB_CACHE/venv}"
REQUIREMENTS="$REPO_ROOT/bench/peers/requirements.txt"
STAMP="$VENV/.requirements-$(sha256sum "$REQUIREMENTS" | cut -c1-16)"
if [ ! -f "$STAMP" ]; then
  echo "dreamdb: installing the benchmark peers from $REQUIREMENTS into $VENV" >&2
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >&2
  touch "$STAMP"
fi
echo "$VENV/bin/python"
