/**
 * `appendMany({ anchorStart })`: a writer that reserved anchors itself (ingest, keeping its
 * source's order) gets exactly those, in order, across every bucket of the append; a value
 * that cannot be a minted anchor is refused before anything is written.
 */
import { openStore } from '@dreamdb/cas'
import { expect, it } from 'vitest'
import { Dataset } from '../src/index.js'
import { record, SCHEMA } from './helpers.js'

it('gives the records anchorStart onward, in order, over several buckets', async () => {
  const store = await openStore('memory://')
  const ds = await Dataset.create('corpus', { backend: store, schema: SCHEMA })
  const start = await ds.repository.mintAnchors(25)
  // Appended in two calls, the later rows first, as concurrent chunks may land.
  await ds.appendMany(
    Array.from({ length: 15 }, (_, i) => record(10 + i)),
    { anchorStart: start + 10n, bucketRecords: 4 },
  )
  await ds.appendMany(
    Array.from({ length: 10 }, (_, i) => record(i)),
    { anchorStart: start, bucketRecords: 3 },
  )
  const seen: [bigint, number][] = []
  for await (const batch of ds.iterArrowBatches({ fields: ['embedding'] })) {
    for (let i = 0; i < batch.numRows; i++) {
      const id = (batch.getChild('embedding')!.get(i) as { toArray(): Float32Array }).toArray()[0]!
      seen.push([batch.getChild('_anchor')!.get(i) as bigint, id])
    }
  }
  expect(seen).toHaveLength(25)
  for (const [anchor, id] of seen) expect(anchor).toBe(start + BigInt(id))
})

it('refuses an anchorStart that is not a bigint >= 1, writing nothing', async () => {
  const store = await openStore('memory://')
  const ds = await Dataset.create('corpus', { backend: store, schema: SCHEMA })
  const before = ds.currentManifest()
  for (const bad of [0n, -5n, 7 as unknown as bigint]) {
    await expect(ds.appendMany([record(1)], { anchorStart: bad })).rejects.toMatchObject({
      code: 'ERR_DATASET_INVALID_OPTION',
      message: expect.stringContaining('anchorStart'),
    })
  }
  expect(ds.currentManifest()).toBe(before)
})
