import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, expect, it } from 'vitest'
import { mayUse, violations } from './check-layers.mjs'

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
    'packages/cas/src/a.ts imports @dreamdb/dataset, which @dreamdb/cas does not sit on',
    '@dreamdb/manifest depends on @dreamdb/vector, which it does not sit on (package.json)',
  ])
})

it('forbids vector -> manifest: both sit on cas and neither uses the other', () => {
  const root = workspace({
    'packages/vector': {
      name: '@dreamdb/vector',
      dependencies: { '@dreamdb/cas': 'workspace:*', '@dreamdb/manifest': 'workspace:*' },
      files: {
        'src/model.ts':
          "import type { Metric } from '@dreamdb/manifest'\nimport { cidOf } from '@dreamdb/cas'\n",
      },
    },
    'packages/arrow': {
      name: '@dreamdb/arrow',
      files: { 'src/ok.ts': "import '@dreamdb/manifest'\nimport '@dreamdb/vector'\nimport '@dreamdb/cas'\n" },
    },
  })
  expect(violations(root)).toEqual([
    '@dreamdb/vector depends on @dreamdb/manifest, which it does not sit on (package.json)',
    'packages/vector/src/model.ts imports @dreamdb/manifest, which @dreamdb/vector does not sit on',
  ])
  expect(mayUse('@dreamdb/vector', '@dreamdb/manifest')).toBe(false)
  expect(mayUse('@dreamdb/manifest', '@dreamdb/vector')).toBe(false)
  expect(mayUse('@dreamdb/dataset', '@dreamdb/cas')).toBe(true)
  expect(mayUse('@dreamdb/cas-tests', '@dreamdb/cas')).toBe(true)
  expect(mayUse('@dreamdb/cas', '@dreamdb/quickstart')).toBe(false)
  expect(mayUse('@dreamdb/quickstart', '@dreamdb/cli')).toBe(true)
})

it('ingest sits on dataset and the CLI on ingest: nothing below imports ingest', () => {
  const root = workspace({
    'packages/dataset': {
      name: '@dreamdb/dataset',
      files: { 'src/up.ts': "import { ingest } from '@dreamdb/ingest'\n" },
    },
    'packages/ingest': {
      name: '@dreamdb/ingest',
      dependencies: { '@dreamdb/dataset': 'workspace:*', '@dreamdb/manifest': 'workspace:*' },
      files: { 'src/ok.ts': "import '@dreamdb/dataset'\nimport '@dreamdb/cas'\nimport '@dreamdb/cli'\n" },
    },
    'apps/cli': {
      name: '@dreamdb/cli',
      files: { 'src/ok.ts': "import '@dreamdb/ingest'\nimport '@dreamdb/dataset'\n" },
    },
  })
  expect(violations(root)).toEqual([
    'packages/dataset/src/up.ts imports @dreamdb/ingest, which @dreamdb/dataset does not sit on',
    'packages/ingest/src/ok.ts imports @dreamdb/cli, which @dreamdb/ingest does not sit on',
  ])
  expect(mayUse('@dreamdb/cli', '@dreamdb/ingest')).toBe(true)
  expect(mayUse('@dreamdb/cli', '@dreamdb/dataset')).toBe(true)
  expect(mayUse('@dreamdb/ingest', '@dreamdb/arrow')).toBe(true)
  expect(mayUse('@dreamdb/dataset', '@dreamdb/ingest')).toBe(false)
  expect(mayUse('@dreamdb/ingest', '@dreamdb/cli')).toBe(false)
})
