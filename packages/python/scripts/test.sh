#!/usr/bin/env bash
# The Python suites, run by the README's test command (turbo's `test` task, inside the MinIO
# that tools/minio/minio.sh started, so the S3 cases run): build the wheel, install it into
# a cached venv, run pytest against the installed package, then install the wheel into a
# fresh venv and run the seed tutorial there, on a folder and (when MinIO is up) on S3.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${DREAMDB_PYTHON:-python3}"
VENV="$(dirname "$(dirname "$(bash "$HERE/scripts/venv.sh")")")"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/dreamdb-python.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
"$VENV/bin/pip" wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation -w "$WORK/dist" "$HERE"
WHEEL="$(ls "$WORK"/dist/dreamdb_dataset-*.whl)"
echo "dreamdb: built $(basename "$WHEEL") ($(du -h "$WHEEL" | cut -f1))" >&2
"$VENV/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$WHEEL"

# From the tests folder, so `import dreamdb_dataset` is the installed wheel, not the source.
cd "$HERE/tests"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$HERE/tests" -W ignore::UserWarning "$@"

# A fresh venv with only the wheel (its dependencies from the package registry) and torch.
echo "dreamdb: the seed tutorial in a fresh venv with only the wheel and torch" >&2
"$PYTHON" -m venv "$WORK/fresh"
"$WORK/fresh/bin/pip" install --quiet --disable-pip-version-check "$WHEEL" "torch==2.15.0"
SEED="$HERE/../../examples/seed_tutorial.py"
(cd "$WORK" && "$WORK/fresh/bin/python" "$SEED" --backend "$WORK/seed-store")
if [ -n "${DREAMDB_TEST_S3_ENDPOINT:-}" ]; then
  (cd "$WORK" && "$WORK/fresh/bin/python" "$SEED" --backend "$DREAMDB_TEST_S3_ENDPOINT/dreamdb-seed-$$" --create-bucket)
fi
