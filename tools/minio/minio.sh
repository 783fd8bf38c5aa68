#!/usr/bin/env bash
# A real MinIO for tests and benchmarks, built from source and cached outside the repository.
#
#   tools/minio/minio.sh ensure          build MinIO into $DREAMDB_CACHE/bin if it is not there yet
#   tools/minio/minio.sh run -- CMD...   start MinIO on 127.0.0.1 with a temporary data folder, wait
#                                        for /minio/health/live, run CMD with DREAMDB_TEST_S3_* and
#                                        AWS_* set, then stop MinIO and delete its data
#
# With CI=true a MinIO that cannot be built or started fails the run; elsewhere CMD still
# runs and the S3 suites report themselves as skipped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env.sh"

MINIO_BIN="$DREAMDB_CACHE/bin/minio"
# The MinIO project's own install method for its community edition (source only since 2025-10).
MINIO_MODULE="github.com/minio/minio@latest"

ensure_minio() {
  if [ -x "$MINIO_BIN" ]; then return 0; fi
  if ! command -v go >/dev/null 2>&1; then
    echo "dreamdb: cannot build MinIO: the 'go' command is not on PATH" >&2
    return 1
  fi
  echo "dreamdb: building MinIO with 'go install $MINIO_MODULE' (once; cached in $DREAMDB_CACHE/bin)" >&2
  mkdir -p "$DREAMDB_CACHE/bin"
  local log="$DREAMDB_CACHE/minio-build.log"
  if ! GOBIN="$DREAMDB_CACHE/bin" GOFLAGS="-buildvcs=false" go install "$MINIO_MODULE" >"$log" 2>&1; then
    echo "dreamdb: building MinIO failed; last lines of $log:" >&2
    tail -n 20 "$log" >&2
    return 1
  fi
}

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

fail_or_continue() {
  if [ "${CI:-}" = "true" ]; then
    echo "dreamdb: $1; CI=true, so the run fails rather than skipping the S3 suite" >&2
    exit 1
  fi
  echo "dreamdb: $1; the S3 suites will report themselves as SKIPPED" >&2
}

run_with_minio() {
  if ! ensure_minio; then
    fail_or_continue "MinIO is not available"
    exec "$@"
  fi
  local port
  port="$(free_port)"
  MINIO_DATA="$(mktemp -d "${TMPDIR:-/tmp}/dreamdb-minio.XXXXXX")"
  MINIO_LOG="$MINIO_DATA.log"
  export MINIO_ROOT_USER="dreamdb-test"
  MINIO_ROOT_PASSWORD="$(node -e 'console.log(require("crypto").randomBytes(12).toString("hex"))')"
  export MINIO_ROOT_PASSWORD
  MINIO_BROWSER=off MINIO_UPDATE=off "$MINIO_BIN" server "$MINIO_DATA" --address "127.0.0.1:$port" --quiet >"$MINIO_LOG" 2>&1 &
  MINIO_PID=$!
  trap 'kill "$MINIO_PID" 2>/dev/null; wait "$MINIO_PID" 2>/dev/null; rm -rf "$MINIO_DATA" "$MINIO_LOG"' EXIT
  local url="http://127.0.0.1:$port"
  for _ in $(seq 1 300); do
    if curl -sf -o /dev/null "$url/minio/health/live"; then break; fi
    if ! kill -0 "$MINIO_PID" 2>/dev/null; then break; fi
    sleep 0.1
  done
  if ! curl -sf -o /dev/null "$url/minio/health/live"; then
    echo "dreamdb: MinIO did not become live; its log:" >&2
    cat "$MINIO_LOG" >&2 || true
    fail_or_continue "MinIO could not be started"
    "$@"
    return $?
  fi
  echo "dreamdb: MinIO $("$MINIO_BIN" --version 2>/dev/null | head -n 1 | awk '{print $3}') is live at $url" >&2
  export DREAMDB_TEST_S3_ENDPOINT="$url"
  export AWS_ACCESS_KEY_ID="$MINIO_ROOT_USER" AWS_SECRET_ACCESS_KEY="$MINIO_ROOT_PASSWORD" AWS_REGION="us-east-1"
  unset MINIO_ROOT_USER MINIO_ROOT_PASSWORD
  "$@"
}

case "${1:-}" in
  ensure) ensure_minio ;;
  run)
    shift
    [ "${1:-}" = "--" ] && shift
    [ $# -gt 0 ] || { echo "usage: $0 run -- COMMAND..." >&2; exit 2; }
    run_with_minio "$@"
    ;;
  *) echo "usage: $0 ensure | run -- COMMAND..." >&2; exit 2 ;;
esac
