/**
 * Deadlines and typed reachability errors against a real MinIO (design/0002, "Deadlines").
 * The server is a private one this file starts, so it can stop it with SIGSTOP: a stopped
 * server keeps its sockets open and answers nothing, the fault that used to hang forever.
 * No timing is asserted: each case asserts that a typed error arrived; the generous vitest
 * timeouts (far above the deadlines) are what would catch a hang.
 */
import { rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { freshBucket, minioEndpoint, type PrivateMinio, rejection, startMinio } from '@dreamdb/cas-tests'
import type { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Store } from '../src/interface.js'
import { openStore } from '../src/open.js'

const endpoint = minioEndpoint()
const encode = (text: string): Uint8Array => new TextEncoder().encode(text)
/** Short deadlines so a case takes seconds: 1.5 s of silence, two attempts. */
const FAST = { timeoutMs: 1_500, connectTimeoutMs: 1_500, attempts: 2 } as const
/**
 * Shorter still for a store whose calls meet a stopped server: they only wait out the silence,
 * 0.3 s twice. What a test needs in place first is written by a store with FAST deadlines, so a
 * slow moment of a loaded machine cannot fail the setup.
 */
const STOPPED = { timeoutMs: 300, connectTimeoutMs: 300, attempts: 2 } as const

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

/** The error `promise` rejects with, and how long it took (printed, never asserted). */
async function timedRejection(label: string, promise: Promise<unknown>) {
  const started = performance.now()
  const error = await rejection(promise)
  console.log(
    `[s3 faults] ${label}: ${String(error.code)} after ${Math.round(performance.now() - started)} ms`,
  )
  return error
}

function pattern(size: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(size)
  for (let i = 0; i < size; i++) bytes[i] = ((i + seed) * 2654435761) >>> 24
  return bytes
}

describe.runIf(endpoint !== undefined)('S3 deadlines and reachability (private MinIO)', () => {
  let minio: PrivateMinio
  /** Servers of single cases (one to go away, one to lose its quorum), started with the first. */
  let goingAway: PrivateMinio
  let quorum: PrivateMinio
  let url: string
  /** Writes what the stopped-server cases read (FAST deadlines). */
  let setup: Store
  /** One 64 MiB object for the cases that stop the server in the middle of a body. */
  let large: Promise<CID> | undefined
  const largeObject = (): Promise<CID> => {
    large ??= setup.put(pattern(64 << 20, 7))
    return large
  }

  beforeAll(async () => {
    // About a second each on two loaded cores: started side by side.
    const started = await Promise.allSettled([startMinio(), startMinio(), startMinio({ drives: 4 })])
    const servers = started.map((s) => (s.status === 'fulfilled' ? s.value : undefined))
    ;[minio, goingAway, quorum] = servers as [PrivateMinio, PrivateMinio, PrivateMinio]
    for (const s of started) if (s.status === 'rejected') throw s.reason
    if (servers.includes(undefined))
      throw new Error('MinIO is running for this suite, but its binary or credentials are missing')
    url = `${minio.endpoint}/${await freshBucket(minio.endpoint)}`
    setup = await openStore(url, FAST)
  }, 60_000)
  afterAll(async () => {
    await setup?.close()
    await Promise.all([minio?.stop(), goingAway?.stop(), quorum?.stop()])
  })

  it('a closed port is ERR_CAS_UNREACHABLE naming the endpoint, nothing sent', async () => {
    const port = await closedPort()
    const error = await timedRejection(
      'open, closed port',
      openStore(`http://127.0.0.1:${port}/some-bucket`, FAST),
    )
    expect(error.code).toBe('ERR_CAS_UNREACHABLE')
    expect(error.message).toContain(`127.0.0.1:${port}`)
    expect(error).toMatchObject({
      reason: 'ECONNREFUSED',
      attempts: 2,
      requestSent: false,
      mayHaveLanded: false,
    })
    expect((error.cause as { code?: string }).code).toBe('ECONNREFUSED')
  }, 30_000)

  it('a host name that does not resolve is ERR_CAS_UNREACHABLE', async () => {
    const error = await rejection(openStore('http://dreamdb-no-such-host.invalid:9000/some-bucket', FAST))
    expect(error.code).toBe('ERR_CAS_UNREACHABLE')
    expect(error.message).toContain('dreamdb-no-such-host.invalid')
    expect(error.mayHaveLanded).toBe(false)
  }, 30_000)

  it('a server that went away after the store opened: reads, puts and ref writes fail typed', async () => {
    const bucketUrl = `${goingAway.endpoint}/${await freshBucket(goingAway.endpoint)}`
    const store = await openStore(bucketUrl, FAST)
    const cid = await store.put(encode('before the server went away'))
    const head = await store.createRef('main', encode('m1'))
    await goingAway.stop()
    for (const call of [
      () => store.get(cid),
      () => store.put(encode('after')),
      () => store.readRef('main'),
      () => store.updateRef('main', encode('m2'), head.version),
    ]) {
      const error = await rejection(call())
      expect(error.code).toBe('ERR_CAS_UNREACHABLE')
      expect(error.message).toContain(goingAway.endpoint)
    }
    await store.close()
  }, 60_000)

  it('a MinIO below its quorum (3 of 4 drives gone) is ERR_CAS_UNREACHABLE (503), a ref write known not applied', async () => {
    try {
      const store = await openStore(`${quorum.endpoint}/${await freshBucket(quorum.endpoint)}`, FAST)
      const cid = await store.put(encode('stored while the quorum held'))
      const probe = await store.put(encode('read until the server refuses'))
      await store.createRef('probe-done', encode('x'))
      for (const drive of quorum.drives.slice(1)) await rm(drive, { recursive: true, force: true })
      // Until MinIO notices the drives are gone it reads the missing files as missing objects
      // (404; MinIO may then delete such an object as dangling); its cluster check can report the lost
      // quorum a moment before its object reads do (a get then saw 404 under load). Wait for
      // both, reading only a probe object, never `cid`.
      for (let i = 0; i < 300; i++) {
        const health = await fetch(`${quorum.endpoint}/minio/health/cluster`)
        if (health.status !== 200) break
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      for (let i = 0; i < 100; i++) {
        const refused = await store.has(probe).then(
          () => false,
          (error: { code?: string }) => error.code === 'ERR_CAS_UNREACHABLE',
        )
        if (refused) break
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      for (const [label, call] of [
        ['get below quorum', () => store.get(cid)],
        ['put below quorum', () => store.put(encode('after'))],
        ['readRef below quorum', () => store.readRef('probe-done')],
      ] as const) {
        const error = await timedRejection(label, call())
        expect(error.code).toBe('ERR_CAS_UNREACHABLE')
        expect(String(error.reason)).toMatch(/^HTTP 503/)
        expect(error.message).toContain(quorum.endpoint)
      }
      // 503 is a refusal: the write is known not to have landed, so it is not "unknown".
      const create = await timedRejection('createRef below quorum', store.createRef('main', encode('m1')))
      expect(create.code).toBe('ERR_CAS_UNREACHABLE')
      expect(create).toMatchObject({ requestSent: true, mayHaveLanded: false, attempts: FAST.attempts })
      await store.close()
    } finally {
      await quorum.stop()
    }
  }, 120_000)

  it('SIGSTOP before a get, a put and a ref write: typed errors within the deadline, then it works again', async () => {
    const small = await setup.put(encode('small object'))
    const head = await setup.createRef('stopped', encode('m1'))
    const store = await openStore(url, STOPPED)
    minio.pause()
    try {
      const get = await timedRejection('get, server stopped', store.get(small))
      expect(get.code).toBe('ERR_CAS_TIMEOUT')
      expect(get.message).toContain(minio.endpoint)
      expect(get).toMatchObject({ timeoutMs: STOPPED.timeoutMs, attempts: STOPPED.attempts })

      const put = await timedRejection('put 4 MiB, server stopped', store.put(pattern(4 << 20, 1)))
      expect(put.code).toBe('ERR_CAS_TIMEOUT')

      const has = await timedRejection('has, server stopped', store.has(small))
      expect(has.code).toBe('ERR_CAS_TIMEOUT')

      // The request was sent and may yet be applied: not retried, not called a failure.
      const update = await timedRejection(
        'updateRef, server stopped',
        store.updateRef('stopped', encode('m2'), head.version),
      )
      // updateRef reads first; that read times out before the write is ever sent.
      expect(update.code).toBe('ERR_CAS_TIMEOUT')
    } finally {
      minio.resume()
    }
    // Once the server serves again (read through the setup store's longer deadlines: a
    // resumed server may take a moment), the same store, its timed-out connections gone,
    // works again.
    expect(new TextDecoder().decode(await setup.get(small))).toBe('small object')
    expect(new TextDecoder().decode(await store.get(small))).toBe('small object')
    await store.close()
  }, 120_000)

  it('a conditional ref write that the stopped server never answers is ERR_CAS_OUTCOME_UNKNOWN', async () => {
    const store = await openStore(url, STOPPED)
    // A store's first ref write probes conditional writes; do it while the server answers.
    // Those writes (synced to disk) may outlast 0.3 s on a loaded machine: a failed probe is
    // not remembered, the next write probes again, so the setup tries a few times.
    for (let i = 1; ; i++) {
      const done = await store.createRef(`probe-done-${i}`, encode('x')).then(
        () => true,
        (error: { code?: string }) => {
          if (i === 5 || (error.code !== 'ERR_CAS_TIMEOUT' && error.code !== 'ERR_CAS_OUTCOME_UNKNOWN'))
            throw error
          return false
        },
      )
      if (done) break
    }
    minio.pause()
    let error: Error & Record<string, unknown>
    try {
      // createRef sends its conditional PUT at once (no read first): sent, never answered.
      error = await timedRejection('createRef, server stopped', store.createRef('unknown', encode('m1')))
    } finally {
      minio.resume()
    }
    expect(error.code).toBe('ERR_CAS_OUTCOME_UNKNOWN')
    expect(error).toMatchObject({ refName: 'unknown', expectedVersion: null })
    expect((error.cause as { code?: string }).code).toBe('ERR_CAS_TIMEOUT')
    // Either outcome is possible once the server resumes; if it landed, it is ours.
    const after = await store.readRef('unknown')
    if (after !== undefined) expect(new TextDecoder().decode(after.value)).toBe('m1')
    await store.close()
  }, 120_000)

  it('SIGSTOP in the middle of a streamed get: the stream ends in ERR_CAS_TIMEOUT', async () => {
    const cid = await largeObject()
    const store = await openStore(url, { ...STOPPED, readThreads: false })
    let received = 0
    let stopped = false
    const error = await rejection(
      (async () => {
        for await (const chunk of store.stream(cid)) {
          received += chunk.byteLength
          if (!stopped) {
            stopped = true
            minio.pause()
          }
        }
      })(),
    )
    minio.resume()
    expect(error.code).toBe('ERR_CAS_TIMEOUT')
    expect(received).toBeLessThan(64 << 20)
    await store.close()
  }, 120_000)

  it('SIGSTOP while a get of 64 MiB is under way: ERR_CAS_TIMEOUT after its attempts', async () => {
    const cid = await largeObject()
    const store = await openStore(url, { ...STOPPED, readThreads: false })
    // Pause the server as the get starts: the body (64 MiB) is far larger than the socket
    // buffers, so the pause lands before the request or in the middle of the body.
    const pending = rejection(store.get(cid))
    await new Promise((resolve) => setImmediate(resolve))
    minio.pause()
    const error = await pending
    console.log(`[s3 faults] get 64 MiB, stopped as it starts: ${String(error.code)}`)
    minio.resume()
    expect(error.code).toBe('ERR_CAS_TIMEOUT')
    await store.close()
  }, 120_000)

  it('SIGSTOP in the middle of a streamed (multipart) put: ERR_CAS_TIMEOUT', async () => {
    const store = await openStore(url, STOPPED)
    const part = pattern(8 << 20, 3)
    async function* chunks(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 8; i++) {
        if (i === 3) minio.pause()
        yield part.map((b) => b ^ i)
      }
    }
    const error = await timedRejection('streamed put 64 MiB, stopped after 24 MiB', store.put(chunks()))
    minio.resume()
    expect(error.code).toBe('ERR_CAS_TIMEOUT')
    expect(error.message).toContain(minio.endpoint)
    await store.close()
  }, 180_000)
})
