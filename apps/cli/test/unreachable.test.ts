/**
 * An S3 store that cannot be reached, or that stops answering, is a documented exit code
 * (75) with one line naming the endpoint, never "a bug" (70): from the sources in this
 * process (the S3 settings the store reads from the process environment stubbed for the
 * call), and from the built binary (dist/, once `pnpm turbo run build --filter @dreamdb/cli...`
 * has made it) as a process.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { type CliOptions, type CliResult, cli, hasDist } from './helpers.js'

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
  afterEach(() => {
    vi.unstubAllEnvs()
  })

  /**
   * `dreamdb ...args` with `env`: in this process, where the store reads its S3 settings and
   * the SDK its credentials from `process.env` (stubbed for the call), or as a process.
   */
  async function run(
    args: string[],
    env: Record<string, string>,
    options: { process: boolean } & Pick<CliOptions, 'dist'>,
  ): Promise<CliResult> {
    if (options.process) return await cli(args, { cwd, dist: options.dist ?? false, spawn: true, env })
    for (const [name, value] of Object.entries(env)) vi.stubEnv(name, value)
    return await cli(args, { cwd, env })
  }

  const S3_ENV = {
    AWS_ACCESS_KEY_ID: 'dreamdb-test',
    AWS_SECRET_ACCESS_KEY: 'not-a-secret',
    DREAMDB_S3_ATTEMPTS: '2',
  }
  const builds = [
    { name: 'sources, in process', process: false, dist: false, skip: false },
    { name: 'built dist', process: true, dist: true, skip: !hasDist() },
  ]

  for (const build of builds) {
    it.skipIf(build.skip)(
      `exits 75 with one line: ERR_CAS_UNREACHABLE naming the endpoint (${build.name})`,
      async () => {
        const port = await closedPort()
        const result = await run(['refs', '--backend', `http://127.0.0.1:${port}/datasets`], S3_ENV, build)
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
          const result = await run(
            ['refs', '--backend', `http://127.0.0.1:${port}/datasets`],
            { ...S3_ENV, DREAMDB_S3_TIMEOUT_MS: '500' },
            build,
          )
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
    const result = await run(
      ['refs', '--backend', 'http://127.0.0.1:9/datasets'],
      { DREAMDB_S3_TIMEOUT_MS: 'soon' },
      { process: false },
    )
    expect(result.code).toBe(1)
    expect(result.stderr).toMatch(/^dreamdb: ERR_CAS_INVALID_OPTION: .*DREAMDB_S3_TIMEOUT_MS=soon/)
  }, 60_000)
})
