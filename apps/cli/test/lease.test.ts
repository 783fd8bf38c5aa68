/**
 * One ingest per dataset at a time (design/0006): two real processes of the built binary
 * (the sources through tsx before a build) ingesting the same shards into the same dataset
 * at once, on a folder and, when the test run has one, on MinIO. The lease itself (take,
 * renew, lose, take over by compare-and-swap) is tested in process against a real folder
 * store with a fake clock.
 */
import { createHash } from 'node:crypto'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { openStore, type Store } from '@dreamdb/cas'
import { Dataset } from '@dreamdb/dataset'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { IngestResult } from '../src/ingest/ingest.js'
import { acquireIngestLease, decodeLease, leaseRef } from '../src/ingest/lease.js'
import { type CliResult, cli, hasDist, spawnCli, tempDir } from './helpers.js'
import { type FixtureRecord, writeSplit } from './shards.js'

// Every test here runs the CLI as processes (a few seconds each on a loaded machine).
vi.setConfig({ testTimeout: 60_000 })

const DIST = hasDist()
let dir: { path: string; remove: () => Promise<void> }
let root: string
let fixtures: FixtureRecord[]
const key = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

/** Small chunks, one at a time: an ingest of these shards makes 80 commits. */
const ingestArgs = (backend: string, name: string, ...more: string[]) => [
  'ingest',
  '--root',
  root,
  '--dataset-name',
  name,
  '--splits',
  'train',
  '--batch-records',
  '3',
  '--concurrency',
  '1',
  '--backend',
  backend,
  ...more,
]

interface Running {
  pid: number
  /** Resolves when stderr has a line matching the pattern. */
  waitFor(pattern: RegExp): Promise<string>
  done: Promise<CliResult>
  kill(signal: NodeJS.Signals): void
}

function start(args: string[], env?: Record<string, string | undefined>): Running {
  const child = spawnCli(args, { cwd: dir.path, dist: DIST, ...(env ? { env } : {}) })
  child.stdin.end()
  let stdout = ''
  let stderr = ''
  const waiters: { pattern: RegExp; resolve: (line: string) => void }[] = []
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d
    for (const w of [...waiters]) {
      const line = stderr.split('\n').find((l) => w.pattern.test(l))
      if (line !== undefined) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve(line)
      }
    }
  })
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code) => {
      for (const w of waiters) w.resolve(`(exited ${code} before a line matched ${w.pattern}: ${stderr})`)
      resolve({ code: code ?? -1, stdout, stderr })
    })
  })
  return {
    pid: child.pid!,
    waitFor: (pattern) =>
      new Promise((resolve) => {
        const line = stderr.split('\n').find((l) => pattern.test(l))
        if (line !== undefined) resolve(line)
        else waiters.push({ pattern, resolve })
      }),
    done,
    kill: (signal) => child.kill(signal),
  }
}

// Processes, like the ingests they race: a lease names its holder's process.
const run = (args: string[], env?: Record<string, string | undefined>) =>
  cli(args, { cwd: dir.path, dist: DIST, spawn: true, ...(env ? { env } : {}) })

/** How many times each fixture's image is in the dataset. */
async function counts(backend: string | Store, name: string): Promise<Map<string, number>> {
  const ds = await Dataset.openRef(name, { backend })
  const seen = new Map<string, number>()
  try {
    for await (const batch of ds.iterArrowBatches({ fields: ['image'] })) {
      for (let i = 0; i < batch.numRows; i++) {
        const k = key(batch.getChild('image')!.get(i) as Uint8Array)
        seen.set(k, (seen.get(k) ?? 0) + 1)
      }
    }
  } finally {
    if (typeof backend === 'string') await ds.repository.store.close()
  }
  return seen
}

async function expectExactlyOnce(backend: string | Store, name: string) {
  const seen = await counts(backend, name)
  expect([...seen.values()].reduce((a, b) => a + b, 0)).toBe(fixtures.length)
  for (const f of fixtures) expect(seen.get(key(f.image)), `${f.shard} row ${f.row}`).toBe(1)
}

const ingested = (r: CliResult) => {
  expect(r.code, r.stderr).toBe(0)
  return (JSON.parse(r.stdout) as IngestResult).records
}

beforeAll(async () => {
  dir = await tempDir()
  root = join(dir.path, 'hf')
  fixtures = await writeSplit(root, { split: 'train', shards: 4, rows: 60, first: 0 })
})
afterAll(async () => dir?.remove())

describe(`two ingests of one dataset at once (${DIST ? 'the built binary' : 'the sources'})`, () => {
  it('the second fails fast naming the first, or waits for it with --wait; every record lands once', async () => {
    const backend = join(dir.path, 'store-a')
    const first = start(ingestArgs(backend, 'd'))
    expect(await first.waitFor(/committed train/)).toMatch(/committed train/)
    // Hold the first one still, mid-ingest: it is alive and holds the lease.
    first.kill('SIGSTOP')
    try {
      const second = await run(ingestArgs(backend, 'd'))
      expect(second.code).toBe(4)
      expect(second.stdout).toBe('')
      const line = second.stderr.trimEnd()
      expect(line.split('\n')).toHaveLength(1)
      expect(line).toMatch(/^dreamdb: ERR_CLI_INGEST_LOCKED: Another ingest into 'd' is running: /)
      expect(line).toContain(`pid ${first.pid} on ${hostname()}`)
      expect(line).toContain('--wait')
      const waited = await run(ingestArgs(backend, 'd', '--wait', '1'))
      expect(waited.code).toBe(4)
      expect(waited.stderr).toMatch(/ERR_CLI_INGEST_LOCKED: .*waited 1 s/)
    } finally {
      first.kill('SIGCONT')
    }
    // Meanwhile a third waits for the first to finish, then finds nothing left to do.
    const third = start(ingestArgs(backend, 'd', '--wait', '600', '--json'))
    expect(await third.waitFor(/waiting for another ingest into 'd'/)).toContain(`pid ${first.pid}`)
    const a = await first.done
    expect(a.code, a.stderr).toBe(0)
    expect(ingested(await third.done)).toEqual({ ingested: 0, skipped: 240, total: 240 })
    await expectExactlyOnce(backend, 'd')
    // Released: no lease is left behind, and the next ingest starts at once.
    const store = await openStore(backend)
    expect(await store.readRef(leaseRef('d'))).toBeUndefined()
    await store.close()
  })

  it('started together with --wait, they take turns and every record lands once', async () => {
    const backend = join(dir.path, 'store-b')
    const runs = [0, 1, 2].map(() => start(ingestArgs(backend, 'd', '--wait', '600', '--json')))
    const results = await Promise.all(runs.map((r) => r.done))
    const records = results.map(ingested)
    expect(records.reduce((n, r) => n + r.ingested, 0)).toBe(240)
    for (const r of records) expect(r.total).toBe(240)
    await expectExactlyOnce(backend, 'd')
  })

  it("a killed ingest's lease is taken over at once on the same host; a live one elsewhere is not", async () => {
    const backend = join(dir.path, 'store-c')
    const first = start(ingestArgs(backend, 'd'))
    await first.waitFor(/committed train/)
    first.kill('SIGKILL')
    await first.done
    const store = await openStore(backend)
    const left = decodeLease((await store.readRef(leaseRef('d')))!.value)
    expect(left).toMatchObject({ host: hostname(), pid: first.pid })
    const second = start(ingestArgs(backend, 'd', '--json'))
    expect(await second.waitFor(/took over the ingest lease/)).toContain(`pid ${first.pid} on ${hostname()}`)
    const records = ingested(await second.done)
    expect(records.ingested).toBeGreaterThan(0)
    expect(records.ingested + records.skipped).toBe(240)
    await expectExactlyOnce(backend, 'd')

    // A lease of a live ingest on another machine: refused; once it has expired, taken over.
    const other = (expires: number) =>
      new TextEncoder().encode(
        JSON.stringify({
          format: 'dreamdb.ingest-lease/1',
          host: 'gpu-node-7',
          pid: 4242,
          token: 'elsewhere',
          command: 'dreamdb ingest --root /data/in --splits train',
          acquired: Date.now() - 5000,
          renewed: Date.now(),
          expires,
        }),
      )
    const entry = await store.createRef(leaseRef('e'), other(Date.now() + 600_000))
    const refused = await run(ingestArgs(backend, 'e'))
    expect(refused.code).toBe(4)
    expect(refused.stderr).toMatch(
      /^dreamdb: ERR_CLI_INGEST_LOCKED: Another ingest into 'e' is running: pid 4242 on gpu-node-7, since .*\(dreamdb ingest --root \/data\/in --splits train\)/,
    )
    await store.updateRef(leaseRef('e'), other(Date.now() - 1), entry.version)
    const taken = start(ingestArgs(backend, 'e', '--json'))
    expect(await taken.waitFor(/took over the ingest lease/)).toMatch(/pid 4242 on gpu-node-7 .*it expired/)
    expect(ingested(await taken.done)).toEqual({ ingested: 240, skipped: 0, total: 240 })
    expect(await store.readRef(leaseRef('e'))).toBeUndefined()
    await store.close()
  })

  it('a holder stopped past its lease loses it: it stops with ERR_CLI_INGEST_LEASE_LOST instead of committing on', async () => {
    const backend = join(dir.path, 'store-d')
    const first = start(ingestArgs(backend, 'd', '--lease-ttl', '2'))
    await first.waitFor(/committed train/)
    first.kill('SIGSTOP')
    let a: CliResult
    try {
      await new Promise((resolve) => setTimeout(resolve, 2500))
      const second = start(ingestArgs(backend, 'd', '--json'))
      expect(await second.waitFor(/took over the ingest lease/)).toMatch(/it expired/)
      expect(ingested(await second.done).total).toBeGreaterThanOrEqual(240)
    } finally {
      first.kill('SIGCONT')
      a = await first.done
    }
    expect(a.code).toBe(4)
    expect(a.stderr.trimEnd().split('\n').at(-1)).toMatch(
      /^dreamdb: ERR_CLI_INGEST_LEASE_LOST: Lost the ingest lease on 'd'/,
    )
    // Every record is in; a commit the stopped one had in flight when it was stopped may
    // land after the takeover (design/0006): at most that one chunk of 3 rows twice.
    const seen = await counts(backend, 'd')
    for (const f of fixtures) expect(seen.get(key(f.image))).toBeGreaterThanOrEqual(1)
    expect([...seen.values()].reduce((n, c) => n + c, 0) - fixtures.length).toBeLessThanOrEqual(3)
  })
})

describe('the lease and bad dataset names', () => {
  it('a name that cannot be a dataset is refused before any lease is taken', async () => {
    const backend = join(dir.path, 'store-names')
    for (const name of ['_dreamdb', 'a/../b']) {
      const result = await run(ingestArgs(backend, name))
      expect(result.code).toBe(1)
      expect(result.stderr).toMatch(/^dreamdb: ERR_MANIFEST_INVALID_REF_NAME: /)
    }
    const store = await openStore(backend)
    const refs: string[] = []
    for await (const name of store.listRefs('')) refs.push(name)
    expect(refs).toEqual([])
    await store.close()
  })
})

describe('the lease, in process, on a folder store', () => {
  it('is taken by one of many at once, renewed, released, lost when it outlives its renewal, and taken over by CAS', async () => {
    const store = await openStore(join(dir.path, 'store-lease'))
    let clock = 1_000_000
    const now = () => clock
    const attempts = await Promise.allSettled(
      Array.from({ length: 8 }, () => acquireIngestLease(store, 'x', { ttlMs: 100_000, now })),
    )
    const won = attempts.filter((a) => a.status === 'fulfilled')
    expect(won).toHaveLength(1)
    for (const a of attempts) {
      if (a.status === 'rejected') expect((a.reason as { code: string }).code).toBe('ERR_CLI_INGEST_LOCKED')
    }
    const lease = (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof acquireIngestLease>>>).value
    lease.assertHeld()
    // Time passes without a renewal (the timer runs every 25 s of real time): past half the
    // TTL, the holder must not commit any more.
    clock += 60_000
    expect(() => lease.assertHeld()).toThrow(expect.objectContaining({ code: 'ERR_CLI_INGEST_LEASE_LOST' }))
    expect(lease.signal.aborted).toBe(true)
    // Not expired yet for others (100 s): still refused; after expiry, taken over.
    await expect(acquireIngestLease(store, 'x', { ttlMs: 100_000, now })).rejects.toMatchObject({
      code: 'ERR_CLI_INGEST_LOCKED',
    })
    clock += 45_000
    const taker = await acquireIngestLease(store, 'x', { ttlMs: 100_000, now })
    expect(decodeLease((await store.readRef(leaseRef('x')))!.value)?.token).toBe(taker.holder.token)
    // The old holder's release does not delete the taker's lease.
    await lease.release()
    expect(await store.readRef(leaseRef('x'))).toBeDefined()
    await taker.release()
    expect(await store.readRef(leaseRef('x'))).toBeUndefined()
    await store.close()
  })
})

const endpoint = process.env.DREAMDB_TEST_S3_ENDPOINT
describe.skipIf(!endpoint)('two ingests of one dataset at once, on MinIO', () => {
  it('take turns with --wait, and a second without --wait fails fast; every record lands once', async () => {
    const bucket = `dreamdb-cli-lease-${Date.now().toString(36)}`
    const backend = `${endpoint}/${bucket}`
    const store = await openStore(backend, { createBucket: true })
    const first = start(ingestArgs(backend, 'd', '--json'))
    await first.waitFor(/committed train/)
    first.kill('SIGSTOP')
    try {
      const refused = await run(ingestArgs(backend, 'd'))
      expect(refused.code).toBe(4)
      expect(refused.stderr).toContain(
        `ERR_CLI_INGEST_LOCKED: Another ingest into 'd' is running: pid ${first.pid}`,
      )
    } finally {
      first.kill('SIGCONT')
    }
    const others = [0, 1].map(() => start(ingestArgs(backend, 'd', '--wait', '600', '--json')))
    const records = [await first.done, ...(await Promise.all(others.map((o) => o.done)))].map(ingested)
    expect(records.reduce((n, r) => n + r.ingested, 0)).toBe(240)
    await expectExactlyOnce(store, 'd')
    expect(await store.readRef(leaseRef('d'))).toBeUndefined()
    await store.close()
  })
})
