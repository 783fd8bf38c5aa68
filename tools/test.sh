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
"$REPO_ROOT/tools/minio/minio.sh" run -- pnpm turbo run test --concurrency=1 --output-logs=full
# The viewer (dreamdb ui, issue 17) end to end in headless Chromium (Debian's: apt-get install chromium, or CHROMIUM_PATH).
pnpm --filter @dreamdb/cli test:browser
# A bounded slice of the torture suite (issue 11; `pnpm torture` runs it in full), in a MinIO of its own.
pnpm torture --slice
# The CI audit example (examples/audit.mjs) with the built CLI, on a store the quickstart fills:
# every prod- tag reads back whole (inspect --verify --json) and equals the dataset (diff --exit-code).
audit_store="$(mktemp -d "${TMPDIR:-/tmp}/dreamdb-audit.XXXXXX")"
DREAMDB_BACKEND="$audit_store" pnpm quickstart >/dev/null
DREAMDB_CLI="node $REPO_ROOT/apps/cli/dist/index.js" node examples/audit.mjs --backend "$audit_store" --prefix prod- --against mnist
rm -rf "$audit_store"
