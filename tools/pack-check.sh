#!/usr/bin/env bash
# Installs DreamDB the way a user will (issue 14), from what `pnpm build` made:
#  1. packs every published package with `pnpm pack`, the tool publishing uses (it rewrites
#     `workspace:` and `catalog:`), and checks the packed manifests (tools/pack-check/manifests.mjs);
#  2. installs the tarballs with plain npm into empty projects outside the repository:
#     the libraries next to apache-arrow 21.2.0 (without the AWS SDK: it must not be installed),
#     and every package, the CLI too, next to apache-arrow 21.1.0 (npm --strict-peer-deps);
#  3. in each, type-checks a TypeScript consumer under moduleResolution nodenext (skipLibCheck
#     off), runs a cas-only script (a folder put/get loads no AWS SDK; an S3 URL without the
#     SDK is a typed error, with it loads it) and a dataset script (create, append, snapshot,
#     iterate on a folder);
#  4. runs `npx dreamdb --help`, `--version` (the packed version) and `refs` on that folder.
# Third-party packages come from the npm registry through a cache outside the repository
# ($DREAMDB_CACHE/npm, or $PACK_CHECK_NPM_CACHE; npm --prefer-offline), so a warm run
# downloads nothing. Usage: tools/pack-check.sh (after `pnpm build`); PACK_CHECK_KEEP=1 keeps
# the work folder.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$REPO_ROOT"

started=$SECONDS
phase() { echo "pack-check: $1 ($((SECONDS - started)) s)"; }
work="$(mktemp -d "${TMPDIR:-/tmp}/dreamdb-pack-check.XXXXXX")"
if [ "${PACK_CHECK_KEEP:-}" = 1 ]; then
  echo "pack-check: work folder $work (kept)"
else
  trap 'rm -rf "$work"' EXIT
fi
npm_cache="${PACK_CHECK_NPM_CACHE:-$DREAMDB_CACHE/npm}"
tsc="$REPO_ROOT/node_modules/typescript/bin/tsc"
types_node="$(node -p "require('$REPO_ROOT/node_modules/@types/node/package.json').version")"

# 1. Pack every workspace package that is not private, in one recursive `pnpm pack`.
mkdir -p "$work/packs" "$work/unpacked"
# name, folder, tarball file name, and whether it has a bin (the CLI), one package a line.
mapfile -t packages < <(pnpm -r ls --depth -1 --json | node -e '
  const { readFileSync } = require("fs")
  for (const { name, path, private: hidden } of JSON.parse(readFileSync(0, "utf8"))) {
    if (hidden || !name) continue
    const pkg = JSON.parse(readFileSync(`${path}/package.json`, "utf8"))
    const file = `${name.replace(/^@/, "").replace("/", "-")}-${pkg.version}.tgz`
    console.log([name, path, file, pkg.bin ? "bin" : "lib"].join("\t"))
  }')
filters=()
for line in "${packages[@]}"; do
  IFS=$'\t' read -r name dir _ _ <<<"$line"
  if [ ! -d "$dir/dist" ]; then
    echo "pack-check: $dir has no dist/: run 'pnpm build' first" >&2
    exit 1
  fi
  filters+=(--filter "$name")
done
pnpm -r "${filters[@]}" pack --pack-destination "$work/packs" >/dev/null
libraries=()
unpacked=()
cli=""
for line in "${packages[@]}"; do
  IFS=$'\t' read -r name _ file kind <<<"$line"
  mkdir -p "$work/unpacked/$name"
  tar -xzf "$work/packs/$file" -C "$work/unpacked/$name" --strip-components=1
  unpacked+=("$work/unpacked/$name")
  if [ "$kind" = bin ]; then cli="$name=$work/packs/$file"; else libraries+=("$name=$work/packs/$file"); fi
done
[ -n "$cli" ] || { echo "pack-check: no package with a bin (the CLI) was packed" >&2; exit 1; }
phase "packed ${#packages[@]} packages"
node tools/pack-check/manifests.mjs "$REPO_ROOT/LICENSE" "${unpacked[@]}"

# 2-4. One empty project per install: <folder> <apache-arrow version> <name=tarball>...
project() {
  local dir="$1" arrow="$2"
  shift 2
  mkdir -p "$dir/src"
  cp tools/pack-check/consumer/tsconfig.json "$dir/"
  cp tools/pack-check/consumer/src/*.ts "$dir/src/"
  node -e '
    const [file, arrow, typesNode, ...packages] = process.argv.slice(1)
    const dependencies = { "apache-arrow": arrow }
    for (const entry of packages) {
      const at = entry.indexOf("=", 1)
      dependencies[entry.slice(0, at)] = `file:${entry.slice(at + 1)}`
    }
    const pkg = { name: "dreamdb-pack-check", private: true, type: "module", dependencies,
      devDependencies: { "@types/node": typesNode } }
    require("fs").writeFileSync(file, JSON.stringify(pkg, null, 2))
  ' "$dir/package.json" "$arrow" "$types_node" "$@"
  # Every import of every package must resolve and load (their declarations are checked too).
  {
    local i=0
    for entry in "$@"; do
      [ "$entry" != "$cli" ] || continue
      echo "import * as m$i from '${entry%%=*}'"
      echo "console.log('  ${entry%%=*}: ' + Object.keys(m$i).length + ' exports')"
      i=$((i + 1))
    done
  } >"$dir/src/surface.ts"
  (
    cd "$dir"
    npm install --cache "$npm_cache" --prefer-offline --no-audit --no-fund --strict-peer-deps \
      --omit=optional --ignore-scripts --loglevel=error
    installed="$(node -p "require('./node_modules/apache-arrow/package.json').version")"
    [ "$installed" = "$arrow" ] || { echo "pack-check: apache-arrow $installed installed, not $arrow" >&2; exit 1; }
    echo "pack-check: installed in $dir ($((SECONDS - started)) s)"
    node "$tsc" -p .
    echo "pack-check: type-checked ($((SECONDS - started)) s)"
    node out/surface.js
  )
}

phase "installing the libraries next to apache-arrow 21.2.0"
libs="$work/libraries"
project "$libs" 21.2.0 "${libraries[@]}"
if [ -e "$libs/node_modules/@aws-sdk" ] || [ -e "$libs/node_modules/@smithy" ]; then
  echo "pack-check: the AWS SDK was installed with the libraries alone" >&2
  exit 1
fi
(cd "$libs" && node out/cas-only.js --no-sdk && node out/dataset.js "$libs/store")

phase "installing every package and the CLI next to apache-arrow 21.1.0"
all="$work/all"
project "$all" 21.1.0 "${libraries[@]}" "$cli"
(
  cd "$all"
  AWS_ACCESS_KEY_ID=pack-check AWS_SECRET_ACCESS_KEY=pack-check AWS_REGION=us-east-1 \
    DREAMDB_TRACE_SDK="$all/sdk-modules.txt" node --import ./out/trace-sdk.js out/cas-only.js --sdk
  node out/dataset.js "$all/store"
  help="$(npx --no -- dreamdb --help)"
  [[ "$help" == "Usage: dreamdb"* ]] || { echo "pack-check: dreamdb --help printed: $help" >&2; exit 1; }
  packed="$(node -p "require('./node_modules/${cli%%=*}/package.json').version")"
  shown="$(npx --no -- dreamdb --version)"
  [ "$shown" = "$packed" ] || { echo "pack-check: dreamdb --version said '$shown', not $packed" >&2; exit 1; }
  refs="$(npx --no -- dreamdb refs --backend "$all/store" --json)"
  [[ "$refs" == *'"pack-check-v1"'* ]] || { echo "pack-check: dreamdb refs printed: $refs" >&2; exit 1; }
  echo "  dreamdb --help, --version ($shown) and refs ok"
)
phase "ok"
