#!/usr/bin/env bash
# The Python suites' virtual environment (tests/requirements.txt: pytest, torch, pyarrow),
# built once into the cache folder outside the repository; prints the path of its python.
# The README's test command builds it before the TypeScript suites too, so that their
# pyarrow checks (the CLI's Parquet export read back by pyarrow) run on a fresh machine.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${DREAMDB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dreamdb}"
REQUIREMENTS="$HERE/tests/requirements.txt"
VENV="$CACHE/pytest-venv"
STAMP="$VENV/.requirements-$(sha256sum "$REQUIREMENTS" | cut -c1-16)"
PYTHON="${DREAMDB_PYTHON:-python3}"

if [ ! -f "$STAMP" ]; then
  echo "dreamdb: installing the Python test requirements into $VENV (once)" >&2
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >&2
  touch "$STAMP"
fi
echo "$VENV/bin/python"
