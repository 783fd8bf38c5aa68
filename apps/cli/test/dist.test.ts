/**
 * The built binary, as `npm install -g @dreamdb/cli` runs it. Skipped until `pnpm build`
 * has made dist/ (turbo runs the build before this package's tests).
 */
import { readFile } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cli, DIST_ENTRY, hasDist, prepareStore, SWEEP, tempDir } from './helpers.js'

describe.skipIf(!hasDist())('the built binary', () => {
  let dir: { path: string; remove: () => Promise<void> }
  beforeAll(async () => {
    dir = await tempDir()
    await prepareStore(dir.path)
  })
  afterAll(async () => dir?.remove())

  it('is an executable with a node shebang', async () => {
    expect((await readFile(DIST_ENTRY, 'utf8')).startsWith('#!/usr/bin/env node\n')).toBe(true)
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'))
    expect(pkg.bin).toEqual({ dreamdb: './dist/index.js', 'dreamdb-cli': './dist/index.js' })
  })

  it('runs verbs and reports errors like the sources', async () => {
    const version = await cli(['--version'], { cwd: dir.path, dist: true })
    expect(version.stdout).toBe('0.1.0\n')
    const matrix = await cli(['compare-refs', '--refs', SWEEP.join(','), '--json'], {
      cwd: dir.path,
      dist: true,
    })
    expect(matrix.code).toBe(0)
    expect(JSON.parse(matrix.stdout).counts).toEqual([120, 120, 120])
    const inspect = await cli(['inspect', '--ref-name', 'prod-1', '--json'], { cwd: dir.path, dist: true })
    expect(JSON.parse(inspect.stdout).splits.counts).toEqual({ train: 90, validation: 30 })
    const missing = await cli(['inspect', 'nope'], { cwd: dir.path, dist: true })
    expect(missing.code).toBe(3)
    expect(missing.stderr).toMatch(/^dreamdb: ERR_MANIFEST_REF_NOT_FOUND: /)
  })
})
