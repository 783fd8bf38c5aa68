import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openStore, type Store } from '@dreamdb/cas'
import { log } from '@dreamdb/manifest'
import { afterAll, describe, expect, it, vi } from 'vitest'
import { RECENT_WRITE_MS } from '../src/append.js'
import { Dataset } from '../src/index.js'
import { record, SCHEMA } from './helpers.js'

/** Every object key and ref version in the store, to see that a refused call wrote nothing. */
async function contents(store: Store): Promise<string[]> {
  const out: string[] = []
  for await (const o of store.list()) out.push(o.cid.toString())
  for await (const name of store.listRefs('')) out.push(`${name}@${(await store.readRef(name))?.version}`)
  return out.sort()
}

describe('appendMany meta', () => {
  it('is kept with the commit and shown by log', async () => {
    const store = await openStore('memory://')
    const ds = await Dataset.create('corpus', { backend: store, schema: SCHEMA })
    const meta = { shard: 'part-0003', rows: 2, done: true }
    await ds.appendMany([record(1), record(2)], { meta })
    const [entry] = await log(ds.repository, 'corpus', { limit: 1 })
    expect(entry!.meta).toEqual(meta)
  })

  it('bad meta is refused before any object, anchor or ref is written', async () => {
    const store = await openStore('memory://')
    const ds = await Dataset.create('corpus', { backend: store, schema: SCHEMA })
    const before = await contents(store)
    await expect(ds.appendMany([record(1)], { meta: { progress: { offset: 1.5 } } })).rejects.toMatchObject({
      code: 'ERR_MANIFEST_INVALID_META',
      key: 'meta.progress.offset',
    })
    expect(await contents(store)).toEqual(before)
  })
})

/** Requests through a store: one per call, one per item a putMany stores. */
function counting(store: Store) {
  const calls: string[] = []
  const proxy = new Proxy(store, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver)
      if (typeof value !== 'function' || key === 'close') return value
      if (key === 'putMany') {
        return (items: Iterable<Uint8Array>, ...rest: unknown[]) => {
          const counted = [...items].map((item) => {
            calls.push('put')
            return item
          })
          return value.apply(target, [counted, ...rest])
        }
      }
      return (...args: unknown[]) => {
        calls.push(String(key))
        return value.apply(target, args)
      }
    },
  })
  return { store: proxy as Store, calls }
}

const folders: string[] = []
afterAll(async () => {
  await Promise.all(folders.map((f) => rm(f, { recursive: true, force: true })))
})

describe.each(['memory', 'folder'])('what one appendMany costs (%s)', (backend) => {
  it('its data objects, the timeline leaf, the manifest and one ref write: 7 requests', async () => {
    let url = 'memory://'
    if (backend === 'folder') {
      url = await mkdtemp(join(tmpdir(), 'dreamdb-append-'))
      folders.push(url)
    }
    const { store, calls } = counting(await openStore(url))
    const ds = await Dataset.create('corpus', { backend: store, schema: SCHEMA })
    // The first append also reserves a block of anchors (a ref read and write per 65 536).
    await ds.appendMany([record(0)])
    for (let i = 1; i <= 3; i++) {
      calls.length = 0
      await ds.appendMany([record(2 * i), record(2 * i + 1)])
      // The bucket's 4 data objects, then the timeline leaf, the manifest and the ref.
      expect(calls).toEqual(['put', 'put', 'put', 'put', 'put', 'put', 'updateRef'])
    }
    await ds.refresh()
    expect(ds.manifest.stats.records).toBe(7)
    // The same records again with new labels: the image, its index and the embedding are
    // small objects this store's puts wrote anew moments ago, known to be there and young:
    // neither put again nor checked (design/0003, "Commits"); the new label object, the
    // timeline leaf and the manifest are put.
    calls.length = 0
    await ds.appendMany([6, 7].map((id) => ({ ...record(id), label: 'relabelled' })))
    expect(calls).toEqual(['put', 'put', 'put', 'updateRef'])
    // Once those writes are RECENT_WRITE_MS old, a dedup hit may be old garbage a GC is
    // judging, so the commit checks that each is still there, between two reads of the GC's
    // sweep fence (design/0008); the label object, written anew, is not checked.
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + RECENT_WRITE_MS })
    try {
      calls.length = 0
      await ds.appendMany([6, 7].map((id) => ({ ...record(id), label: 'relabelled again' })))
    } finally {
      vi.useRealTimers()
    }
    expect(calls).toEqual([
      'put',
      'put',
      'put',
      'put',
      'readRef',
      'has',
      'has',
      'has',
      'readRef',
      'put',
      'put',
      'updateRef',
    ])
  })
})

describe('dedup hits of recent writes (folder)', () => {
  it("another store's dedup hits are checked, however recent", async () => {
    const url = await mkdtemp(join(tmpdir(), 'dreamdb-append-'))
    folders.push(url)
    const ds = await Dataset.create('corpus', { backend: await openStore(url), schema: SCHEMA })
    await ds.appendMany([record(0), record(1)])
    // The same folder opened again (another process, as far as the writes go).
    const { store, calls } = counting(await openStore(url))
    const again = await Dataset.openRef('corpus', { backend: store })
    await again.appendMany([0, 1].map((id) => ({ ...record(id), label: 'relabelled' })))
    expect(calls.filter((c) => c === 'has')).toHaveLength(3)
  })
})

describe('appendMany digests', () => {
  const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest()
  const records = Array.from({ length: 7 }, (_, i) => record(i))
  const digests = () => Buffer.concat(records.map((r) => sha(r.image)))
  /** Each bucket's objects by key, in timeline order. */
  async function objects(ds: Dataset): Promise<Record<string, string>[]> {
    const out: Record<string, string>[] = []
    for await (const { bucket } of ds.repository.buckets(ds.manifest))
      out.push(Object.fromEntries(Object.entries(bucket.fields).map(([k, o]) => [k, o.cid.toString()])))
    return out
  }
  const create = async () =>
    await Dataset.create('corpus', { backend: await openStore('memory://'), schema: SCHEMA })

  it('a binary field takes the given digests, each bucket its own records', async () => {
    const hashed = await create()
    await hashed.appendMany(records, { bucketRecords: 3 })
    const given = await create()
    await given.appendMany(records, { bucketRecords: 3, digests: { image: digests() } })
    // Buckets of 3, 3 and 1 record: the same objects as hashing each image here.
    expect(await objects(given)).toEqual(await objects(hashed))
    expect((await objects(given)).length).toBe(3)
    // Used as given, not computed again: record 4's digest changed lands in the second bucket's index alone.
    const wrong = digests()
    wrong[4 * 32] = (wrong[4 * 32] ?? 0) ^ 1
    const forged = await create()
    await forged.appendMany(records, { bucketRecords: 3, digests: { image: wrong } })
    const [a, b, c] = await objects(forged)
    const [x, y, z] = await objects(hashed)
    expect(a).toEqual(x)
    expect(c).toEqual(z)
    expect(b!['image/index']).not.toBe(y!['image/index'])
    expect(b!.image).toBe(y!.image)
  })

  it('digests of the wrong size or of a field that is not binary are refused before anything is written', async () => {
    const ds = await create()
    const before = await contents(ds.store)
    for (const [option, expected] of [
      [{ image: new Uint8Array(6 * 32) }, 'ERR_DATASET_INVALID_OPTION'],
      [{ image: 'x' }, 'ERR_DATASET_INVALID_OPTION'],
      [{ label: new Uint8Array(7 * 32) }, 'ERR_DATASET_INVALID_OPTION'],
      [{ nope: new Uint8Array(7 * 32) }, 'ERR_DATASET_UNKNOWN_FIELD'],
    ] as const) {
      await expect(
        ds.appendMany(records, { digests: option as unknown as Record<string, Uint8Array> }),
      ).rejects.toMatchObject({ code: expected })
    }
    expect(await contents(ds.store)).toEqual(before)
  })
})
