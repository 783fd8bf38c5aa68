#!/usr/bin/env node
// Fails when a workspace package depends on, or imports, a package it does not sit on. The
// layers form a small graph, not a line: manifest and vector both sit on cas and neither
// uses the other; arrow sits on both; ingest sits on dataset, and the CLI on ingest. Checked in both package.json dependencies and every
// import/require/export-from specifier under src/ and test/.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
/**
 * Each layer and the layers directly beneath it; a layer may use whatever it reaches going
 * down. Test-only helpers sit beside the layer they test. Anything not named (quickstart,
 * bench, torture, the Python bridge) is tooling and may use anything.
 */
export const LAYERS = {
  '@dreamdb/cas': [],
  '@dreamdb/manifest': ['@dreamdb/cas'],
  '@dreamdb/vector': ['@dreamdb/cas'],
  '@dreamdb/arrow': ['@dreamdb/manifest', '@dreamdb/vector'],
  '@dreamdb/dataset': ['@dreamdb/arrow'],
  '@dreamdb/ingest': ['@dreamdb/dataset'],
  '@dreamdb/cli': ['@dreamdb/ingest'],
}
const SAME_LAYER = { '@dreamdb/cas-tests': '@dreamdb/cas' }

function layerOf(name) {
  const layer = SAME_LAYER[name] ?? name
  return Object.hasOwn(LAYERS, layer) ? layer : undefined
}

/** Whether package `from` may depend on package `to`. */
export function mayUse(from, to) {
  const own = layerOf(from)
  const target = layerOf(to)
  if (own === undefined) return true // tooling
  if (target === undefined) return false // a layer never uses tooling
  const seen = new Set()
  const pending = [own]
  while (pending.length > 0) {
    const layer = pending.pop()
    if (layer === target) return true
    if (seen.has(layer)) continue
    seen.add(layer)
    pending.push(...LAYERS[layer])
  }
  return false
}

/** One line per layer: what it sits on. */
export function describeLayers() {
  return Object.entries(LAYERS)
    .map(([name, beneath]) => `${name} on ${beneath.length > 0 ? beneath.join(' + ') : 'nothing'}`)
    .join('; ')
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
    const deps = { ...pkg.dependencies, ...pkg.peerDependencies, ...pkg.optionalDependencies }
    for (const dep of Object.keys(deps)) {
      if (dep.startsWith('@dreamdb/') && !mayUse(pkg.name, dep)) {
        found.push(`${pkg.name} depends on ${dep}, which it does not sit on (package.json)`)
      }
    }
    for (const file of [...sourceFiles(join(dir, 'src')), ...sourceFiles(join(dir, 'test'))]) {
      for (const match of readFileSync(file, 'utf8').matchAll(SPECIFIER)) {
        const target = match[1]
        if (!mayUse(pkg.name, target)) {
          found.push(`${relative(root, file)} imports ${target}, which ${pkg.name} does not sit on`)
        }
      }
    }
  }
  return found
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const found = violations()
  if (found.length > 0) {
    console.error(`Layering violations (the layers: ${describeLayers()}):`)
    for (const line of found) console.error(`  ${line}`)
    process.exit(1)
  }
  console.log(`layers ok: ${describeLayers()}`)
}
