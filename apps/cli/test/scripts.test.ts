/**
 * The CLI from shells and scripts (issue 14): `source tools/env.sh` leaves the caller's shell
 * options alone; the README's piped commands print pure JSON; and the CI audit example
 * (examples/audit.mjs, which tools/test.sh runs too) passes on a whole store and fails, naming
 * the problem, on a damaged one or a ref that differs.
 */
import { spawnSync } from 'node:child_process'
import { chmod, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { CLI_ROOT, cleanEnv, cli, hasDist, PROCESS_ARGV, prepareStore, tempDir } from './helpers.js'

// Processes: a few seconds each on a loaded machine.
vi.setConfig({ testTimeout: 60_000 })

const REPO_ROOT = join(CLI_ROOT, '..', '..')
const hasPnpm = spawnSync('pnpm', ['--version'], { encoding: 'utf8' }).status === 0

let dir: { path: string; remove: () => Promise<void> }
let backend: string
beforeAll(async () => {
  dir = await tempDir()
  backend = (await prepareStore(dir.path)).backend
})
afterAll(async () => dir?.remove())

describe('tools/env.sh', () => {
  it('can be sourced without changing the shell options: a failing command afterwards does not end the shell', () => {
    const result = spawnSync(
      'bash',
      [
        '-c',
        `source ${join(REPO_ROOT, 'tools', 'env.sh')}; false; echo "survived $-"; set -o | grep -E '^(pipefail|nounset)'`,
      ],
      { encoding: 'utf8', env: cleanEnv() },
    )
    expect(result.status, result.stderr).toBe(0)
    expect(result.stdout).toMatch(/^survived /m)
    expect(result.stdout).not.toMatch(/^survived \S*e/m) // no errexit
    expect(result.stdout).toMatch(/pipefail\s+off/)
    expect(result.stdout).toMatch(/nounset\s+off/)
  })
})

describe('README commands in a pipe', () => {
  it('documents the silent form (pnpm -s dreamdb ... | jq), never pnpm dreamdb piped', async () => {
    const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8')
    const piped = readme.split('\n').filter((l) => /\bdreamdb\b.*--json.*\|/.test(l))
    expect(piped.length).toBeGreaterThan(0)
    for (const line of piped) expect(line).not.toMatch(/pnpm dreamdb/)
    expect(piped.some((l) => l.includes('pnpm -s dreamdb refs --json | jq'))).toBe(true)
  })

  it.skipIf(!hasDist() || !hasPnpm)('pnpm -s dreamdb refs --json prints only the JSON document', () => {
    const result = spawnSync('bash', ['-c', 'pnpm -s dreamdb refs --json'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      env: cleanEnv({ DREAMDB_BACKEND: backend }),
    })
    expect(result.status, result.stderr).toBe(0)
    const doc = JSON.parse(result.stdout)
    expect(doc.format).toBe('dreamdb.refs/1')
  })
})

describe('examples/audit.mjs', () => {
  const audit = (args: string[], cwd = dir.path) => {
    return spawnSync(process.execPath, [join(REPO_ROOT, 'examples', 'audit.mjs'), ...args], {
      cwd,
      encoding: 'utf8',
      env: cleanEnv({
        DREAMDB_CLI: [process.execPath, ...PROCESS_ARGV].join(' '),
        TSX_TSCONFIG_PATH: join(CLI_ROOT, 'tsconfig.json'),
      }),
    })
  }

  it('passes on whole tags, and fails naming a tag that differs from --against', () => {
    const ok = audit(['--backend', backend, '--prefix', 'prod-'])
    expect(ok.status, ok.stderr).toBe(0)
    expect(ok.stdout).toMatch(/^prod-1: 120 records, (\d+)\/\1 objects verified/m)
    expect(ok.stdout).toContain('all good')
    const differs = audit(['--backend', backend, '--prefix', 'prod-', '--against', 'prep-v1'])
    expect(differs.status).toBe(1)
    expect(differs.stderr).toContain(
      'audit: FAIL prod-1 differs from prep-v1: records +0 -0, fields +0 -0 ~0, layers +1',
    )
  })

  it('fails naming every damaged object', async () => {
    const copy = await tempDir()
    try {
      const store = (await prepareStore(copy.path)).backend
      const doc = JSON.parse(
        (await cli(['inspect', 'prod-1', '--json', '--no-splits'], { cwd: copy.path })).stdout,
      )
      const cid = (doc.objects as { cid: string; role: string }[]).find((o) => o.role === 'field')!.cid
      const hex = Buffer.from(CID.parse(cid).multihash.digest).toString('hex')
      const file = join(store, 'objects', 'sha2-256', hex.slice(0, 2), hex)
      await chmod(file, 0o644)
      await writeFile(file, 'damaged')
      const result = audit(['--backend', store, '--prefix', 'prod-'])
      expect(result.status).toBe(1)
      expect(result.stderr).toContain(`audit: FAIL prod-1: ERR_CAS_INTEGRITY ${cid}`)
    } finally {
      await copy.remove()
    }
  })
})
