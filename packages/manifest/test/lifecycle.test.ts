/**
 * Deleting refs by compare-and-swap, the one walker, fsck and GC on the manifest layer's
 * own objects (design/0008). The dataset package's lifecycle tests add field objects of
 * every family, compressed fields and concurrency on a folder and MinIO.
 */
import { openStore, type Store } from '@dreamdb/cas'
import { rejection } from '@dreamdb/cas-tests'
import type { CID } from 'multiformats/cid'
import { beforeEach, describe, expect, it } from 'vitest'
import { SWEEP_GROUP } from '../src/gc.js'
import {
  collectGarbage,
  deleteRef,
  digestKey,
  fsck,
  MIN_GRACE_MS,
  Repository,
  SWEEP_FENCE_REF,
  walkReachable,
} from '../src/index.js'
import { appendRecords, SCHEMA } from './helpers/records.js'

const HOUR = 3_600_000
/** A clock two hours ahead: with the 1-hour floor, every object looks old enough to collect. */
const later = () => Date.now() + 2 * HOUR
const old = { graceMs: HOUR, now: later }

async function layer(repo: Repository, ref: string, tag: string) {
  const { manifest } = await repo.resolve(ref)
  const buckets = []
  for await (const { bucket } of repo.buckets(manifest)) buckets.push(bucket)
  const first = buckets[0]!
  const bytes = new TextEncoder().encode(`predictions ${tag}`)
  const anchors = new TextEncoder().encode(`anchors ${tag}`)
  return await repo.commit(ref, {
    kind: 'layer',
    name: 'prediction',
    parent: 'image',
    field: { name: 'prediction', family: 'scalar', kind: 'categorical' },
    segments: [
      {
        records: first.records,
        anchorMin: first.anchorMin,
        anchorMax: first.anchorMax,
        fields: {
          prediction: { cid: await repo.store.put(bytes), bytes: bytes.byteLength },
          'prediction/anchors': { cid: await repo.store.put(anchors), bytes: anchors.byteLength },
        },
      },
    ],
  })
}

describe('lifecycle', () => {
  let store: Store
  let repo: Repository
  beforeEach(async () => {
    store = await openStore('memory://')
    repo = new Repository(store)
    await repo.createDataset('corpus', { schema: SCHEMA })
    await appendRecords(repo, 'corpus', 5, 'a')
  })

  it('deletes a branch by compare-and-swap; a concurrent move is a typed conflict, not lost', async () => {
    await repo.branch('sweep/a', 'corpus')
    const seen = await repo.readRef('sweep/a')
    await appendRecords(repo, 'sweep/a', 3, 'moved')
    const moved = await rejection(deleteRef(repo, 'sweep/a', { expect: seen!.manifest }))
    expect(moved.code).toBe('ERR_MANIFEST_REF_MOVED')
    expect(await repo.readRef('sweep/a')).toBeDefined()
    // A move between the delete's own read and its conditional delete is refused too.
    const racing = new Proxy(store, {
      get(target, key, receiver) {
        if (key === 'deleteRef')
          return async (name: string, version: string) => {
            await appendRecords(new Repository(target), name, 1, 'race')
            return target.deleteRef(name, version)
          }
        const value = Reflect.get(target, key, receiver)
        return typeof value === 'function' ? value.bind(target) : value
      },
    })
    const race = await rejection(new Repository(racing).deleteBranch('sweep/a'))
    expect(race.code).toBe('ERR_MANIFEST_REF_MOVED')
    expect((await repo.resolve('sweep/a')).manifest.stats.records).toBe(9)
    const deleted = await deleteRef(repo, 'sweep/a')
    expect(deleted.kind).toBe('branch')
    expect(await repo.readRef('sweep/a')).toBeUndefined()
    expect((await rejection(deleteRef(repo, 'sweep/a'))).code).toBe('ERR_MANIFEST_REF_NOT_FOUND')
  })

  it('deletes a snapshot only when forced, and never a hidden ref', async () => {
    await repo.snapshot('v1', 'corpus')
    expect((await rejection(deleteRef(repo, 'v1'))).code).toBe('ERR_MANIFEST_SNAPSHOT_IMMUTABLE')
    expect((await rejection(repo.deleteBranch('v1'))).code).toBe('ERR_MANIFEST_SNAPSHOT_IMMUTABLE')
    expect((await deleteRef(repo, 'v1', { force: true })).kind).toBe('snapshot')
    expect(await repo.readRef('v1')).toBeUndefined()
    for (const hidden of ['_dreamdb/anchor-counter', '_dreamdb/leases/ingest/corpus']) {
      expect((await rejection(deleteRef(repo, hidden, { force: true }))).code).toBe(
        'ERR_MANIFEST_INVALID_REF_NAME',
      )
    }
    expect(await store.readRef('_dreamdb/anchor-counter')).toBeDefined()
  })

  it('walks every kind of reference once, from user and hidden refs', async () => {
    await repo.branch('sweep/a', 'corpus')
    await layer(repo, 'sweep/a', 'a')
    await repo.snapshot('v1', 'corpus')
    const leaseObject = await store.put(new TextEncoder().encode('an object a lease names'))
    await store.createRef(
      '_dreamdb/leases/ingest/corpus',
      new TextEncoder().encode(
        JSON.stringify({ format: 'dreamdb.ingest-lease/1', pinned: leaseObject.toString() }),
      ),
    )
    const walk = await walkReachable(store)
    expect(walk.unreadableRefs).toEqual([])
    expect(walk.problems).toEqual([])
    expect(walk.refs.map((r) => [r.name, r.kind, r.hidden])).toEqual([
      ['_dreamdb/anchor-counter', 'anchor-counter', true],
      ['_dreamdb/leases/ingest/corpus', 'json', true],
      ['corpus', 'branch', false],
      ['sweep/a', 'branch', false],
      ['v1', 'snapshot', false],
    ])
    const kinds = [...walk.reached.values()].map((r) => r.kind)
    const count = (k: string) => kinds.filter((x) => x === k).length
    // create, append (corpus), layer (sweep/a)
    expect(count('manifest')).toBe(3)
    expect(count('timeline-node')).toBe(1)
    expect(count('segment-node')).toBe(1)
    // image and label of the bucket, prediction and its anchors
    expect(count('field')).toBe(4)
    expect(count('ref-object')).toBe(1)
    const fields = [...walk.reached.values()].filter((r) => r.kind === 'field').map((r) => r.field)
    expect(fields).toContainEqual({ name: 'prediction', family: 'scalar', part: 'anchors' })
    expect(fields).toContainEqual({ name: 'image', family: 'binary', part: null })
    // Every stored object is reached.
    const stored = []
    for await (const o of store.list()) stored.push(digestKey(o.cid))
    expect(stored.sort()).toEqual([...walk.reached.keys()].sort())
  })

  it('fsck names a missing object with the path that reached it, and an unreadable ref', async () => {
    await repo.branch('sweep/a', 'corpus')
    const { manifest } = await layer(repo, 'sweep/a', 'a')
    const clean = await fsck(store)
    expect(clean.ok).toBe(true)
    expect(clean.missing).toEqual([])
    const resolved = await repo.resolve('sweep/a')
    const segment = resolved.manifest.layers[0]!.segments!
    const leaf = await repo.leafBuckets(segment)
    const anchors = leaf[0]!.fields['prediction/anchors']!.cid
    for await (const _ of store.deleteObjects([anchors])) {
    }
    for (const verify of ['all', 'metadata'] as const) {
      const report = await fsck(store, { verify })
      expect(report.ok).toBe(false)
      expect(report.missing.map((m) => m.cid)).toEqual([anchors.toString()])
      expect(report.missing[0]!.via).toContain(`ref sweep/a > manifest ${manifest}`)
      expect(report.missing[0]!.via).toContain('prediction/anchors')
    }
    // A missing data object cannot hide references: GC still runs. A missing tree node or
    // manifest could, so GC refuses to delete anything.
    expect((await collectGarbage(store, { ...old })).sweep.objects).toBe(0)
    for await (const _ of store.deleteObjects([segment])) {
    }
    const refused = await rejection(collectGarbage(store, { ...old, apply: true }))
    expect(refused.code).toBe('ERR_MANIFEST_GC_REFUSED')
    expect(refused.message).toContain(segment.toString())
    await store.createRef('_dreamdb/mystery', new Uint8Array([0xff, 0x00]))
    const unknown = await fsck(store)
    expect(unknown.refs.unreadable.map((r) => r.name)).toEqual(['_dreamdb/mystery'])
  })

  it('GC: a floor on the grace period, a dry run by default, sweeps only unreachable old objects', async () => {
    expect((await rejection(collectGarbage(store, { graceMs: MIN_GRACE_MS - 1 }))).code).toBe(
      'ERR_MANIFEST_INVALID_GC_OPTION',
    )
    for (let i = 0; i < 3; i++) {
      await repo.branch(`sweep/${i}`, 'corpus')
      await layer(repo, `sweep/${i}`, String(i))
    }
    // An aborted append: objects that no commit references.
    const orphan = await store.put(new TextEncoder().encode('an aborted append'))
    const fresh = await collectGarbage(store)
    expect(fresh.sweep.objects).toBe(0)
    expect(fresh.young.objects).toBe(1)
    await repo.deleteBranch('sweep/0')
    await repo.deleteBranch('sweep/1')
    const dry = await collectGarbage(store, { ...old })
    expect(dry.dryRun).toBe(true)
    // Per deleted branch: its layer manifest, segment node, prediction and anchors objects.
    expect(dry.sweep.objects).toBe(2 * 4 + 1)
    expect(dry.sweep.cids).toContain(orphan.toString())
    expect((await fsck(store)).unreachable.objects).toBe(9)
    const applied = await collectGarbage(store, { ...old, apply: true })
    expect(applied.deleted.objects).toBe(9)
    expect(applied.deleted.bytes).toBe(applied.sweep.bytes)
    const after = await fsck(store)
    expect(after.ok).toBe(true)
    expect(after.unreachable.objects).toBe(0)
    expect((await repo.resolve('sweep/2')).manifest.layers.map((l) => l.name)).toEqual(['prediction'])
    expect((await collectGarbage(store, { ...old, apply: true })).deleted.objects).toBe(0)
  })

  it('GC re-reads refs between mark and sweep: a ref created meanwhile keeps its objects', async () => {
    await repo.branch('sweep/a', 'corpus')
    const { manifest } = await layer(repo, 'sweep/a', 'a')
    const target = await repo.readRef('sweep/a')
    await repo.deleteBranch('sweep/a')
    // The branch comes back (from another process) while GC lists the store.
    let listed = false
    const racing = new Proxy(store, {
      get(t, key, receiver) {
        if (key === 'list')
          return async function* (options: object) {
            yield* t.list(options)
            if (!listed) {
              listed = true
              await new Repository(t).branch('sweep/a', target!.manifest)
            }
          }
        const value = Reflect.get(t, key, receiver)
        return typeof value === 'function' ? value.bind(t) : value
      },
    })
    const report = await collectGarbage(racing, { ...old, apply: true })
    expect(report.remarked).toBeGreaterThan(0)
    expect(report.deleted.objects).toBe(0)
    expect((await fsck(store)).ok).toBe(true)
    expect((await repo.resolve('sweep/a')).target.manifest.toString()).toBe(manifest.toString())
  })

  it('the walker reads each shared object once however many refs reach it', async () => {
    for (let i = 0; i < 20; i++) await repo.branch(`b/${i}`, 'corpus')
    const read: string[] = []
    const watched = new Proxy(store, {
      get(t, key) {
        if (key === 'get')
          return (cid: CID, options?: object) => {
            read.push(cid.toString())
            return t.get(cid, options)
          }
        const value = Reflect.get(t, key, t)
        return typeof value === 'function' ? value.bind(t) : value
      },
    })
    const walk = await walkReachable(watched)
    expect(walk.refs.filter((r) => !r.hidden && r.kind === 'branch')).toHaveLength(21)
    // 2 manifests + 1 timeline node are read, each once; data objects are only named.
    const { manifest, target } = await repo.resolve('corpus')
    const metadata = [
      target.manifest.toString(),
      manifest.parents[0]!.toString(),
      manifest.timeline!.toString(),
    ]
    expect(read.sort()).toEqual(metadata.sort())
    expect(walk.objectsRead).toBe(3)
    const data: string[] = []
    for await (const { bucket } of repo.buckets(manifest))
      for (const object of Object.values(bucket.fields)) data.push(object.cid.toString())
    expect(data).toHaveLength(2)
    expect(
      [...walk.reached.values()]
        .filter((r) => r.kind === 'field')
        .map((r) => r.cid.toString())
        .sort(),
    ).toEqual(data.sort())
  })
})

describe('the sweep fence (design/0008)', () => {
  let store: Store
  let repo: Repository
  beforeEach(async () => {
    store = await openStore('memory://')
    repo = new Repository(store)
    await repo.createDataset('corpus', { schema: SCHEMA })
  })
  const encode = (value: object) => new TextEncoder().encode(JSON.stringify(value))
  const fence = async () =>
    JSON.parse(new TextDecoder().decode((await store.readRef(SWEEP_FENCE_REF))!.value))
  /** `count` objects no ref reaches. */
  const orphans = async (count: number) => {
    for (let i = 0; i < count; i++) await store.put(new TextEncoder().encode(`orphan ${i}`))
  }
  /** Short waits for a commit at a sweep (the writer asks it to yield after 50 ms; stale after 100). */
  const shortWaits = async (run: () => Promise<void>) => {
    process.env.DREAMDB_TEST_SWEEP_WAIT_MS = '50'
    try {
      await run()
    } finally {
      delete process.env.DREAMDB_TEST_SWEEP_WAIT_MS
    }
  }

  it('a GC meeting another GC sweeping refuses and deletes nothing; a fence left by a dead GC is taken over once stale', async () => {
    await shortWaits(async () => {
      await orphans(3)
      const now = Date.now()
      await store.createRef(
        SWEEP_FENCE_REF,
        encode({ state: 'sweeping', gc: 'other', since: now, beatAt: now }),
      )
      // The other GC is alive: it writes its fence again (here: after each read of it).
      const watching = new Proxy(store, {
        get(t, key) {
          if (key === 'readRef')
            return async (name: string, options?: object) => {
              const entry = await t.readRef(name, options)
              if (name === SWEEP_FENCE_REF && entry !== undefined)
                await t.updateRef(name, entry.value, entry.version)
              return entry
            }
          const value = Reflect.get(t, key, t)
          return typeof value === 'function' ? value.bind(t) : value
        },
      })
      const busy = await rejection(collectGarbage(watching, { ...old, apply: true }))
      expect(busy).toMatchObject({ code: 'ERR_MANIFEST_GC_BUSY', gc: 'other' })
      expect((await fsck(store)).unreachable.objects).toBe(3)
      // A dry run deletes nothing and does not need the fence.
      expect((await collectGarbage(store, { ...old })).sweep.objects).toBe(3)
      // Now it is dead: its fence stays unwritten, and is taken over once stale.
      const report = await collectGarbage(store, { ...old, apply: true })
      expect(report.deleted.objects).toBe(3)
      expect(await fence()).toMatchObject({ state: 'idle' })
      expect((await fence()).gc).not.toBe('other')
      // The fence is a hidden JSON ref without CIDs: fsck reads it and finds the store whole.
      expect((await fsck(store)).ok).toBe(true)
    })
  })

  it('a commit waiting on a long sweep asks it to yield: the GC stops before its next group of deletes (typed), the commit checks again and lands', async () => {
    await shortWaits(async () => {
      await orphans(SWEEP_GROUP + 10)
      // The GC's first group of deletes waits until the writer asks the sweep to yield.
      let asked!: () => void
      const yieldAsked = new Promise<void>((resolve) => {
        asked = resolve
      })
      let atSweep!: () => void
      const sweeping = new Promise<void>((resolve) => {
        atSweep = resolve
      })
      const gcStore = new Proxy(store, {
        get(t, key) {
          if (key === 'deleteObjects')
            return (cids: Parameters<Store['deleteObjects']>[0], options: object) =>
              (async function* () {
                atSweep()
                await yieldAsked
                yield* t.deleteObjects(cids, options)
              })()
          const value = Reflect.get(t, key, t)
          return typeof value === 'function' ? value.bind(t) : value
        },
      })
      const writerStore = new Proxy(store, {
        get(t, key) {
          if (key === 'updateRef')
            return async (name: string, ...rest: [Uint8Array, string, object?]) => {
              const written = await t.updateRef(name, ...rest)
              if (name === SWEEP_FENCE_REF) asked()
              return written
            }
          const value = Reflect.get(t, key, t)
          return typeof value === 'function' ? value.bind(t) : value
        },
      })
      const gc = rejection(collectGarbage(gcStore, { ...old, apply: true }))
      await sweeping
      await appendRecords(new Repository(writerStore), 'corpus', 4, 'w')
      const stopped = await gc
      expect(stopped).toMatchObject({
        code: 'ERR_MANIFEST_GC_INTERRUPTED',
        deleted: SWEEP_GROUP,
        doomed: SWEEP_GROUP + 10,
      })
      expect(await fence()).toMatchObject({ state: 'idle' })
      const after = await fsck(store)
      expect(after.ok).toBe(true)
      expect(after.unreachable.objects).toBe(10)
      expect((await repo.resolve('corpus')).manifest.stats.records).toBe(4)
    })
  })

  it('a commit meeting a fence its GC left (dead) takes it over once stale and lands', async () => {
    await shortWaits(async () => {
      const now = Date.now()
      await store.createRef(
        SWEEP_FENCE_REF,
        encode({ state: 'sweeping', gc: 'dead', since: now, beatAt: now }),
      )
      await appendRecords(repo, 'corpus', 2, 'w')
      expect(await fence()).toMatchObject({ state: 'idle', gc: 'dead' })
      expect((await repo.resolve('corpus')).manifest.stats.records).toBe(2)
    })
  })
})
