/**
 * An S3 store that cannot be reached, or that stops answering, is a documented exit code
 * (75) with one line naming the endpoint, never "a bug" (70): from the sources, and from the
 * built binary (dist/, once `pnpm turbo run build --filter @dreamdb/cli...` has made it).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cli, hasDist } from './helpers.js'

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

/** A TCP server that accepts connections and never says a word (a hung S3 server). */
async function silentServer(): Promise<{ server: Server; port: number }> {
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    socket.on('close', () => sockets.delete(socket))
  })
  const close = server.close.bind(server)
  server.close = ((callback?: (error?: Error) => void) => {
    for (const socket of sockets) socket.destroy()
    return close(callback)
  }) as Server['close']
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, port: (server.address() as { port: number }).port }
}

describe('an unreachable S3 backend', () => {
  let cwd: string
  beforeAll(async () => {
    cwd = await mkdtemp(join(tmpdir(), 'dreamdb-cli-unreachable-'))
  })
  afterAll(async () => {
    await rm(cwd, { recursive: true, force: true })
  })

  const S3_ENV = {
    AWS_ACCESS_KEY_ID: 'dreamdb-test',
    AWS_SECRET_ACCESS_KEY: 'not-a-secret',
    DREAMDB_S3_ATTEMPTS: '2',
  }
  const builds = [
    { name: 'sources', dist: false, skip: false },
    { name: 'built dist', dist: true, skip: !hasDist() },
  ]

  for (const build of builds) {
    it.skipIf(build.skip)(
      `exits 75 with one line: ERR_CAS_UNREACHABLE naming the endpoint (${build.name})`,
      async () => {
        const port = await closedPort()
        const result = await cli(['refs', '--backend', `http://127.0.0.1:${port}/datasets`], {
          cwd,
          dist: build.dist,
          sources: !build.dist,
          spawn: true, // the S3 client reads its credentials and deadlines from the process
          env: S3_ENV,
        })
        expect(result.code, result.stderr).toBe(75)
        const lines = result.stderr.trimEnd().split('\n')
        expect(lines).toHaveLength(1)
        expect(lines[0]).toMatch(/^dreamdb: ERR_CAS_UNREACHABLE: /)
        expect(lines[0]).toContain(`127.0.0.1:${port}`)
        expect(lines[0]).toContain('hint:')
      },
      60_000,
    )

    it.skipIf(build.skip)(
      `a server that accepts and never answers: exits 75 with one line, ERR_CAS_TIMEOUT (${build.name})`,
      async () => {
        const { server, port } = await silentServer()
        try {
          const result = await cli(['refs', '--backend', `http://127.0.0.1:${port}/datasets`], {
            cwd,
            dist: build.dist,
            sources: !build.dist,
            spawn: true,
            env: { ...S3_ENV, DREAMDB_S3_TIMEOUT_MS: '500' },
          })
          expect(result.code, result.stderr).toBe(75)
          const lines = result.stderr.trimEnd().split('\n')
          expect(lines).toHaveLength(1)
          expect(lines[0]).toMatch(/^dreamdb: ERR_CAS_TIMEOUT: /)
          expect(lines[0]).toContain(`127.0.0.1:${port}`)
          expect(lines[0]).toContain('hint:')
        } finally {
          await new Promise((resolve) => server.close(resolve))
        }
      },
      60_000,
    )
  }

  it('a malformed DREAMDB_S3_TIMEOUT_MS is a typed error (1), not a bug', async () => {
    const result = await cli(['refs', '--backend', 'http://127.0.0.1:9/datasets'], {
      cwd,
      spawn: true,
      env: { DREAMDB_S3_TIMEOUT_MS: 'soon' },
    })
    expect(result.code).toBe(1)
    expect(result.stderr).toMatch(/^dreamdb: ERR_CAS_INVALID_OPTION: .*DREAMDB_S3_TIMEOUT_MS=soon/)
  }, 60_000)
})
