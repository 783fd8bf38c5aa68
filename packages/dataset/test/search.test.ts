import { openStore } from '@dreamdb/cas'
import {
  createCompressor,
  createVectorIndex,
  type Metric,
  saveCompressor,
  saveSpatialIndex,
  trainSpatialIndex,
} from '@dreamdb/vector'
import { describe, expect, it } from 'vitest'
import { Dataset } from '../src/index.js'

const DIM = 24

/** Clustered vectors (seeded), flat. */
function vectors(count: number, seed: number): Float32Array {
  let state = seed
  const rand = () => {
    state = (state * 1103515245 + 12345) % 2 ** 31
    return state / 2 ** 31 - 0.5
  }
  const centres = Array.from({ length: 12 }, () => Array.from({ length: DIM }, () => rand() * 4))
  const out = new Float32Array(count * DIM)
  for (let i = 0; i < count; i++)
    for (let j = 0; j < DIM; j++) out[i * DIM + j] = centres[i % 12]![j]! + rand()
  return out
}

async function compressed(metric: Metric, count: number, bucketRecords: number) {
  const store = await openStore('memory://')
  const data = vectors(count, metric.length)
  const spatialIndex = await trainSpatialIndex(data.subarray(0, 400 * DIM), { dim: DIM, metric, lists: 9 })
  const compressor = createCompressor({ dim: DIM, metric, bits: 1 })
  const ds = await Dataset.create('search', {
    backend: store,
    schema: {
      fields: [
        {
          name: 'embedding',
          family: 'embedding',
          dim: DIM,
          metric,
          algorithm: `dreamdb.ivf-${metric}`,
          spatialIndex: await saveSpatialIndex(store, spatialIndex),
          compressor: await saveCompressor(store, compressor),
          rerank: true,
        },
      ],
    },
  })
  const rows = Array.from({ length: count }, (_, i) => ({ embedding: data.subarray(i * DIM, (i + 1) * DIM) }))
  await ds.appendMany(rows, { bucketRecords })
  // The same vectors in one index built by encoding them: anchors are 1 + the row.
  const index = createVectorIndex({ spatialIndex, compressor })
  index.add(data, { ids: BigUint64Array.from({ length: count }, (_, i) => BigInt(i + 1)) })
  return { ds, data, index }
}

describe('Dataset.search on a compressed field', () => {
  it('builds from the stored blocks (lists sized once, vectors read ahead) the index that encoding gives', async () => {
    for (const metric of ['l2', 'cosine'] as const) {
      // Uneven buckets: more than the read-ahead, and a short last one.
      const { ds, data, index } = await compressed(metric, 1030, 170)
      for (const qi of [0, 5, 511, 1029]) {
        const query = data.subarray(qi * DIM, (qi + 1) * DIM)
        for (const nprobe of [1, 4, 9]) {
          const want = index.search(query, { k: 7, nprobe })
          const got = await ds.search('embedding', query, { k: 7, nprobe })
          expect(got.anchors).toEqual(want.ids)
          expect(got.distances).toEqual(want.distances)
        }
      }
    }
  })

  it('a build aborted while its blocks are read is not kept: the next search builds again', async () => {
    const { ds, data, index } = await compressed('l2', 600, 100)
    const query = data.subarray(0, DIM)
    const controller = new AbortController()
    const aborted = ds.search('embedding', query, { k: 5, signal: controller.signal })
    controller.abort()
    await expect(aborted).rejects.toThrow()
    const got = await ds.search('embedding', query, { k: 5, nprobe: 3 })
    expect(got.anchors).toEqual(index.search(query, { k: 5, nprobe: 3 }).ids)
  })
})
