#!/usr/bin/env node
// Checks what `pnpm pack` produced, before npm sees it: each packed manifest names only
// ranges (no `workspace:`/`catalog:` left, no exact pins a user's install would collide
// with), carries the licence, repository and engines fields, ships the LICENSE text, and
// every file its `exports` and `bin` point at. Usage: manifests.mjs <LICENSE> <unpacked dir>...
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

const [license, ...dirs] = process.argv.slice(2)
const licenseText = readFileSync(license, 'utf8')
const EXACT = /^=?v?\d+\.\d+\.\d+(?:[-+][\w.-]+)?$/
const problems = []

for (const dir of dirs) {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
  const fail = (what) => problems.push(`${pkg.name}: ${what}`)
  for (const field of ['dependencies', 'peerDependencies', 'optionalDependencies', 'devDependencies']) {
    for (const [name, spec] of Object.entries(pkg[field] ?? {})) {
      if (/^(workspace|catalog):/.test(spec))
        fail(`${field}.${name} is '${spec}' (not rewritten by pnpm pack)`)
      else if (field !== 'devDependencies' && EXACT.test(spec))
        fail(`${field}.${name} is an exact pin '${spec}'`)
    }
  }
  if (pkg.license !== 'Apache-2.0') fail(`license is ${JSON.stringify(pkg.license)}`)
  if (typeof pkg.repository?.url !== 'string') fail('no repository.url')
  if (typeof pkg.engines?.node !== 'string') fail('no engines.node')
  const shipped = join(dir, 'LICENSE')
  if (!existsSync(shipped)) fail('no LICENSE in the tarball')
  else if (readFileSync(shipped, 'utf8') !== licenseText) fail('its LICENSE differs from the root LICENSE')
  const targets = [...Object.values(pkg.bin ?? {})]
  for (const [subpath, entry] of Object.entries(pkg.exports ?? {})) {
    if (typeof entry === 'string') {
      targets.push(entry)
      continue
    }
    for (const condition of ['types', 'import', 'default']) {
      if (typeof entry[condition] !== 'string') fail(`exports['${subpath}'] has no '${condition}'`)
    }
    targets.push(...Object.values(entry))
  }
  for (const target of targets) {
    if (!existsSync(join(dir, target))) fail(`${target} (in exports or bin) is not in the tarball`)
  }
  const arrow = pkg.peerDependencies?.['apache-arrow']
  console.log(`  ${pkg.name}@${pkg.version}${arrow ? ` (peer apache-arrow ${arrow})` : ''}`)
}

if (problems.length > 0) {
  console.error(
    `pack-check: the packed manifests are not installable as published:\n  ${problems.join('\n  ')}`,
  )
  process.exit(1)
}
