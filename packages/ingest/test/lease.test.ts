/**
 * Ingests of one dataset at once, each writing the shards it claimed (design/0006), in
 * process and fast: on a folder and, when the test run has one, on MinIO. Every path of a
 * claim: taken free, skipped while a live ingest holds it, waited for, taken over from a
 * process of this host that is gone and from another host's once expired, and lost by a
 * holder stopped past it. A store wrapper holds an ingest still (its dataset writes, or
 * everything, renewals included, like a stopped process), and the timings are options, so
 * that expiry takes about a second. An older DreamDB's lease on the whole dataset is still
 * respected. The lease itself (take, renew, lose, take over by compare-and-swap) is tested
 * against a real folder store with a fake clock.
 */
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { openStore, type Store } from '@dreamdb/cas'
import { Dataset } from '@dreamdb/dataset'
import { Repository } from '@dreamdb/manifest'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type IngestEvent, type IngestOptions, type IngestResult, ingest } from '../src/ingest.js'
import {
  acquireIngestLease,
  CLAIM_PREFIX,
  claimRef,
  decodeLease,
  holderToken,
  leaseRef,
  takeShardClaim,
} from '../src/lease.js'
import { type FixtureRecord, tempDir, writeSplit } from './digits.js'

let dir: { path: string; remove: () => Promise<void> }
let root: string
let fixtures: FixtureRecord[]
const key = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')
/** 2 shards of 12 rows. */
const TOTAL = 24

/** The store with each write that `around` is given (method, args, the write itself) done through it. */
function aroundWrites(
  store: Store,
  around: (method: string, args: unknown[], write: () => unknown) => unknown,
): Store {
  const writes = new Set(['put', 'createRef', 'updateRef', 'deleteRef'])
  return new Proxy(store, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown
      if (typeof value !== 'function') return value
      const method = value as (...args: unknown[]) => unknown
      if (!writes.has(String(prop))) return method.bind(target)
      return (...args: unknown[]) => around(String(prop), args, () => method.apply(target, args))
    },
  })
}

/**
 * A store whose writes can be held: `hold()` makes every write that `which` selects wait
 * until `release()`, as a process stopped mid-way would.
 */
function holdable(store: Store, which: (method: string, name: unknown) => boolean) {
  let gate: Promise<void> | undefined
  let open = () => {}
  return {
    store: aroundWrites(store, (method, args, write) =>
      gate !== undefined && which(method, args[0]) ? gate.then(write) : write(),
    ),
    hold: () => {
      gate ??= new Promise<void>((resolve) => {
        open = resolve
      })
    },
    release: () => {
      gate = undefined
      open()
    },
  }
}

/** A ref of ingest's own: a claim, a lease, the anchor counter. */
const isClaim = (name: unknown) => typeof name === 'string' && name.startsWith('_dreamdb/')

/** Writes of the dataset itself: objects and its ref, not the claims or the anchor counter. */
const datasetWrites = (_method: string, name: unknown) => !isClaim(name)

/** Small chunks, one at a time: an ingest of these shards makes 6 commits; claims polled often. */
async function run(
  store: Store,
  dataset: string,
  options: Partial<IngestOptions> = {},
): Promise<IngestResult> {
  return await ingest(new Repository(store), {
    root,
    dataset,
    splits: ['train'],
    embedding: { kind: 'column', column: 'embedding' },
    batchRecords: 4,
    concurrency: 1,
    cwd: dir.path,
    ...options,
    lease: { pollMs: 20, ...options.lease },
  })
}

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

/** A promise for the first event of `kind`, and the callback that resolves it. */
function first<K extends IngestEvent['kind']>(kind: K) {
  let resolve = (_: Extract<IngestEvent, { kind: K }>) => {}
  const seen = new Promise<Extract<IngestEvent, { kind: K }>>((r) => {
    resolve = r
  })
  let done = false
  const onProgress = (event: IngestEvent) => {
    if (!done && event.kind === kind) {
      done = true
      resolve(event as Extract<IngestEvent, { kind: K }>)
    }
  }
  return { seen, onProgress }
}

/** Claims (and leases) left in a store. */
async function leftovers(store: Store): Promise<string[]> {
  const names: string[] = []
  for await (const name of store.listRefs('_dreamdb/leases/')) names.push(name)
  return names
}

/** A holder record as another ingest (or an older DreamDB) would write it. */
const holderBytes = (format: string, host: string, pid: number, expires: number, extra: object = {}) =>
  new TextEncoder().encode(
    JSON.stringify({
      format,
      ...extra,
      host,
      pid,
      token: 'elsewhere',
      command: 'dreamdb ingest --root /data/in --splits train',
      acquired: Date.now() - 5000,
      renewed: Date.now(),
      expires,
    }),
  )
const SHARD0 = 'data/train-00000-of-00002.parquet'
const SHARD1 = 'data/train-00001-of-00002.parquet'

/**
 * The races, on a folder store or on MinIO (`waiting`: also an ingest whose shards are all
 * held; the waiting itself does not depend on the store, so MinIO's run leaves it out).
 */
function races(open: () => Promise<Store>, { waiting: andWaiting = true } = {}) {
  it(`two at once split the shards${andWaiting ? '; one whose shards are all held waits, then finds them done' : ''}`, async () => {
    const stores = await Promise.all([open(), open()])
    const a = holdable(stores[0]!, datasetWrites)
    try {
      // Started together: each claims a shard (the second finds the first's taken).
      const [x, y] = await Promise.all([run(a.store, 'd'), run(stores[1]!, 'd')])
      expect(x.records.ingested + y.records.ingested).toBe(TOTAL)
      expect(x.records.ingested).toBeGreaterThan(0)
      expect(y.records.ingested).toBeGreaterThan(0)
      for (const r of [x, y])
        expect(r.records).toMatchObject({ total: TOTAL, skipped: TOTAL - r.records.ingested })
      await expectExactlyOnce(stores[1]!, 'd')
      if (!andWaiting) return

      // One holds both shards' claims, held still after its first commit (alive: its claims
      // renewed, not writing); the second finds nothing free, waits, and returns when the
      // first is done, with everything in.
      const committed = first('chunk')
      let held = false
      const running = run(a.store, 'e', {
        concurrency: 6,
        onProgress: (e) => {
          committed.onProgress(e)
          if (e.kind === 'chunk' && !held) {
            held = true
            a.hold()
          }
        },
      })
      await committed.seen
      const waiting = first('claims-wait')
      // What the second sees of the first's work: the rows in when it planned, then the rest.
      let seenByOthers = 0
      const second = run(stores[1]!, 'e', {
        onProgress: (e) => {
          waiting.onProgress(e)
          if (e.kind === 'planned') seenByOthers += e.skipped
          if (e.kind === 'others') seenByOthers += e.records
        },
      })
      const seen = await waiting.seen
      expect(seen.shards.map((s) => s.shard)).toContain(SHARD1)
      expect(seen.shards[0]!.holder).toMatchObject({ pid: process.pid, host: hostname() })
      a.release()
      expect((await running).records).toEqual({ ingested: TOTAL, skipped: 0, total: TOTAL })
      expect((await second).records).toEqual({ ingested: 0, skipped: TOTAL, total: TOTAL })
      expect(seenByOthers).toBe(TOTAL)
      await expectExactlyOnce(stores[1]!, 'e')
      expect(await leftovers(stores[1]!)).toEqual([])
    } finally {
      a.release()
      for (const s of stores) await s.close()
    }
  })
}

beforeAll(async () => {
  dir = await tempDir()
  root = join(dir.path, 'hf')
  fixtures = await writeSplit(root, { split: 'train', shards: 2, rows: 12, first: 0 })
})
afterAll(async () => dir?.remove())

describe('ingests of one dataset at once, on a folder', () => {
  races(() => openStore(join(dir.path, 'store-races')))

  it("a claim of a process of this host that is gone is taken over at once; another host's once expired", async () => {
    const store = await openStore(join(dir.path, 'store-dead'))
    const claim = (dataset: string, shard: string, host: string, pid: number, expires: number) =>
      holderBytes('dreamdb.ingest-claim/1', host, pid, expires, { dataset, shard })
    // A process of this host that is gone (it ran and exited), its claim not expired.
    const gone = spawnSync(process.execPath, ['-e', '']).pid
    await store.createRef(claimRef('d', SHARD0), claim('d', SHARD0, hostname(), gone, Date.now() + 600_000))
    const taken = first('lease-taken-over')
    const records = (await run(store, 'd', { onProgress: taken.onProgress })).records
    expect(await taken.seen).toMatchObject({ why: 'dead', holder: { pid: gone, host: hostname() } })
    expect(records).toEqual({ ingested: TOTAL, skipped: 0, total: TOTAL })

    // A live claim of another machine: that shard is left to it, the other one written;
    // when it expires (it stopped renewing: its machine died), it is taken over.
    await store.createRef(claimRef('e', SHARD1), claim('e', SHARD1, 'gpu-node-7', 4242, Date.now() + 500))
    const events: string[] = []
    const result = await run(store, 'e', {
      onProgress: (e) => {
        if (e.kind === 'claims-wait')
          events.push(`wait ${e.shards.map((s) => `${s.shard} ${s.holder.host}`)}`)
        if (e.kind === 'lease-taken-over') events.push(`took ${e.why} ${e.holder.host}`)
        if (e.kind === 'chunk') events.push(`chunk ${e.shard}`)
      },
    })
    expect(result.records).toEqual({ ingested: TOTAL, skipped: 0, total: TOTAL })
    // Shard 0 first (shard 1 is held), then shard 1 once taken over; waiting between the
    // two when shard 0 was done before the claim expired.
    const took = events.indexOf('took expired gpu-node-7')
    expect(took).toBeGreaterThan(0)
    expect(events.slice(0, took).filter((e) => e !== `wait ${SHARD1} gpu-node-7`)).toEqual(
      Array(3).fill(`chunk ${SHARD0}`),
    )
    expect(events.slice(took + 1)).toEqual(Array(3).fill(`chunk ${SHARD1}`))
    await expectExactlyOnce(store, 'e')
    expect(await leftovers(store)).toEqual([])
    await store.close()
  })

  it('a live ingest lease of an older DreamDB is refused (or waited for); an expired one is not in the way', async () => {
    const store = await openStore(join(dir.path, 'store-old'))
    const entry = await store.createRef(
      leaseRef('d'),
      holderBytes('dreamdb.ingest-lease/1', 'gpu-node-7', 4242, Date.now() + 600_000),
    )
    await expect(run(store, 'd')).rejects.toMatchObject({
      code: 'ERR_INGEST_LOCKED',
      message: expect.stringMatching(
        /^Another ingest into 'd' is running: pid 4242 on gpu-node-7, since .*\(dreamdb ingest --root \/data\/in --splits train\)/,
      ),
      hint: expect.stringContaining("an older DreamDB's"),
    })
    await store.updateRef(
      leaseRef('d'),
      holderBytes('dreamdb.ingest-lease/1', 'gpu-node-7', 4242, Date.now() + 300),
      entry.version,
    )
    const waiting = first('lease-wait')
    const result = await run(store, 'd', { lease: { waitMs: 60_000 }, onProgress: waiting.onProgress })
    expect((await waiting.seen).holder).toMatchObject({ host: 'gpu-node-7', pid: 4242 })
    expect(result.records).toEqual({ ingested: TOTAL, skipped: 0, total: TOTAL })
    await store.close()
  })

  /**
   * An ingest of `store` that is stopped (`stop`) once its first chunk is committed, and one of
   * `other` that takes its claim over once it has expired: the stopped one's outcome (its
   * error, once the caller lets it go on) and the taker's result.
   */
  async function stoppedAndTakenOver(
    store: Store,
    other: Store,
    stop: () => void,
    options: Partial<IngestOptions> = {},
  ) {
    const ttlMs = 1000
    const committed = first('chunk')
    let stopped = false
    const outcome = run(store, 'd', {
      ...options,
      lease: { ttlMs, renewMs: 100 },
      onProgress: (e) => {
        committed.onProgress(e)
        if (e.kind === 'chunk' && !stopped) {
          stopped = true
          stop()
        }
      },
    }).then(
      () => undefined,
      (error: unknown) => error,
    )
    await committed.seen
    await delay(ttlMs + 100)
    const taken = first('lease-taken-over')
    const second = await run(other, 'd', { onProgress: taken.onProgress })
    expect(await taken.seen).toMatchObject({ why: 'expired', holder: { pid: process.pid } })
    return { outcome, second }
  }

  it('a holder stopped past its claim loses it: it stops with ERR_INGEST_LEASE_LOST instead of committing on', async () => {
    const backend = join(dir.path, 'store-lost')
    // Everything held, claim renewals included: a stopped process.
    const a = holdable(await openStore(backend), () => true)
    const other = await openStore(backend)
    try {
      const { outcome, second } = await stoppedAndTakenOver(a.store, other, a.hold, { splits: ['train'] })
      expect(second.records.total).toBeGreaterThanOrEqual(TOTAL)
      a.release()
      expect(await outcome).toMatchObject({
        code: 'ERR_INGEST_LEASE_LOST',
        message: expect.stringMatching(/^Lost the claim on data\/train-0000[01]-of-00002\.parquet of 'd'/),
      })
    } finally {
      a.release()
      await a.store.close()
    }
    // Every record is in, once: a commit the stopped one had in flight meets the takeover's
    // commits of the same rows and does not land (design/0006).
    await expectExactlyOnce(other, 'd')
    await other.close()
  })

  it('a holder stopped inside its commit, past its claim, wakes to find its rows committed by the taker: it lands nothing and stops with ERR_INGEST_LEASE_LOST', async () => {
    const backend = join(dir.path, 'store-inside')
    // The stopped process: its claim renewals fail (it sends none), and its branch's swap is
    // held, after the commit checked the claim and stored its objects and its manifest.
    const store = await openStore(backend)
    let stopped = false
    const renewals = aroundWrites(store, (method, args, write) =>
      stopped && method === 'updateRef' && isClaim(args[0]) ? Promise.reject(new Error('stopped')) : write(),
    )
    const swaps = holdable(renewals, (method, name) => method === 'updateRef' && !isClaim(name))
    const other = await openStore(backend)
    try {
      const { outcome, second } = await stoppedAndTakenOver(swaps.store, other, () => {
        stopped = true
        swaps.hold()
      })
      expect(second.records.total).toBe(TOTAL)
      // The stopped one's swap goes out now, against the head it read before the takeover.
      swaps.release()
      expect(await outcome).toMatchObject({
        code: 'ERR_INGEST_LEASE_LOST',
        message: expect.stringMatching(
          /^Lost the claim on data\/train-0000[01]-of-00002\.parquet of 'd': rows \d+-\d+ of data\/train-0000[01]-of-00002\.parquet were committed by another ingest meanwhile/,
        ),
      })
    } finally {
      swaps.release()
      await store.close()
    }
    await expectExactlyOnce(other, 'd')
    await other.close()
  })
})

describe('claims and bad dataset names', () => {
  it('a name that cannot be a dataset is refused before anything is claimed', async () => {
    const store = await openStore(join(dir.path, 'store-names'))
    for (const name of ['_dreamdb', 'a/../b']) {
      await expect(run(store, name)).rejects.toMatchObject({ code: 'ERR_MANIFEST_INVALID_REF_NAME' })
    }
    const refs: string[] = []
    for await (const name of store.listRefs('')) refs.push(name)
    expect(refs).toEqual([])
    await store.close()
  })
})

describe('the lease and claims, in process, on a folder store', () => {
  it('one of many takers wins a claim; claim refs of datasets a and a/b do not collide', async () => {
    const store = await openStore(join(dir.path, 'store-claims'))
    const takes = await Promise.all(
      Array.from({ length: 8 }, () => takeShardClaim(store, 'a', SHARD0, holderToken(), { ttlMs: 100_000 })),
    )
    const won = takes.flatMap((t) => ('lease' in t ? [t.lease] : []))
    expect(won).toHaveLength(1)
    for (const t of takes) if ('busy' in t) expect(t.busy.token).toBe(won[0]!.holder.token)
    const nested = await takeShardClaim(store, 'a/b', SHARD0, holderToken())
    expect('lease' in nested).toBe(true)
    expect(claimRef('a', SHARD0).startsWith(CLAIM_PREFIX)).toBe(true)
    expect(claimRef('a', SHARD0)).not.toBe(claimRef('a/b', SHARD0))
    await won[0]!.release()
    if ('lease' in nested) await nested.lease.release()
    expect(await leftovers(store)).toEqual([])
    await store.close()
  })

  it('createFirst: a free claim costs no read; many takers, one winner; a held claim is busy, an expired one taken over', async () => {
    const store = await openStore(join(dir.path, 'store-create-first'))
    const reads: string[] = []
    const counted = new Proxy(store, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target) as unknown
        if (typeof value !== 'function') return value
        return (...args: unknown[]) => {
          if (prop === 'readRef') reads.push(String(args[0]))
          return (value as (...a: unknown[]) => unknown).apply(target, args)
        }
      },
    }) as Store
    let clock = 1_000_000
    const options = { ttlMs: 100_000, now: () => clock, createFirst: true }
    const first = await takeShardClaim(counted, 'a', SHARD0, holderToken(), options)
    expect('lease' in first).toBe(true)
    expect(reads).toEqual([])
    const takes = await Promise.all(
      Array.from({ length: 8 }, () => takeShardClaim(counted, 'a', SHARD1, holderToken(), options)),
    )
    const won = takes.flatMap((t) => ('lease' in t ? [t.lease] : []))
    expect(won).toHaveLength(1)
    for (const t of takes) if ('busy' in t) expect(t.busy.token).toBe(won[0]!.holder.token)
    // Held and live: busy, naming its holder.
    const held = await takeShardClaim(counted, 'a', SHARD0, holderToken(), options)
    expect('busy' in held && held.busy.token).toBe('lease' in first && first.lease.holder.token)
    // Expired: taken over by compare-and-swap.
    clock += 200_000
    const over = await takeShardClaim(counted, 'a', SHARD0, holderToken(), options)
    expect('lease' in over).toBe(true)
    if ('lease' in first) await first.lease.release()
    if ('lease' in over) await over.lease.release()
    await won[0]!.release()
    expect(await leftovers(store)).toEqual([])
    await store.close()
  })

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
      if (a.status === 'rejected') expect((a.reason as { code: string }).code).toBe('ERR_INGEST_LOCKED')
    }
    const lease = (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof acquireIngestLease>>>).value
    lease.assertHeld()
    // Time passes without a renewal (the timer runs every 25 s of real time): past half the
    // TTL, the holder must not commit any more.
    clock += 60_000
    expect(() => lease.assertHeld()).toThrow(expect.objectContaining({ code: 'ERR_INGEST_LEASE_LOST' }))
    expect(lease.signal.aborted).toBe(true)
    // Not expired yet for others (100 s): still refused; after expiry, taken over.
    await expect(acquireIngestLease(store, 'x', { ttlMs: 100_000, now })).rejects.toMatchObject({
      code: 'ERR_INGEST_LOCKED',
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
describe.skipIf(!endpoint)('ingests of one dataset at once, on MinIO', () => {
  const bucket = `dreamdb-ingest-claims-${Date.now().toString(36)}`
  let created = false
  races(
    async () => {
      const store = await openStore(`${endpoint}/${bucket}`, { createBucket: !created })
      created = true
      return store
    },
    { waiting: false },
  )
})
