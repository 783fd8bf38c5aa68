/**
 * The iterator trusts the timeline's summaries to plan an epoch; summaries that disagree
 * with the leaves they describe end the iteration in a typed error (ERR_MANIFEST_INTEGRITY),
 * never a plain Error, a RangeError or a hang.
 */
import { encodeManifest, encodeRefTarget, type TreeChild } from '@dreamdb/manifest'
import { describe, expect, it } from 'vitest'
import { Dataset } from '../src/index.js'
import { dataset } from './helpers.js'

const DAG_CBOR = 0x71

/** A branch `damaged` whose timeline root summarises the real leaf with `extra` more records. */
async function overstated(extra: number) {
  const { ds, store } = await dataset(60, { bucketRecords: 20 })
  const repo = ds.repository
  const manifest = ds.manifest
  let leaf: TreeChild | undefined
  for await (const entry of repo.leaves(manifest)) leaf = entry.leaf
  const root = await repo.nodes.save({ level: 1, children: [{ ...leaf!, records: leaf!.records + extra }] })
  const lying = {
    ...manifest,
    timeline: root,
    stats: { ...manifest.stats, records: manifest.stats.records + extra },
  }
  const cid = await store.put(encodeManifest(lying), { codec: DAG_CBOR })
  await store.createRef('damaged', encodeRefTarget({ kind: 'branch', manifest: cid, timeline: root }))
  return { damaged: await Dataset.openRef('damaged', { backend: store }), leaf: leaf! }
}

async function rejection(run: () => Promise<unknown>) {
  try {
    await run()
  } catch (error) {
    return error as Error & Record<string, unknown>
  }
  throw new Error('expected a rejection')
}

describe('iteration over a damaged timeline', () => {
  it('a leaf summary overstating its records is ERR_MANIFEST_INTEGRITY, with and without a time range', async () => {
    const { damaged, leaf } = await overstated(40)
    const drain = async (options: Parameters<Dataset['iterArrowBatches']>[0]) => {
      for await (const _ of damaged.iterArrowBatches(options)) {
      }
    }
    for (const options of [
      { batchSize: 16 },
      { batchSize: 16, shuffleSeed: 3 },
      // A range that cuts the leaf: the leaf is read at once and checked against its summary.
      // (Its appends may all fall in one millisecond on a fast machine: then the whole leaf.)
      {
        batchSize: 16,
        timeRange: [Math.min(leaf.timeMin + 1, leaf.timeMax), leaf.timeMax] as [number, number],
      },
    ]) {
      const error = await rejection(() => drain(options))
      expect(error.code, JSON.stringify(options)).toBe('ERR_MANIFEST_INTEGRITY')
      expect(error.message).toContain('records')
    }
  })
})
