#!/usr/bin/env bash
# The README's second command (and what .ci/run calls): install, lint, typecheck, build,
# then run every test with a real MinIO server that this script builds and starts.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$REPO_ROOT"
pnpm install --frozen-lockfile --reporter=silent
pnpm lint
pnpm turbo run typecheck build --output-logs=errors-only
# The published packages as a user gets them: pnpm pack, then npm install into empty projects
# next to two apache-arrow minors, a nodenext type-check, a cas-only, a dataset and a CLI run.
tools/pack-check.sh
# Two packages' tests at a time: each runs its files one after another in one vitest worker,
# and much of a suite waits (on MinIO, deadlines, child processes), so two keep both cores
# busy (issue 15: 557 s with 2 against 943 s with 1, both at load 13-15 from other work).
# The longest suites start first: turbo hands out its slots in the order tasks become ready,
# so the other packages' tests wait for //#tests-after-builds (turbo.json), which runs once
# the CLI is built, when dataset's tests (ready since its layers were built) and the CLI's
# hold the slots or queue ahead of them; otherwise cas, vector and manifest took the slots
# first and dataset and cli ran last, side by side, for the final minute.
# The TypeScript suites run first, on their own, and the Python suites (wheel build, pytest on
# a folder and MinIO, torchrun, the seed in a fresh venv) after them in the same MinIO: side by
# side, the two shared the 2 cores and each took longer; one after the other the TypeScript
# tasks finish in under 2 minutes (issue 15) and the whole step takes about as long.
# The Python suites' venv (pyarrow, torch) first: the TypeScript suites read their Parquet
# exports back with its pyarrow, so that check runs on a fresh machine too.
DREAMDB_TEST_PYTHON="$(bash "$REPO_ROOT/packages/python/scripts/venv.sh")"
export DREAMDB_TEST_PYTHON
"$REPO_ROOT/tools/minio/minio.sh" run -- bash -c "
  pnpm turbo run test --concurrency=2 --output-logs=full --filter='!@dreamdb/python' &&
  pnpm turbo run test --output-logs=full --filter=@dreamdb/python"
# The viewer (dreamdb ui, issue 17) end to end in headless Chromium (Debian's: apt-get install chromium, or CHROMIUM_PATH).
# This machine type lists Debian's Chromium; where it is missing and apt-get may run, it is installed
# from Debian (the one registry for it here), so a fresh machine needs nothing by hand.
if [ -z "${CHROMIUM_PATH:-}" ] && ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "dreamdb: installing Debian's chromium for the viewer's browser tests" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; } \
    || echo "dreamdb: could not install chromium; the browser tests report why" >&2
fi
pnpm --filter @dreamdb/cli test:browser
# A bounded slice of the torture suite (issue 11; `pnpm torture` runs it in full), in a MinIO of its own.
pnpm torture --slice
# The CI audit example (examples/audit.mjs) with the built CLI, on a store the quickstart fills:
# every prod- tag reads back whole (inspect --verify --json) and equals the dataset (diff --exit-code).
audit_store="$(mktemp -d "${TMPDIR:-/tmp}/dreamdb-audit.XXXXXX")"
DREAMDB_BACKEND="$audit_store" pnpm quickstart >/dev/null
DREAMDB_CLI="node $REPO_ROOT/apps/cli/dist/index.js" node examples/audit.mjs --backend "$audit_store" --prefix prod- --against mnist
rm -rf "$audit_store"
