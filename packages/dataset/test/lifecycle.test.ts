/**
 * Lifecycle on real datasets (design/0008), on a folder and on MinIO:
 *
 * - a crafted store with every kind of reference (manifests and their parents, timeline
 *   nodes, buckets' binary/embedding/scalar objects, a compressed field's codes and rerank
 *   vectors, its spatial index and compressor, scalar and compressed embedding layers, a
 *   lease): the walker reaches every stored object, and deleting any one reachable object by
 *   hand makes fsck name it;
 * - a sweep of 10 branches, 9 deleted: GC frees exactly their layers' objects;
 * - an append whose dedup-hit object a GC deletes before the commit's check (design/0008's S3
 *   window, injected by a store hook) puts it again and lands, and so does a layer add; one
 *   whose object stays missing refuses after two tries, with nothing committed;
 * - GC with writers in explicit steps (aborts by a store hook after N puts, GCs given their
 *   cutoff): an aborted append's garbage is deleted once old, its retry after the GC lands,
 *   and a retry's dedup hits on old garbage (the freshen) keep it from a GC run between the
 *   retry's check and its ref move;
 * - a GC racing appends, layer adds and deletes and aborted appends with their retries:
 *   fsck whole, every acknowledged record and kept layer reads back, exactly the old garbage
 *   swept. Nothing depends on the machine's pace: what is old is fixed before the race.
 */
import { mkdtemp, rename, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { openStore, type Store } from '@dreamdb/cas'
import { freshBucket, minioEndpoint } from '@dreamdb/cas-tests'
import {
  collectGarbage,
  digestKey,
  fsck,
  type GcReport,
  type Reached,
  SWEEP_FENCE_REF,
  walkReachable,
} from '@dreamdb/manifest'
import { CID } from 'multiformats/cid'
import { afterAll, describe, expect, it } from 'vitest'
import { Dataset, trainEmbeddingCodec } from '../src/index.js'
import { record, SCHEMA } from './helpers.js'

const HOUR = 3_600_000
const SWEEP_BRANCHES = 10
/**
 * The GC race's sizes: one round in the suite. tools/torture's gc-under-writers scenario runs
 * the same test with larger ones (JSON in DREAMDB_GC_RACE), its long form.
 */
const RACE: { rounds: number; appends: number; layers: number; aborts: number } = {
  rounds: 1,
  appends: 4,
  layers: 4,
  aborts: 3,
  ...(JSON.parse(process.env.DREAMDB_GC_RACE ?? '{}') as object),
}
/** Stops a hung race only: 30 s a round at the suite's size, scaled by the writes. */
const RACE_TIMEOUT_MS = 30_000 * RACE.rounds * Math.max(1, (RACE.appends + RACE.layers + RACE.aborts) / 11)
/**
 * Any grace: the GCs below are each given their cutoff (`now` = cutoff + grace), so what is
 * old is decided by the test's steps, never by how fast a loaded machine ran them.
 */
const GRACE_MS = 60_000
/** Every object looks two hours old to a GC with the 1-hour floor: the test's stand-in for ageing. */
const aged = { graceMs: HOUR, now: () => Date.now() + 2 * HOUR }

interface Backend {
  store: Store
  /**
   * The resolution of the times the sweep's re-check reads, ms: a file's mtime (ns; 1 here);
   * S3's Last-Modified header counts whole seconds.
   */
  clockMs: number
  /** Move an object aside (and back): a folder renames the file; S3 deletes and re-puts it. */
  hide(reached: Reached): Promise<() => Promise<void>>
}

const cleanups: (() => Promise<void>)[] = []
afterAll(async () => {
  for (const c of cleanups) await c()
})

async function backends(): Promise<[string, () => Promise<Backend>][]> {
  const out: [string, () => Promise<Backend>][] = [
    [
      'folder',
      async () => {
        const root = await mkdtemp(join(tmpdir(), 'dreamdb-lifecycle-'))
        cleanups.push(() => rm(root, { recursive: true, force: true }))
        const store = await openStore(root)
        return {
          store,
          clockMs: 1,
          async hide(reached) {
            const hex = digestKey(reached.cid)
            const path = join(root, 'objects', 'sha2-256', hex.slice(0, 2), hex)
            await rename(path, `${path}.aside`)
            return () => rename(`${path}.aside`, path)
          },
        }
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
        return {
          store,
          clockMs: 1000,
          async hide(reached) {
            const bytes = await store.get(reached.cid)
            for await (const _ of store.deleteObjects([reached.cid])) {
            }
            return async () => {
              await store.put(bytes)
            }
          },
        }
      },
    ])
  return out
}

/** `store` with one method replaced: a hook between a writer's steps. */
function withMethod<K extends keyof Store>(
  store: Store,
  key: K,
  replace: (original: Store[K]) => Store[K],
): Store {
  const replaced = replace((store[key] as (...a: unknown[]) => unknown).bind(store) as Store[K])
  return new Proxy(store, {
    get(target, k) {
      if (k === key) return replaced
      const value = Reflect.get(target, k, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}

/** Delete objects unconditionally (a GC's sweep that has already judged them). */
async function drop(store: Store, cids: CID[]): Promise<void> {
  for await (const _ of store.deleteObjects(cids)) {
  }
}

/**
 * `store` whose first `has` (the commit's check of a dedup hit) deletes the object it asks
 * about before answering: a GC's delete landing between a writer's dedup hit and its check.
 */
function deletingFirstChecked(store: Store): { racing: Store; taken: CID[] } {
  const taken: CID[] = []
  const racing = withMethod(store, 'has', (has) => async (cid, options) => {
    if (taken.length === 0) {
      taken.push(cid)
      await drop(store, [cid])
    }
    return has(cid, options)
  })
  return { racing, taken }
}

/** A GC that deletes what no ref reaches and was last modified before `cutoff`. */
function gcAt(store: Store, cutoff: number): Promise<GcReport> {
  return collectGarbage(store, {
    graceMs: GRACE_MS,
    unsafeAllowShortGrace: true,
    now: () => cutoff + GRACE_MS,
    apply: true,
  })
}

/**
 * A cutoff that every object stored so far is older than and every object stored from now on
 * is not: the next multiple of the store's clock resolution, waited for, and 20 ms more (a
 * file's mtime comes from the kernel's coarse clock, a tick behind).
 */
async function cutoffAfterNow(resolutionMs: number): Promise<number> {
  const cutoff = Math.ceil((Date.now() + 1) / resolutionMs) * resolutionMs
  await sleep(cutoff - Date.now() + 20)
  return cutoff
}

/** The digests of the stored objects that no ref reaches. */
async function unreachable(store: Store): Promise<Set<string>> {
  const { reached } = await walkReachable(store)
  const out = new Set<string>()
  for await (const { cid } of store.list()) if (!reached.has(digestKey(cid))) out.add(digestKey(cid))
  return out
}

/**
 * An append of `ids` to `ref` that the store aborts once `puts` of its objects are stored (by
 * count, not by a timer): its objects so far are left as garbage, and nothing is committed.
 */
async function abortedAppend(
  store: Store,
  ref: string,
  ids: number[],
  { puts, bucketRecords }: { puts: number; bucketRecords: number },
): Promise<void> {
  const controller = new AbortController()
  let stored = 0
  const aborting = withMethod(
    store,
    'putMany',
    (putMany) => (items, options) =>
      (async function* () {
        for await (const cid of putMany(items, options)) {
          yield cid
          if (++stored === puts) controller.abort()
        }
      })(),
  )
  const ds = await Dataset.openRef(ref, { backend: aborting })
  const error = await ds.appendMany(ids.map(record), { bucketRecords, signal: controller.signal }).then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error).toMatchObject({ name: 'AbortError' })
  expect(stored).toBeGreaterThanOrEqual(puts)
}

/** fsck finds nothing missing or corrupt, and each ref iterates exactly these record ids. */
async function expectWhole(store: Store, refs: Record<string, number[]>): Promise<void> {
  const report = await fsck(store)
  expect(report.missing).toEqual([])
  expect(report.corrupt).toEqual([])
  expect(report.ok).toBe(true)
  for (const [ref, ids] of Object.entries(refs))
    expect(await idsOf(store, ref), ref).toEqual([...ids].sort((x, y) => x - y))
}

/** Run with S3 dedup hits freshening objects of any age (10 minutes outside tests). */
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

async function anchorsOf(ds: Dataset): Promise<bigint[]> {
  const anchors: bigint[] = []
  for await (const batch of ds.iterArrowBatches({ fields: ['label'], batchSize: 1000 }))
    anchors.push(...(batch.getChild('_anchor')!.toArray() as BigUint64Array))
  return anchors
}

/** Every record id a ref iterates (verified reads), from the embedding's first component. */
async function idsOf(store: Store, ref: string): Promise<number[]> {
  const ds = await Dataset.openRef(ref, { backend: store })
  const ids: number[] = []
  for await (const batch of ds.iterArrowBatches({ fields: ['embedding', 'image'], batchSize: 500 })) {
    const column = batch.getChild('embedding')!
    for (let i = 0; i < batch.numRows; i++) ids.push((column.get(i) as { get(k: number): number }).get(0))
  }
  return ids.sort((a, b) => a - b)
}

const category = (r: Reached): string =>
  r.kind === 'field' ? `field ${r.field!.family} ${r.field!.part ?? '(values)'}` : r.kind

describe.each(await backends())('lifecycle on %s', (backendName, open) => {
  it('the walker reaches every kind of reference, and fsck names any one reachable object deleted by hand', async () => {
    const { store, hide } = await open()
    const ds = await Dataset.create('corpus', { backend: store, schema: SCHEMA })
    // Images in several fragments per bucket (`image`, `image/fragment-1`, ...; issue #13).
    await ds.appendMany(
      Array.from({ length: 60 }, (_, i) => record(i)),
      { bucketRecords: 20, fragmentBytes: 64 },
    )
    await ds.snapshot('v1')
    const compressed = await ds.branch('compressed')
    await compressed.migrate({ field: 'embedding', algorithm: 'dreamdb.ivf-l2', lists: 2, rerank: true })
    const sweep = await ds.branch('sweep/a')
    const anchors = await anchorsOf(ds)
    await sweep.addScalarLayer(
      'prediction',
      'embedding',
      'categorical',
      anchors.map((a, i) => [a, `p${i % 3}`]),
    )
    const vectors = anchors.map((_, i) => Array.from({ length: 8 }, (_, d) => Math.cos(i + d)))
    const codec = await trainEmbeddingCodec(vectors, {
      backend: store,
      algorithm: 'dreamdb.ivf-l2',
      dim: 8,
      lists: 2,
    })
    await sweep.addEmbeddingLayer({
      name: 'student',
      parentField: 'embedding',
      dim: 8,
      algorithm: 'dreamdb.ivf-l2',
      spatialIndex: codec.spatialIndex,
      compressor: codec.compressor,
      rerank: true,
      samples: anchors.map((a, i) => [a, vectors[i]!] as const),
    })
    // A lease (the CLI's ingest lease shape) naming a manifest only it reaches (its branch
    // deleted) and a raw object: a hidden ref, walked like the others.
    const scratch = await Dataset.create('scratch', { backend: store, schema: SCHEMA })
    const pinned = await scratch.appendMany([record(1000)])
    await ds.repository.deleteBranch('scratch')
    const note = await store.put(new TextEncoder().encode('a note the lease names'))
    await store.createRef(
      '_dreamdb/leases/ingest/corpus',
      new TextEncoder().encode(
        JSON.stringify({
          format: 'dreamdb.ingest-lease/1',
          host: 'h',
          pid: 1,
          token: 't',
          expires: 0,
          pinned,
          note: note.toString(),
        }),
      ),
    )
    const walk = await walkReachable(store)
    expect(walk.problems).toEqual([])
    expect(walk.unreadableRefs).toEqual([])
    const byCategory = new Map<string, Reached>()
    for (const r of walk.reached.values()) if (!byCategory.has(category(r))) byCategory.set(category(r), r)
    expect([...byCategory.keys()].sort()).toEqual(
      expect.arrayContaining([
        'compressor',
        'field binary (values)',
        'field embedding (values)',
        'field scalar (values)',
        'field binary index',
        'field binary fragment-1',
        'field embedding anchors',
        'field embedding vectors',
        'manifest',
        'ref-object',
        'segment-node',
        'spatial-index',
        'timeline-node',
      ]),
    )
    // Compressed fields: codes and the kept full vectors are parts of their field.
    expect([...byCategory.keys()].filter((k) => k.startsWith('field embedding ')).length).toBeGreaterThan(2)
    // The walk leaves nothing stored unexplained (every object this store holds is reached).
    const clean = await fsck(store)
    expect(clean.ok).toBe(true)
    expect(clean.unreachable.objects).toBe(0)
    expect(clean.reachable.objects).toBe(clean.stored.objects)

    for (const [what, reached] of byCategory) {
      const restore = await hide(reached)
      const report = await fsck(store, { verify: 'metadata' })
      expect(report.ok, what).toBe(false)
      expect(
        report.missing.map((m) => m.cid),
        what,
      ).toContain(reached.cid.toString())
      await restore()
    }
    expect((await fsck(store)).ok).toBe(true)
  }, 240_000)

  // 10 branches (the lifecycle bench measures a sweep of 100 and what GC frees at scale).
  it(`after deleting ${SWEEP_BRANCHES - 1} of ${SWEEP_BRANCHES} sweep branches, GC frees exactly their prediction objects`, async () => {
    const { store } = await open()
    const ds = await Dataset.create('corpus', { backend: store, schema: SCHEMA })
    await ds.appendMany(
      Array.from({ length: 40 }, (_, i) => record(i)),
      { bucketRecords: 20 },
    )
    const anchors = await anchorsOf(ds)
    for (let b = 0; b < SWEEP_BRANCHES; b++) {
      const branch = await ds.branch(`sweep/run-${b}`)
      await branch.addScalarLayer(
        'prediction',
        'embedding',
        'int',
        anchors.map((a, i) => [a, b * 1000 + i]),
      )
    }
    const before = await walkReachable(store)
    for (let b = 1; b < SWEEP_BRANCHES; b++) await ds.repository.deleteBranch(`sweep/run-${b}`)
    const after = await walkReachable(store)
    const freed = [...before.reached.keys()].filter((k) => !after.reached.has(k))
    // Per deleted branch: its layer's manifest, segment node and values. The anchors object
    // is the same bytes on every branch (the same anchors), so the kept branch keeps it.
    expect(freed).toHaveLength((SWEEP_BRANCHES - 1) * 3)
    for (const key of freed) {
      const r = before.reached.get(key)!
      expect(r.via).toMatch(/^ref sweep\/run-/)
      expect(['manifest', 'segment-node', 'field']).toContain(r.kind)
      if (r.kind === 'field') expect(r.field!.name).toBe('prediction')
    }
    const storedBefore = await fsck(store, { verify: 'metadata' })
    const report = await collectGarbage(store, { ...aged, apply: true })
    expect(report.deleted.objects).toBe(freed.length)
    expect(report.sweep.cids.map((c) => digestKey(CID.parse(c))).sort()).toEqual(freed.sort())
    const afterGc = await fsck(store)
    expect(afterGc.ok).toBe(true)
    expect(afterGc.unreachable.objects).toBe(0)
    expect(afterGc.stored.objects).toBe(storedBefore.stored.objects - freed.length)
    console.log(
      `sweep of ${SWEEP_BRANCHES} branches, ${SWEEP_BRANCHES - 1} deleted: ${storedBefore.stored.bytes} bytes stored before GC, ${afterGc.stored.bytes} after (${report.deleted.objects} objects, ${report.deleted.bytes} bytes freed)`,
    )
    expect(await idsOf(store, 'corpus')).toEqual(Array.from({ length: 40 }, (_, i) => i))
    const kept = await Dataset.openRef('sweep/run-0', { backend: store })
    const values: number[] = []
    for await (const batch of kept.iterArrowBatches({ fields: ['prediction'], batchSize: 100 }))
      values.push(
        ...Array.from(batch.getChild('prediction')!.toArray() as ArrayLike<number | bigint>, Number),
      )
    expect(values.sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => i))
  }, 240_000)

  /**
   * The same records appended on a branch deleted again: their objects are unreferenced
   * garbage that the next append of those records meets as dedup hits.
   */
  async function withGarbage(store: Store, ids: number[]): Promise<Dataset> {
    const ds = await Dataset.create('corpus', { backend: store, schema: SCHEMA })
    const run = await ds.branch('run')
    await run.appendMany(ids.map(record), { bucketRecords: 20 })
    await ds.repository.deleteBranch('run')
    return ds
  }

  it("an append whose dedup-hit object is deleted before its commit's check puts it again and lands", async () => {
    const { store } = await open()
    const ids = Array.from({ length: 6 }, (_, i) => i)
    await withGarbage(store, ids)
    // design/0008's S3 window, made deterministic: a GC HEADed this old object, the append's
    // dedup hit freshened it, then the GC's delete lands before the commit asks for it.
    const { racing, taken } = deletingFirstChecked(store)
    const mine = await Dataset.openRef('corpus', { backend: racing })
    await mine.appendMany(ids.map(record), { bucketRecords: 20 })
    expect(taken).toHaveLength(1)
    expect(await store.has(taken[0]!)).toBe(true)
    const report = await fsck(store)
    expect(report.missing).toEqual([])
    expect(report.ok).toBe(true)
    expect(await idsOf(store, 'corpus')).toEqual(ids)
  }, 30_000)

  it("a layer whose dedup-hit segment object is deleted before its commit's check writes it again and lands", async () => {
    const { store } = await open()
    const ds = await withGarbage(store, [0, 1, 2])
    await ds.appendMany([0, 1, 2].map(record), { bucketRecords: 20 })
    const anchors = await anchorsOf(ds)
    const values = anchors.map((a, i): [bigint, number] => [a, 7 * i])
    // The same layer added on a branch deleted again: its segment object is old garbage.
    await (await ds.branch('layer-run')).addScalarLayer('prediction', 'embedding', 'int', values)
    await ds.repository.deleteBranch('layer-run')
    const { racing, taken } = deletingFirstChecked(store)
    await (await Dataset.openRef('corpus', { backend: racing })).addScalarLayer(
      'prediction',
      'embedding',
      'int',
      values,
    )
    expect(taken).toHaveLength(1)
    expect((await fsck(store)).missing).toEqual([])
    const read: number[] = []
    for await (const batch of (await Dataset.openRef('corpus', { backend: store })).iterArrowBatches({
      fields: ['prediction'],
    }))
      read.push(...Array.from(batch.getChild('prediction')!.toArray() as ArrayLike<number | bigint>, Number))
    expect(read).toEqual([0, 7, 14])
  }, 30_000)

  it("a GC's delete landing after a commit's existence check: the check sees the sweep fence move, checks again, finds the object gone and puts it again; nothing is lost", async () => {
    const { store } = await open()
    const ids = Array.from({ length: 6 }, (_, i) => i)
    await withGarbage(store, ids)
    // The whole GC runs right after the commit's check of its first object has answered
    // "there": every unreachable object is old to it, dedup hits included, so it deletes
    // them. Without the fence the commit then names deleted objects.
    let gc: Promise<GcReport> | undefined
    const racing = withMethod(store, 'has', (has) => async (cid, options) => {
      const present = await has(cid, options)
      gc ??= collectGarbage(store, { ...aged, apply: true })
      await gc
      return present
    })
    const mine = await Dataset.openRef('corpus', { backend: racing })
    await mine.appendMany(ids.map(record), { bucketRecords: 20 })
    const report = await gc
    expect(report!.deleted.objects).toBeGreaterThan(0)
    const { reached } = await walkReachable(store)
    const deletedThenNamed = report!.sweep.cids.filter((c) => reached.has(digestKey(CID.parse(c))))
    expect(deletedThenNamed.length).toBeGreaterThan(0)
    await expectWhole(store, { corpus: ids })
    expect(JSON.parse(new TextDecoder().decode((await store.readRef(SWEEP_FENCE_REF))!.value))).toMatchObject(
      {
        state: 'idle',
      },
    )
  }, 30_000)

  it("a GC paused in its sweep between judging objects and deleting them, while a writer's commit checks them: the commit waits for the sweep, finds them gone, puts them again and lands", async () => {
    const { store } = await open()
    const ids = Array.from({ length: 6 }, (_, i) => i)
    await withGarbage(store, ids)
    // The GC's sweep: it has judged its candidates old; the deletes then wait at a gate and
    // land without the age re-check (S3's window between a HEAD and DeleteObjects, held
    // open: on a folder the rename closes it, so it is modelled here for both).
    let judged!: () => void
    const atGate = new Promise<void>((resolve) => {
      judged = resolve
    })
    let open_!: () => void
    const gate = new Promise<void>((resolve) => {
      open_ = resolve
    })
    const judging = withMethod(
      store,
      'deleteObjects',
      (deleteObjects) => (cids, options) =>
        (async function* () {
          const all: CID[] = []
          for await (const cid of cids) all.push(cid)
          judged()
          await gate
          yield* deleteObjects(all, options?.signal ? { signal: options.signal } : {})
        })(),
    )
    const gc = collectGarbage(judging, { ...aged, apply: true })
    await atGate
    // The writer: its puts meet the judged garbage (dedup hits), its commit checks them. The
    // gate opens when the commit sees the sweep fence up (it then waits for the sweep), or,
    // without the fence, when it moves its ref (which then waits for the GC's deletes).
    let fenceSeen = false
    let moves = 0
    const fenced = withMethod(store, 'readRef', (readRef) => async (name, options) => {
      const entry = await readRef(name, options)
      if (
        name === SWEEP_FENCE_REF &&
        entry !== undefined &&
        /"sweeping"/.test(new TextDecoder().decode(entry.value))
      ) {
        fenceSeen = true
        open_()
      }
      return entry
    })
    const writer = withMethod(fenced, 'updateRef', (updateRef) => async (name, ...rest) => {
      if (name === 'corpus' && moves++ === 0) {
        open_()
        await gc
      }
      return updateRef(name, ...rest)
    })
    await (await Dataset.openRef('corpus', { backend: writer })).appendMany(ids.map(record), {
      bucketRecords: 20,
    })
    const report = await gc
    await expectWhole(store, { corpus: ids })
    expect(fenceSeen).toBe(true)
    expect(report.deleted.objects).toBeGreaterThan(0)
    const { reached } = await walkReachable(store)
    expect(report.sweep.cids.filter((c) => reached.has(digestKey(CID.parse(c)))).length).toBeGreaterThan(0)
  }, 30_000)

  it('an append whose commit still finds an object missing after putting it again refuses, and commits nothing', async () => {
    const { store } = await open()
    const ids = [0, 1]
    await withGarbage(store, ids)
    // A store that keeps answering "absent" for one object: putting it again cannot help.
    let absent: CID | undefined
    let asked = 0
    const lying = withMethod(store, 'has', (has) => async (cid, options) => {
      absent ??= cid
      if (!cid.equals(absent)) return has(cid, options)
      asked++
      return false
    })
    const mine = await Dataset.openRef('corpus', { backend: lying })
    const refused = await mine.appendMany(ids.map(record), { bucketRecords: 20 }).catch((e: unknown) => e)
    expect(refused).toMatchObject({ code: 'ERR_MANIFEST_MISSING_OBJECT', cid: absent!.toString() })
    // The first commit, then one per put again (two), each refused by the check.
    expect(asked).toBe(3)
    expect(await idsOf(store, 'corpus')).toEqual([])
  }, 30_000)

  it("GC with writers, step by step: an aborted append's objects are deleted once old and its retry after the GC lands; a retry's dedup hits keep old garbage from a GC that runs before its commit", async () => {
    const { store, clockMs } = await open()
    await withFreshenAfter(0, async () => {
      const ds = await Dataset.create('corpus', { backend: store, schema: SCHEMA })
      const base = Array.from({ length: 20 }, (_, i) => i)
      await ds.appendMany(base.map(record), { bucketRecords: 20 })
      await ds.branch('retries')
      // Two appends aborted after some of their objects were stored. Their records share no
      // object (the label sequences of their buckets of 3 differ), so each one's garbage is known.
      const a = [100, 101, 102, 103, 104, 105]
      const b = [201, 202, 203, 204, 205, 206]
      await abortedAppend(store, 'retries', a, { puts: 3, bucketRecords: 3 })
      const garbageA = await unreachable(store)
      await abortedAppend(store, 'retries', b, { puts: 3, bucketRecords: 3 })
      const garbageB = [...(await unreachable(store))].filter((k) => !garbageA.has(k))
      expect(garbageA.size).toBeGreaterThanOrEqual(3)
      expect(garbageB.length).toBeGreaterThanOrEqual(3)
      const cutoff = await cutoffAfterNow(clockMs)

      // B's retry: its puts meet B's garbage (dedup hits, which freshen it); then, between its
      // commit's check and its ref move, a GC deletes what is unreachable and older than the
      // cutoff. Only the freshen keeps B's objects (without it the commit names deleted ones).
      let report: GcReport | undefined
      let dedupHits = 0
      const counting = withMethod(
        store,
        'putMany',
        (putMany) => (items, options) =>
          putMany(items, {
            ...options,
            onProgress: (event) => {
              if (event.type === 'dreamdb:cas:put' && !event.stored) dedupHits++
              options?.onProgress?.(event)
            },
          }),
      )
      const racing = withMethod(counting, 'updateRef', (updateRef) => async (name, ...rest) => {
        if (name === 'retries' && report === undefined) report = await gcAt(store, cutoff)
        return updateRef(name, ...rest)
      })
      await (await Dataset.openRef('retries', { backend: racing })).appendMany(b.map(record), {
        bucketRecords: 3,
      })
      expect(dedupHits).toBeGreaterThanOrEqual(garbageB.length)
      // The GC ran past A's grace: it deleted exactly A's garbage, and none of B's.
      expect(report!.deleted.objects).toBe(garbageA.size)
      expect(new Set(report!.sweep.cids.map((c) => digestKey(CID.parse(c))))).toEqual(garbageA)
      await expectWhole(store, { corpus: base, retries: [...base, ...b] })

      // A's retry after the GC: its objects are gone, so its puts write them anew.
      await (await Dataset.openRef('retries', { backend: store })).appendMany(a.map(record), {
        bucketRecords: 3,
      })
      await expectWhole(store, { corpus: base, retries: [...base, ...b, ...a] })
    })
  }, 30_000)

  it(
    `GC racing live appends, layer adds and deletes, and aborted appends with their retries loses nothing and deletes exactly the old garbage (${RACE.rounds} round${RACE.rounds > 1 ? 's' : ''})`,
    async () => {
      const { store, clockMs } = await open()
      await withFreshenAfter(0, async () => {
        const ds = await Dataset.create('corpus', { backend: store, schema: SCHEMA })
        const base = Array.from({ length: 20 }, (_, i) => i)
        await ds.appendMany(base.map(record), { bucketRecords: 20 })
        const anchors = await anchorsOf(ds)
        await ds.branch('retries')
        const acked = new Set(base)
        const ackedRetries = new Set(base)
        const layers = new Map<string, number>()
        const totals = { gcRuns: 0, deleted: 0, keptFresh: 0, aborted: 0, retried: 0 }
        let nextId = 1000
        let layerRun = 0
        for (let round = 0; round < RACE.rounds; round++) {
          // Old garbage that no writer below meets again: an aborted append of records of its own
          // in buckets of 4 (the racing appends' buckets of 2 and 3 share no label object with
          // them), and the last round's deleted layer branches. A writer that dedup-hits old
          // garbage while a GC judges it is the step-by-step test's case, where its order is fixed.
          const old = Array.from({ length: 8 }, () => nextId++)
          await abortedAppend(store, 'retries', old, { puts: 3, bucketRecords: 4 })
          totals.aborted++
          const garbage = await unreachable(store)
          const cutoff = await cutoffAfterNow(clockMs)
          // Everything the writers store from here on is younger than the cutoff: no GC below may
          // take it, however long a commit takes on a loaded machine.
          const swept: string[] = []
          let writing = true
          const appender = async () => {
            const mine = await Dataset.openRef('corpus', { backend: store })
            for (let k = 0; k < RACE.appends; k++) {
              const ids = [nextId++, nextId++, nextId++]
              await mine.appendMany(ids.map(record), { bucketRecords: 3 })
              for (const id of ids) acked.add(id)
            }
          }
          const layerer = async () => {
            for (let k = 0; k < RACE.layers; k++) {
              const run = ++layerRun
              const name = `sweep/run-${run}`
              const branch = await ds.branch(name)
              await branch.addScalarLayer(
                'prediction',
                'embedding',
                'int',
                anchors.map((a, i) => [a, run * 100 + i]),
              )
              // Half the runs are thrown away: their layers become garbage.
              if (run % 2 === 0) await ds.repository.deleteBranch(name)
              else layers.set(name, run)
            }
          }
          const aborter = async () => {
            for (let k = 0; k < RACE.aborts; k++) {
              const ids = [nextId++, nextId++]
              await abortedAppend(store, 'retries', ids, { puts: 2, bucketRecords: 2 })
              totals.aborted++
              // The retry meets the aborted attempt's objects (young dedup hits) and must land.
              await (await Dataset.openRef('retries', { backend: store })).appendMany(ids.map(record), {
                bucketRecords: 2,
              })
              for (const id of ids) ackedRetries.add(id)
              totals.retried++
            }
          }
          const collector = async () => {
            do {
              const report = await gcAt(store, cutoff)
              swept.push(...report.sweep.cids.map((c) => digestKey(CID.parse(c))))
              totals.deleted += report.deleted.objects
              totals.keptFresh += report.keptFresh
              totals.gcRuns++
            } while (writing)
          }
          const writers = Promise.all([appender(), appender(), layerer(), aborter()]).finally(() => {
            writing = false
          })
          await Promise.all([writers, collector()])
          // Each old object was swept once (by the first GC that listed it), and nothing else.
          expect(swept.sort(), `round ${round}`).toEqual([...garbage].sort())
          await expectWhole(store, { corpus: [...acked], retries: [...ackedRetries] })
          for (const [name, run] of layers) {
            const branch = await Dataset.openRef(name, { backend: store })
            const values: number[] = []
            for await (const batch of branch.iterArrowBatches({ fields: ['prediction'], batchSize: 100 }))
              values.push(
                ...Array.from(batch.getChild('prediction')!.toArray() as ArrayLike<number | bigint>, Number),
              )
            expect(values.sort((x, y) => x - y)[0], name).toBe(run * 100)
          }
        }
        console.log(
          `[gc-race] ${backendName}: ${RACE.rounds} rounds, ${totals.gcRuns} GC runs, ${totals.deleted} objects deleted, ${totals.keptFresh} kept as freshened, ${acked.size + ackedRetries.size} records acknowledged, ${totals.aborted} appends aborted, ${totals.retried} retried, ${layers.size} layers kept`,
        )
        expect(totals.deleted).toBeGreaterThan(0)
        expect(totals.retried).toBe(RACE.rounds * RACE.aborts)
      })
    },
    RACE_TIMEOUT_MS,
  )
})
