import { randomUUID } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3'

/**
 * The MinIO that `tools/minio/minio.sh run` started for this test run, or `undefined`.
 * Every package's S3 tests use this one check.
 * With CI=true a missing server is an error, so the S3 suites can never be skipped
 * silently in CI.
 */
export function minioEndpoint(): string | undefined {
  const endpoint = process.env.DREAMDB_TEST_S3_ENDPOINT
  if (endpoint === undefined || endpoint === '') {
    if (process.env.CI === 'true') {
      throw new Error('CI=true but DREAMDB_TEST_S3_ENDPOINT is not set: run the tests through tools/test.sh')
    }
    console.warn(
      'SKIPPED: the S3 suites need MinIO; run them with tools/test.sh (or tools/minio/minio.sh run -- ...)',
    )
    return undefined
  }
  return endpoint
}

export function adminClient(endpoint: string): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  })
}

/** A new, empty bucket on the test server. */
export async function freshBucket(endpoint: string): Promise<string> {
  const bucket = `dreamdb-test-${randomUUID().slice(0, 13)}`
  const client = adminClient(endpoint)
  await client.send(new CreateBucketCommand({ Bucket: bucket }))
  client.destroy()
  return bucket
}

/** A MinIO of a test's own, which it may stop (SIGSTOP) and resume; see `startMinio`. */
export interface PrivateMinio {
  /** `http://127.0.0.1:<port>` */
  endpoint: string
  pid: number
  /** SIGSTOP: the server keeps its sockets open and answers nothing. */
  pause(): void
  /** SIGCONT */
  resume(): void
  /** Its drive folders: one, or `drives` of an erasure set (remove some to go below quorum). */
  drives: string[]
  /** Kill it and delete its data. */
  stop(): Promise<void>
}

/**
 * Returns once every thread of `pid` is stopped (Linux; elsewhere at once). `kill` only
 * queues SIGSTOP: on a loaded machine a MinIO thread already running can still answer a
 * request sent right after it (seen in CI: a get that should have timed out resolved).
 * Synchronous, so that a test can pause from inside a stream's data callback.
 */
function awaitStopped(pid: number): void {
  if (process.platform !== 'linux') return
  const pause = new Int32Array(new SharedArrayBuffer(4))
  const deadline = Date.now() + 5_000
  while (Date.now() < deadline) {
    let running = false
    try {
      for (const task of readdirSync(`/proc/${pid}/task`)) {
        const stat = readFileSync(`/proc/${pid}/task/${task}/stat`, 'latin1')
        const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
        if (state !== 'T' && state !== 't') running = true
      }
    } catch {
      return // the process (or a thread) is gone: nothing left to answer
    }
    if (!running) return
    Atomics.wait(pause, 0, 0, 1)
  }
  throw new Error(`MinIO (pid ${pid}) did not stop within 5 s of SIGSTOP`)
}

/**
 * Whether process `pid` holds the socket listening on 127.0.0.1:`port` (Linux: its descriptors
 * against /proc/net/tcp; elsewhere assumed).
 */
async function listensOn(pid: number, port: number): Promise<boolean> {
  const { readFile, readdir, readlink } = await import('node:fs/promises')
  if (process.platform !== 'linux') return true
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0')
  const tables = await Promise.all(
    ['/proc/net/tcp', '/proc/net/tcp6'].map((file) => readFile(file, 'latin1').catch(() => '')),
  )
  if (tables[0] === '') return true
  const table = tables.join('\n')
  const inodes = new Set<string>()
  for (const line of table.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/)
    // local address, state 0A (listening), inode
    if (fields[1]?.endsWith(`:${hexPort}`) && fields[3] === '0A' && fields[9] !== undefined)
      inodes.add(fields[9])
  }
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => [])
  for (const fd of fds) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1]
    if (inode !== undefined && inodes.has(inode)) return true
  }
  return false
}

/**
 * Start a MinIO of this test's own on 127.0.0.1 (the binary `tools/minio/minio.sh` built,
 * the credentials of the run's AWS_* environment), for tests that stop the server; the
 * shared one must keep serving the other suites. `undefined` when there is no binary or no
 * credentials (then `minioEndpoint()` has already said SKIPPED, or failed under CI).
 */
export async function startMinio(options: { drives?: number } = {}): Promise<PrivateMinio | undefined> {
  for (let attempt = 1; ; attempt++) {
    const started = await startMinioOnce(options)
    if (started !== 'port taken') return started
    if (attempt === 3) throw new Error('the private MinIO found its port taken three times')
  }
}

async function startMinioOnce(
  options: { drives?: number } = {},
): Promise<PrivateMinio | undefined | 'port taken'> {
  const { spawn } = await import('node:child_process')
  const { existsSync } = await import('node:fs')
  const { mkdtemp, rm } = await import('node:fs/promises')
  const { createServer } = await import('node:net')
  const { homedir, tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const cache =
    process.env.DREAMDB_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'dreamdb')
  const binary = join(cache, 'bin', 'minio')
  const user = process.env.AWS_ACCESS_KEY_ID
  const password = process.env.AWS_SECRET_ACCESS_KEY
  if (!existsSync(binary) || !user || !password) return undefined
  const port = await new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
  const data = await mkdtemp(join(tmpdir(), 'dreamdb-minio-private-'))
  const count = options.drives ?? 1
  const drives = count === 1 ? [data] : Array.from({ length: count }, (_, i) => join(data, `d${i + 1}`))
  // Several drives: one erasure set; MINIO_CI_CD lets it use folders of the root disk.
  const where = count === 1 ? data : join(data, `d{1...${count}}`)
  const child = spawn(binary, ['server', where, '--address', `127.0.0.1:${port}`, '--quiet'], {
    env: {
      ...process.env,
      ...(count === 1 ? {} : { MINIO_CI_CD: '1' }),
      MINIO_ROOT_USER: user,
      MINIO_ROOT_PASSWORD: password,
      MINIO_BROWSER: 'off',
      MINIO_UPDATE: 'off',
    },
    stdio: 'ignore',
  })
  const endpoint = `http://127.0.0.1:${port}`
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGCONT')
      child.kill('SIGKILL')
      await exited
    }
    await rm(data, { recursive: true, force: true })
  }
  let taken = false
  for (let i = 0; i < 300; i++) {
    const live = await fetch(`${endpoint}/minio/health/${count === 1 ? 'live' : 'cluster'}`).then(
      (r) => r.ok,
      () => false,
    )
    // The server that answered must be this child: a port picked free can be taken by
    // another test run's MinIO before this one binds it (this child then exits), and a test
    // would SIGSTOP a process that serves nothing while the other keeps answering.
    if (live && !(await listensOn(child.pid!, port))) {
      taken = true
      break
    }
    if (live) {
      return {
        endpoint,
        pid: child.pid!,
        pause: () => {
          child.kill('SIGSTOP')
          awaitStopped(child.pid!)
        },
        resume: () => child.kill('SIGCONT'),
        drives,
        stop,
      }
    }
    if (child.exitCode !== null) break
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  await stop()
  if (taken) return 'port taken'
  throw new Error(`the private MinIO on ${endpoint} did not become live`)
}
