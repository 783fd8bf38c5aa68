#!/usr/bin/env bash
# The README's first command: install dependencies, build, and run the quickstart on
# the embedded default backend (a folder, ./.dreamdb unless DREAMDB_BACKEND says otherwise).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$REPO_ROOT"
pnpm install --frozen-lockfile --reporter=silent
pnpm turbo run build --output-logs=errors-only
pnpm quickstart "$@"
