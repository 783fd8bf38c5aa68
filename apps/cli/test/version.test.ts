/**
 * `dreamdb --version` is the version in the package.json installed beside the binary, so
 * that `changeset version` is all a release changes. Runs the built binary (skipped until
 * `pnpm build` has made dist/; turbo builds before this package's tests).
 */
import { execFile } from 'node:child_process'
import { cp, readFile, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DIST_ENTRY, hasDist, tempDir } from './helpers.js'

const CLI_ROOT = new URL('..', import.meta.url)

describe.skipIf(!hasDist())('dreamdb --version', () => {
  let dir: { path: string; remove: () => Promise<void> }
  beforeAll(async () => {
    dir = await tempDir()
  })
  afterAll(async () => dir?.remove())

  it('prints the version of the package.json beside the binary', async () => {
    // A copy of the package whose manifest says another version; its dependencies are the
    // workspace's own (node_modules is a link).
    const copy = join(dir.path, 'cli')
    await cp(new URL('dist', CLI_ROOT), join(copy, 'dist'), { recursive: true })
    await symlink(new URL('node_modules', CLI_ROOT).pathname, join(copy, 'node_modules'), 'dir')
    const pkg = JSON.parse(await readFile(new URL('package.json', CLI_ROOT), 'utf8'))
    await writeFile(join(copy, 'package.json'), JSON.stringify({ ...pkg, version: '9.8.7-rc.1' }))

    const run = (entry: string) => promisify(execFile)(process.execPath, [entry, '--version'])
    expect((await run(join(copy, 'dist', 'index.js'))).stdout).toBe('9.8.7-rc.1\n')
    expect((await run(DIST_ENTRY)).stdout).toBe(`${pkg.version}\n`)
  })
})
