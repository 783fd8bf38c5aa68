/**
 * A stopped server: a MinIO of this scenario's own (the shared one keeps serving) holds a
 * dataset; it is stopped with SIGSTOP (its sockets stay open, nothing answers) and every
 * kind of call is made: a ref read, an object get, an append, an iteration, the CLI's
 * `head`. Each must fail with a typed error (ERR_CAS_TIMEOUT) within its deadline, the
 * store's `timeoutMs` times its attempts plus slack, never hang. After SIGCONT the same
 * calls work again and every acknowledged append is there once. Then the server is killed
 * outright: the calls fail with ERR_CAS_UNREACHABLE.
 */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { CreateBucketCommand } from '@aws-sdk/client-s3'
import { openStore, type Store } from '@dreamdb/cas'
import { Dataset } from '@dreamdb/dataset'
import {
  adminS3,
  ErrorLog,
  exitWithin,
  HangError,
  type Result,
  sleep,
  startCli,
  type Target,
  withDeadline,
  zero,
} from '../lib.js'
import { APPEND_SCHEMA, judgeAppends, readAppended } from './writers.js'

interface OwnMinio {
  endpoint: string
  pause(): void
  resume(): void
  kill(): Promise<void>
}

async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

/** A MinIO of our own (the binary tools/minio/minio.sh built), or why there is none. */
async function ownMinio(): Promise<OwnMinio | string> {
  const cache =
    process.env.DREAMDB_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'dreamdb')
  const binary = join(cache, 'bin', 'minio')
  if (!existsSync(binary)) return `no MinIO binary at ${binary}`
  const user = process.env.AWS_ACCESS_KEY_ID
  const password = process.env.AWS_SECRET_ACCESS_KEY
  if (!user || !password) return 'no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY for the server'
  const port = await freePort()
  const data = await mkdtemp(join(tmpdir(), 'dreamdb-torture-minio-'))
  const child = spawn(binary, ['server', data, '--address', `127.0.0.1:${port}`, '--quiet'], {
    env: {
      ...process.env,
      MINIO_ROOT_USER: user,
      MINIO_ROOT_PASSWORD: password,
      MINIO_BROWSER: 'off',
      MINIO_UPDATE: 'off',
    },
    stdio: 'ignore',
  })
  const endpoint = `http://127.0.0.1:${port}`
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGCONT')
      child.kill('SIGKILL')
      await exited
    }
    await rm(data, { recursive: true, force: true })
  }
  for (let i = 0; i < 300; i++) {
    const live = await fetch(`${endpoint}/minio/health/live`).then(
      (r) => r.ok,
      () => false,
    )
    if (live)
      return { endpoint, pause: () => child.kill('SIGSTOP'), resume: () => child.kill('SIGCONT'), kill }
    if (child.exitCode !== null) break
    await sleep(100)
  }
  await kill()
  return `the scenario's own MinIO on ${endpoint} did not become live`
}

export interface StoppedServerOptions {
  /** The stores' per-request deadline (DREAMDB_S3_TIMEOUT_MS for the CLI). */
  timeoutMs: number
}

export async function stoppedServer(
  target: Target,
  _logDir: string,
  options: StoppedServerOptions,
): Promise<Result> {
  const started = Date.now()
  const counts = zero()
  const errors = new ErrorLog(counts)
  const notes: string[] = []
  const server = await ownMinio()
  if (typeof server === 'string') {
    return { scenario: 'stopped-server', backend: target.backend, counts, seconds: 0, skipped: server, notes }
  }
  const attempts = 2
  // The store's worst case (every attempt times out, with backoff between) and slack for two busy cores.
  const limitMs = options.timeoutMs * attempts + 5_000
  const codes: string[] = []
  let slowest = 0
  const acked: string[] = []
  let store: Store | undefined
  try {
    const bucket = 'torture'
    const admin = adminS3(server.endpoint)
    await admin.send(new CreateBucketCommand({ Bucket: bucket }))
    admin.destroy()
    const url = `${server.endpoint}/${bucket}`
    const ds = await Dataset.create('torture', { backend: url, schema: APPEND_SCHEMA })
    await ds.appendMany([{ id: 'before', n: 0 }])
    acked.push('before')
    await ds.repository.store.close()
    store = await openStore(url, { timeoutMs: options.timeoutMs, attempts })
    const open = store
    const data = await Dataset.openRef('torture', { backend: open })
    const someObject = data.manifest.timeline!
    let seq = 0
    const calls: [string, () => Promise<unknown>][] = [
      ['readRef', () => open.readRef('torture')],
      ['get', () => open.get(someObject)],
      ['append', () => data.appendMany([{ id: `during-${seq++}`, n: 1 }])],
      [
        'iterate',
        async () => {
          const fresh = await Dataset.openRef('torture', { backend: open })
          for await (const _ of fresh.iterArrowBatches({})) {
          }
        },
      ],
      [
        'listRefs',
        async () => {
          for await (const _ of open.listRefs('')) {
          }
        },
      ],
    ]
    const expectFailure = async (phase: string, wanted: string) => {
      for (const [name, call] of calls) {
        const t0 = Date.now()
        try {
          await withDeadline(`${phase} ${name}`, limitMs, call)
          // A call may succeed only if it needed no request (nothing does here).
          notes.push(`${phase}: ${name} succeeded against a ${phase} server`)
          if (name === 'append') acked.push(`during-${seq - 1}`)
        } catch (error) {
          if (error instanceof HangError) {
            counts.hangs++
            notes.push(`HANG: ${phase} ${name} past ${limitMs} ms`)
            continue
          }
          const code = errors.add(error, `${phase} ${name}: `)
          if (code !== undefined) codes.push(`${name} ${code}`)
          if (code !== undefined && code !== wanted) notes.push(`${phase} ${name}: ${code}, not ${wanted}`)
        }
        slowest = Math.max(slowest, Date.now() - t0)
      }
      const cli = startCli(['head', 'torture', '--backend', url], {
        DREAMDB_S3_TIMEOUT_MS: String(options.timeoutMs),
        DREAMDB_S3_ATTEMPTS: String(attempts),
      })
      const end = await exitWithin(cli, limitMs + 5_000, counts)
      if (end.hung) notes.push(`HANG: ${phase} dreamdb head past ${limitMs + 5_000} ms`)
      else if (end.code === 0) notes.push(`${phase}: dreamdb head succeeded`)
      else {
        const code = /dreamdb: (ERR_[A-Z0-9_]+)/.exec(cli.stderr)?.[1]
        errors.addCode(
          end.code === 70 ? undefined : code,
          `${phase} dreamdb head exit ${end.code}: ${cli.stderr.slice(-300)}`,
        )
        if (code !== undefined) codes.push(`cli ${code} exit ${end.code}`)
      }
    }
    server.pause()
    await expectFailure('stopped', 'ERR_CAS_TIMEOUT')
    server.resume()
    // After SIGCONT everything works again.
    const ok = async (what: string, call: () => Promise<unknown>) => {
      try {
        await withDeadline(what, 60_000, call)
      } catch (error) {
        if (error instanceof HangError) counts.hangs++
        else errors.add(error, `${what}: `)
      }
    }
    await ok('append after SIGCONT', async () => {
      const fresh = await Dataset.openRef('torture', { backend: open })
      await fresh.appendMany([{ id: 'after', n: 2 }])
      acked.push('after')
    })
    notes.push(...judgeAppends(counts, acked, await readAppended(url, 'torture')))
    await server.kill()
    await expectFailure('killed', 'ERR_CAS_UNREACHABLE')
  } finally {
    await store?.close().catch(() => {})
    await server.kill()
  }
  notes.push(
    `deadline ${options.timeoutMs} ms x ${attempts} attempts; slowest failure ${slowest} ms (limit ${limitMs} ms)`,
  )
  notes.push(`codes: ${codes.join(', ')}`)
  notes.push(...errors.notes())
  return {
    scenario: 'stopped-server',
    backend: target.backend,
    counts,
    seconds: (Date.now() - started) / 1000,
    notes,
  }
}
