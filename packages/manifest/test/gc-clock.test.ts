/**
 * The two GC interleavings that need time to pass (design/0008), on a folder and on MinIO,
 * with the time injected through the clocks (`CommitOptions.now`, `GcOptions.now`) instead of
 * waited for:
 *
 * - a commit whose check of its objects is more than 20 minutes old checks them again before
 *   its ref write, so an object a GC deleted meanwhile is refused instead of committed;
 * - a GC paused for more than 60 s in the middle of a group of deletes, whose fence a waiting
 *   writer asked to yield and then took over: the writer freshens its objects and lands, and
 *   the GC, resuming, keeps them (each delete re-checks the object's age) and leaves the
 *   writer's fence as it is.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { openStore, type Store } from '@dreamdb/cas'
import { freshBucket, minioEndpoint, rejection } from '@dreamdb/cas-tests'
import type { CID } from 'multiformats/cid'
import { afterAll, describe, expect, it } from 'vitest'
import {
  type CommitOptions,
  collectGarbage,
  fsck,
  type GcReport,
  Repository,
  SWEEP_FENCE_REF,
} from '../src/index.js'
import { appendRecords, SCHEMA } from './helpers/records.js'

const MINUTE = 60_000
const HOUR = 60 * MINUTE

const cleanups: (() => Promise<void>)[] = []
afterAll(async () => {
  for (const c of cleanups) await c()
})

/** A store, and the resolution of the times its deletes re-check (ms; S3 counts whole seconds). */
type Open = () => Promise<{ store: Store; clockMs: number }>
function backends(): [string, Open][] {
  const out: [string, Open][] = [
    [
      'folder',
      async () => {
        const root = await mkdtemp(join(tmpdir(), 'dreamdb-gc-clock-'))
        cleanups.push(() => rm(root, { recursive: true, force: true }))
        return { store: await openStore(root), clockMs: 1 }
      },
    ],
  ]
  const endpoint = minioEndpoint()
  if (endpoint !== undefined)
    out.push([
      'MinIO',
      async () => {
        const store = await openStore(`${endpoint}/${await freshBucket(endpoint)}`)
        cleanups.push(() => store.close())
        return { store, clockMs: 1000 }
      },
    ])
  return out
}

/** `store` with one method replaced: a hook between a writer's or a GC's steps. */
function withMethod<K extends keyof Store>(
  store: Store,
  key: K,
  replace: (original: Store[K]) => Store[K],
): Store {
  const original = (store[key] as (...args: unknown[]) => unknown).bind(store) as Store[K]
  const replaced = replace(original)
  return new Proxy(store, {
    get(t, k) {
      if (k === key) return replaced
      const value = Reflect.get(t, k, t)
      return typeof value === 'function' ? value.bind(t) : value
    },
  })
}

const encode = (text: string) => new TextEncoder().encode(text)
const fenceOf = async (store: Store) =>
  JSON.parse(new TextDecoder().decode((await store.readRef(SWEEP_FENCE_REF))!.value))

/**
 * Append one record whose two field objects are `image` and `label`, stored before (dedup
 * hits to this writer: not in `written`, so its commit checks and freshens them).
 */
async function appendNaming(repo: Repository, [image, label]: CID[], options: CommitOptions) {
  const start = await repo.mintAnchors(1)
  return repo.commit(
    'corpus',
    {
      kind: 'append',
      buckets: [
        {
          records: 1,
          anchorRanges: [{ start, count: 1 }],
          fields: { image: { cid: image!, bytes: 7 }, label: { cid: label!, bytes: 7 } },
        },
      ],
    },
    options,
  )
}

/** A cutoff that every object stored so far is older than and every later write is not. */
async function cutoffAfterNow(resolutionMs: number): Promise<number> {
  const cutoff = Math.ceil((Date.now() + 1) / resolutionMs) * resolutionMs
  await sleep(cutoff - Date.now() + 20)
  return cutoff
}

/** MinIO's freshen is a copy in place, made only for objects older than this (0: always). */
async function withFreshenAfter(ms: number, run: () => Promise<void>): Promise<void> {
  const previous = process.env.DREAMDB_TEST_FRESHEN_AFTER_MS
  process.env.DREAMDB_TEST_FRESHEN_AFTER_MS = String(ms)
  try {
    await run()
  } finally {
    if (previous === undefined) delete process.env.DREAMDB_TEST_FRESHEN_AFTER_MS
    else process.env.DREAMDB_TEST_FRESHEN_AFTER_MS = previous
  }
}

describe.each(backends())('GC interleavings that need time, on %s', (_name, open) => {
  /**
   * The writer's first ref write is held while `minutes` pass on the test's clock and another
   * writer lands (so that write is refused and the commit tries again); `gc` runs then too.
   */
  async function slowCommit(minutes: number, gc: boolean) {
    const { store } = await open()
    const repo = new Repository(store)
    await repo.createDataset('corpus', { schema: SCHEMA })
    const objects = [await store.put(encode('image w')), await store.put(encode('label w'))]
    let skew = 0
    const clock = () => Date.now() + skew
    let report: GcReport | undefined
    let held = false
    const slow = withMethod(store, 'updateRef', (updateRef) => async (name, ...rest) => {
      if (name === 'corpus' && !held) {
        held = true
        skew = minutes * MINUTE
        await appendRecords(new Repository(store), 'corpus', 2, 'other')
        // Every unreachable object is old to this GC (the 1-hour floor, 2 hours on).
        if (gc) report = await collectGarbage(store, { graceMs: HOUR, now: clock, apply: true })
      }
      return updateRef(name, ...rest)
    })
    const checked: string[] = []
    const writer = withMethod(slow, 'has', (has) => async (cid, options) => {
      checked.push(cid.toString())
      return has(cid, options)
    })
    const commit = appendNaming(new Repository(writer), objects, { now: clock })
    return { store, repo, objects, commit, checked, report: () => report }
  }

  it('a commit whose check is over 20 minutes old checks its objects again before its ref write: one a GC deleted meanwhile is refused, and nothing lands', async () => {
    const { store, repo, objects, commit, report } = await slowCommit(120, true)
    const refused = await rejection(commit)
    expect(refused.code).toBe('ERR_MANIFEST_MISSING_OBJECT')
    expect(objects.map(String)).toContain(refused.cid)
    expect(report()!.sweep.cids).toEqual(expect.arrayContaining(objects.map(String)))
    // Only the other writer's records: without the re-check the commit lands, naming the
    // deleted objects, and fsck finds them missing.
    expect((await repo.resolve('corpus')).manifest.stats.records).toBe(2)
    const after = await fsck(store)
    expect(after.missing).toEqual([])
    expect(after.ok).toBe(true)
  }, 60_000)

  it.each([
    [19, 1],
    [21, 2],
  ])(
    'a commit retried %i minutes after its check checks each object %i time(s), and lands',
    async (minutes, times) => {
      const { repo, objects, commit, checked } = await slowCommit(minutes, false)
      const result = await commit
      expect(result.attempts).toBe(2)
      for (const cid of objects) expect(checked.filter((c) => c === cid.toString())).toHaveLength(times)
      expect((await repo.resolve('corpus')).manifest.stats.records).toBe(3)
    },
    60_000,
  )

  it('a GC paused over 60 s in a group of deletes, its fence taken over by a waiting writer: the writer lands, the GC resumes and keeps the objects the writer freshened', async () => {
    const { store, clockMs } = await open()
    await withFreshenAfter(0, async () => {
      const repo = new Repository(store)
      await repo.createDataset('corpus', { schema: SCHEMA })
      // Garbage: the two objects the writer will name (it put them earlier), four nobody names.
      const named = [await store.put(encode('image w')), await store.put(encode('label w'))]
      const others: CID[] = []
      for (let i = 0; i < 4; i++) others.push(await store.put(encode(`orphan ${i}`)))
      const cutoff = await cutoffAfterNow(clockMs)
      const isNamed = (cid: CID) => named.some((n) => n.equals(cid))

      // The GC deletes one object at a time (each judged old right before its delete), nobody's
      // garbage first, and stops after the first delete until the test resumes it.
      let paused!: () => void
      const atPause = new Promise<void>((resolve) => {
        paused = resolve
      })
      let resume!: () => void
      const resumed = new Promise<void>((resolve) => {
        resume = resolve
      })
      const pausing = withMethod(
        store,
        'deleteObjects',
        (deleteObjects) => (cids, options) =>
          (async function* () {
            const all: CID[] = []
            for await (const cid of cids) all.push(cid)
            const order = [...all.filter((c) => !isNamed(c)), ...all.filter(isNamed)]
            for (const [i, cid] of order.entries()) {
              if (i === 1) {
                paused()
                await resumed
              }
              yield* deleteObjects([cid], options)
            }
          })(),
      )
      const gc = collectGarbage(pausing, {
        graceMs: MINUTE,
        unsafeAllowShortGrace: true,
        now: () => cutoff + MINUTE,
        apply: true,
      })
      await atPause
      const sweeping = await fenceOf(store)
      expect(sweeping).toMatchObject({ state: 'sweeping' })

      // The writer's clock moves 15 s at each look: it asks the sweep to yield after 30 s,
      // and, the fence unwritten for 60 s more (the GC is paused), takes it over.
      let t = Date.now()
      const writerClock = () => {
        t += 15_000
        return t
      }
      const landed = await appendNaming(repo, named, { now: writerClock })
      expect(landed.attempts).toBe(1)
      expect(await fenceOf(store)).toMatchObject({
        state: 'idle',
        gc: sweeping.gc,
        yield: 'writer (stale fence taken over)',
      })

      resume()
      const report = await gc
      expect(report.sweep.objects).toBe(6)
      expect(report.deleted.objects).toBe(4)
      expect(report.keptFresh).toBe(2)
      // The GC's end of sweep leaves a fence taken over as it is.
      expect(await fenceOf(store)).toMatchObject({ state: 'idle', yield: 'writer (stale fence taken over)' })
      for (const cid of named) expect(await store.has(cid)).toBe(true)
      for (const cid of others) expect(await store.has(cid)).toBe(false)
      const after = await fsck(store)
      expect(after.missing).toEqual([])
      expect(after.ok).toBe(true)
      expect((await repo.resolve('corpus')).manifest.stats.records).toBe(1)
    })
  }, 60_000)
})
