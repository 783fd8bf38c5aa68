#!/usr/bin/env bash
# The README's second command (and what .ci/run calls): install, lint, typecheck, build,
# then run every test with a real MinIO server that this script builds and starts.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$REPO_ROOT"
pnpm install --frozen-lockfile --reporter=silent
pnpm lint
pnpm turbo run typecheck build --output-logs=errors-only
"$REPO_ROOT/tools/minio/minio.sh" run -- pnpm turbo run test --concurrency=1 --output-logs=full
# A bounded slice of the torture suite (issue 11; `pnpm torture` runs it in full), in a MinIO of its own.
pnpm torture --slice
