import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, expect, it } from 'vitest'
import { violations } from './check-layers.mjs'

const scratch = []
afterEach(() => {
  for (const dir of scratch.splice(0)) rmSync(dir, { recursive: true, force: true })
})

function workspace(packages) {
  const root = mkdtempSync(join(tmpdir(), 'dreamdb-layers-'))
  scratch.push(root)
  for (const [dir, { name, dependencies = {}, files = {} }] of Object.entries(packages)) {
    mkdirSync(join(root, dir, 'src'), { recursive: true })
    writeFileSync(join(root, dir, 'package.json'), JSON.stringify({ name, dependencies }))
    for (const [file, text] of Object.entries(files)) writeFileSync(join(root, dir, file), text)
  }
  for (const group of ['packages', 'apps', 'tools']) mkdirSync(join(root, group), { recursive: true })
  return root
}

it('the repository has no upward imports', () => {
  expect(violations()).toEqual([])
})

it('reports an upward import and an upward dependency, and allows downward ones', () => {
  const root = workspace({
    'packages/cas': { name: '@dreamdb/cas', files: { 'src/a.ts': "import { x } from '@dreamdb/dataset'\n" } },
    'packages/manifest': { name: '@dreamdb/manifest', dependencies: { '@dreamdb/vector': 'workspace:*' } },
    'packages/dataset': {
      name: '@dreamdb/dataset',
      files: {
        'src/ok.ts': "import { openStore } from '@dreamdb/cas'\nconst m = await import('@dreamdb/arrow')\n",
      },
    },
  })
  expect(violations(root)).toEqual([
    'packages/cas/src/a.ts imports @dreamdb/dataset, which is above @dreamdb/cas',
    '@dreamdb/manifest depends on @dreamdb/vector, which is above it (package.json)',
  ])
})
