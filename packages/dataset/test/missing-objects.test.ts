/**
 * `migrate` and `compact` on a store missing an object they need (design/0008): they refuse
 * with MissingBucketObjectError naming the object, its bucket and `dreamdb fsck`, and write
 * nothing (no object, no ref move); compact checks every run before committing the first.
 * And when their commit's check finds one of their own new objects gone (a GC's delete of a
 * dedup hit), they put it again and land, as appends do.
 */
import type { Store } from '@dreamdb/cas'
import { fsck } from '@dreamdb/manifest'
import type { CID } from 'multiformats/cid'
import { describe, expect, it } from 'vitest'
import { Dataset } from '../src/index.js'
import { dataset, idsOf } from './helpers.js'

async function storedObjects(store: Store): Promise<string[]> {
  const out: string[] = []
  for await (const { cid } of store.list()) out.push(cid.toString())
  return out.sort()
}

/** 60 records in buckets of 10; bucket `position`'s `key` object deleted by hand. */
async function damaged(position: number, key: string) {
  const { ds, store } = await dataset(60, { bucketRecords: 10 })
  const buckets = []
  for await (const { bucket } of ds.repository.buckets(ds.manifest)) buckets.push(bucket)
  const victim = buckets[position]!.fields[key]!.cid
  for await (const _ of store.deleteObjects([victim])) {
  }
  return {
    ds,
    store,
    victim,
    head: (await store.readRef('corpus'))!.version,
    objects: await storedObjects(store),
  }
}

const verbs = {
  migrate: (ds: Dataset) => ds.migrate({ field: 'embedding', algorithm: 'dreamdb.ivf-l2', lists: 2 }),
  // Buckets of 10, target 30: two runs of three, committed last run first.
  compact: (ds: Dataset) => ds.compact({ targetRecords: 30 }),
}

describe.each(Object.keys(verbs) as (keyof typeof verbs)[])('%s on a missing object', (verb) => {
  // Bucket 1 is in the first run, which compact commits last: found only while reading, the
  // second run would already be committed.
  for (const [position, key] of [
    [1, 'embedding'],
    [4, 'embedding'],
  ] as const) {
    it(`refuses, naming bucket ${position}'s '${key}' object and fsck, and writes nothing`, async () => {
      const { ds, store, victim, head, objects } = await damaged(position, key)
      const error = await verbs[verb](ds).catch((e: unknown) => e)
      expect(error).toMatchObject({
        name: 'MissingBucketObjectError',
        code: 'ERR_DATASET_MISSING_OBJECT',
        verb,
        cid: victim.toString(),
        bucket: position,
        object: key,
      })
      expect((error as Error).message).toContain(victim.toString())
      expect((error as Error).message).toContain('nothing was written')
      expect((error as Error).message).toContain('dreamdb fsck')
      expect((await store.readRef('corpus'))!.version).toBe(head)
      expect(await storedObjects(store)).toEqual(objects)
    })
  }

  it("puts its objects again when its commit's check finds one gone (a GC's delete), and lands", async () => {
    const { ds, store } = await dataset(60, { bucketRecords: 10 })
    // Run once on a branch deleted again: the second run's objects are dedup hits of that
    // garbage, and the first one its commit checks is deleted just before the check answers.
    await verbs[verb](await ds.branch('earlier'))
    await ds.repository.deleteBranch('earlier')
    const taken: CID[] = []
    const racing = new Proxy(store, {
      get(target, k) {
        if (k === 'has')
          return async (cid: CID, options?: { freshen?: boolean }) => {
            if (options?.freshen === true && taken.length === 0) {
              taken.push(cid)
              for await (const _ of store.deleteObjects([cid])) {
              }
            }
            return store.has(cid, options)
          }
        const value = Reflect.get(target, k, target)
        return typeof value === 'function' ? value.bind(target) : value
      },
    })
    const mine = await Dataset.openRef('corpus', { backend: racing })
    await verbs[verb](mine)
    expect(taken).toHaveLength(1)
    expect(await store.has(taken[0]!)).toBe(true)
    const report = await fsck(store)
    expect(report.missing).toEqual([])
    const ids: number[] = []
    for await (const batch of (await Dataset.openRef('corpus', { backend: store })).iterArrowBatches({
      fields: ['embedding'],
    }))
      ids.push(...idsOf(batch))
    expect(ids.sort((a, b) => a - b)).toEqual(Array.from({ length: 60 }, (_, i) => i))
  })
})
