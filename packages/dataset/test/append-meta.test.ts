import { openStore, type Store } from '@dreamdb/cas'
import { log } from '@dreamdb/manifest'
import { describe, expect, it } from 'vitest'
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
