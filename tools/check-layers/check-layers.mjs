#!/usr/bin/env node
// Fails when a workspace package depends on, or imports, a package above it in the stack
// cas <- manifest <- vector <- arrow <- dataset <- apps/cli. Checked in both package.json
// dependencies and every import/require/export-from specifier under src/ and test/.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
/** Lower index = lower layer. Test-only helpers sit beside the layer they test. */
export const STACK = [
  '@dreamdb/cas',
  '@dreamdb/manifest',
  '@dreamdb/vector',
  '@dreamdb/arrow',
  '@dreamdb/dataset',
  '@dreamdb/cli',
]
const LEVEL_OF_TOOLING = STACK.length // quickstart, bench, conformance suites: may use anything

export function layerOf(name) {
  const index = STACK.indexOf(name)
  if (index !== -1) return index
  if (name === '@dreamdb/cas-tests') return 0
  return LEVEL_OF_TOOLING
}

function workspacePackages(root) {
  const out = []
  for (const group of ['packages', 'apps', 'tools']) {
    const dir = join(root, group)
    for (const entry of readdirSync(dir).sort()) {
      const manifest = join(dir, entry, 'package.json')
      try {
        out.push({ dir: join(dir, entry), pkg: JSON.parse(readFileSync(manifest, 'utf8')) })
      } catch {}
    }
  }
  return out
}

function* sourceFiles(dir) {
  let entries
  try {
    entries = readdirSync(dir)
  } catch {
    return
  }
  for (const entry of entries.sort()) {
    if (entry === 'node_modules' || entry === 'dist') continue
    const path = join(dir, entry)
    if (statSync(path).isDirectory()) yield* sourceFiles(path)
    else if (/\.(m?[jt]sx?)$/.test(entry)) yield path
  }
}

const SPECIFIER = /(?:from\s+|import\s*\(\s*|require\s*\(\s*|import\s+)['"](@dreamdb\/[a-z0-9-]+)/g

export function violations(root = repoRoot) {
  const found = []
  for (const { dir, pkg } of workspacePackages(root)) {
    const own = layerOf(pkg.name)
    const deps = { ...pkg.dependencies, ...pkg.peerDependencies, ...pkg.optionalDependencies }
    for (const dep of Object.keys(deps)) {
      if (dep.startsWith('@dreamdb/') && layerOf(dep) > own) {
        found.push(`${pkg.name} depends on ${dep}, which is above it (package.json)`)
      }
    }
    for (const file of [...sourceFiles(join(dir, 'src')), ...sourceFiles(join(dir, 'test'))]) {
      for (const match of readFileSync(file, 'utf8').matchAll(SPECIFIER)) {
        const target = match[1]
        if (layerOf(target) > own) {
          found.push(`${relative(root, file)} imports ${target}, which is above ${pkg.name}`)
        }
      }
    }
  }
  return found
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const found = violations()
  if (found.length > 0) {
    console.error(`Layering violations (the stack is ${STACK.join(' <- ')}):`)
    for (const line of found) console.error(`  ${line}`)
    process.exit(1)
  }
  console.log(`layers ok: ${STACK.join(' <- ')}`)
}
