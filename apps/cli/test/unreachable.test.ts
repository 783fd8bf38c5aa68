/**
 * An S3 store that cannot be reached is a documented exit code (75) with one line naming
 * the endpoint, never "a bug" (70).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cli } from './helpers.js'

async function closedPort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

describe('an unreachable S3 backend', () => {
  let cwd: string
  beforeAll(async () => {
    cwd = await mkdtemp(join(tmpdir(), 'dreamdb-cli-unreachable-'))
  })
  afterAll(async () => {
    await rm(cwd, { recursive: true, force: true })
  })

  it('exits 75 with one line: ERR_CAS_UNREACHABLE naming the endpoint', async () => {
    const port = await closedPort()
    const result = await cli(['refs', '--backend', `http://127.0.0.1:${port}/datasets`], {
      cwd,
      env: {
        AWS_ACCESS_KEY_ID: 'dreamdb-test',
        AWS_SECRET_ACCESS_KEY: 'not-a-secret',
        DREAMDB_S3_ATTEMPTS: '2',
      },
    })
    expect(result.code).toBe(75)
    const lines = result.stderr.trimEnd().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/^dreamdb: ERR_CAS_UNREACHABLE: /)
    expect(lines[0]).toContain(`127.0.0.1:${port}`)
    expect(lines[0]).toContain('hint:')
  }, 60_000)

  it('a malformed DREAMDB_S3_TIMEOUT_MS is a typed error (1), not a bug', async () => {
    const result = await cli(['refs', '--backend', 'http://127.0.0.1:9/datasets'], {
      cwd,
      env: { DREAMDB_S3_TIMEOUT_MS: 'soon' },
    })
    expect(result.code).toBe(1)
    expect(result.stderr).toMatch(/^dreamdb: ERR_CAS_INVALID_OPTION: .*DREAMDB_S3_TIMEOUT_MS=soon/)
  }, 60_000)
})
