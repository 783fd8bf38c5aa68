# Sourced by the tools/*.sh entry points, and usable in an interactive shell
# (`source tools/env.sh`): puts a pinned pnpm on PATH without touching the machine (it lives
# in a cache folder outside the repository) and sets shared paths. It leaves the caller's
# shell options alone: the scripts that want `set -euo pipefail` set it themselves, and a
# terminal that sources this must not close at its next failing command.
DREAMDB_CACHE="${DREAMDB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dreamdb}"
export DREAMDB_CACHE
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT

PNPM_VERSION="$(node -p "require('$REPO_ROOT/package.json').packageManager.split('@')[1]")"
if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm -v 2>/dev/null)" != "$PNPM_VERSION" ]; then
  pnpm_dir="$DREAMDB_CACHE/pnpm-$PNPM_VERSION"
  if [ ! -x "$pnpm_dir/node_modules/.bin/pnpm" ]; then
    echo "dreamdb: installing pnpm $PNPM_VERSION into $pnpm_dir" >&2
    # Without set -e here, a failed install must still stop a script that sources this.
    mkdir -p "$pnpm_dir" &&
      npm install --prefix "$pnpm_dir" --no-audit --no-fund --loglevel=error "pnpm@$PNPM_VERSION" >&2 ||
      { echo "dreamdb: installing pnpm $PNPM_VERSION failed" >&2; return 1 2>/dev/null || exit 1; }
  fi
  export PATH="$pnpm_dir/node_modules/.bin:$PATH"
fi

# The AWS SDK is pinned to a release that supports Node.js 20 (design/0001); its notice
# that later releases will need Node.js 22 is not actionable for a pinned version.
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED="${AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED:-true}"
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1
