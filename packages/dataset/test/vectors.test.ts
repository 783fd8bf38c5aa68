import { rejection } from '@dreamdb/cas-tests'
import { describe, expect, it } from 'vitest'
import { Dataset } from '../src/index.js'

const DIM = 32
/** Clustered vectors: 20 centres, points scattered around them (seeded). */
function vectors(count: number, seed = 1): number[][] {
  let state = seed
  const rand = () => {
    state = (state * 1103515245 + 12345) % 2 ** 31
    return state / 2 ** 31 - 0.5
  }
  const centres = Array.from({ length: 20 }, () => Array.from({ length: DIM }, () => rand() * 4))
  return Array.from({ length: count }, (_, i) => centres[i % 20]!.map((c) => c + rand() * 0.6))
}

async function corpus(count = 1200) {
  const ds = await Dataset.create('vectors', {
    backend: 'memory://',
    schema: {
      fields: [
        { name: 'embedding', family: 'embedding', dim: DIM, metric: 'cosine' },
        { name: 'label', family: 'scalar', kind: 'categorical' },
      ],
    },
  })
  const data = vectors(count)
  await ds.appendMany(
    data.map((embedding, i) => ({ embedding, label: `c${i % 20}` })),
    { bucketRecords: 100 },
  )
  return { ds, data }
}

async function allVectors(ds: Dataset): Promise<Map<bigint, number[]>> {
  const out = new Map<bigint, number[]>()
  for await (const batch of ds.iterArrowBatches({ fields: ['embedding'] })) {
    for (let i = 0; i < batch.numRows; i++) {
      out.set(batch.getChild('_anchor')!.get(i) as bigint, [
        ...(batch.getChild('embedding')!.get(i) as Iterable<number>),
      ])
    }
  }
  return out
}

const cosine = (a: number[], b: number[]) =>
  a.reduce((s, x, i) => s + x * b[i]!, 0) / (Math.hypot(...a) * Math.hypot(...b))

describe('search and migrate', () => {
  it('exact search on float32, IVF-RaBitQ with rerank after migrate, and appends searchable without retraining', async () => {
    const { ds, data } = await corpus()
    const before = await allVectors(ds)
    const snap = await ds.snapshot('float32')
    const query = data[7]!
    const exact = await ds.search('embedding', query, { k: 10 })
    expect(exact.anchors.length).toBe(10)
    expect([...before.get(exact.anchors[0]!)!].map((x) => Math.fround(x))).toEqual(
      query.map((x) => Math.fround(x)),
    )
    // searchMany: row i is what search gives for query i (float32: one read for all queries).
    const many = await ds.searchMany('embedding', [query, Float32Array.from(data[3]!)], { k: 10 })
    expect(many.anchors.subarray(0, 10)).toEqual(exact.anchors)
    expect(many.anchors.subarray(10)).toEqual((await ds.search('embedding', data[3]!, { k: 10 })).anchors)
    expect([...many.counts]).toEqual([10, 10])
    const filtered = await ds.search('embedding', query, { k: 5, filter: { label: 'c3' } })
    for (const anchor of filtered.anchors) {
      expect(cosine(before.get(anchor)!, data[3]!)).toBeGreaterThan(0.8)
    }

    await ds.migrate({ field: 'embedding', algorithm: 'dreamdb.ivf-cosine', bits: 1, rerank: true })
    const field = ds.manifest.schema.fields.find((f) => f.name === 'embedding')!
    expect(field).toMatchObject({ algorithm: 'dreamdb.ivf-cosine', rerank: true })
    // Iteration reads the kept full vectors: exactly what was there before.
    expect(await allVectors(ds)).toEqual(before)
    // Reranked search finds the same neighbours as the exact scan.
    const approximate = await ds.search('embedding', query, { k: 10, nprobe: 8 })
    expect([...approximate.anchors]).toEqual([...exact.anchors])
    const approximateMany = await ds.searchMany('embedding', Float32Array.from(query), { k: 10, nprobe: 8 })
    expect(approximateMany.anchors).toEqual(approximate.anchors)
    expect(approximateMany.distances).toEqual(approximate.distances)
    // The snapshot taken before still reads float32 objects, unchanged.
    expect(await allVectors(await Dataset.openAt(snap, { backend: ds.store }))).toEqual(before)

    // Appended records are encoded against the existing centroids and found at once.
    const fresh = vectors(1, 99)[0]!
    await ds.appendMany([{ embedding: fresh, label: 'new' }])
    const found = await ds.search('embedding', fresh, { k: 1, nprobe: 20 })
    const all = await allVectors(ds)
    expect(cosine(all.get(found.anchors[0]!)!, fresh)).toBeGreaterThan(0.9999)
  })

  it('4-bit codes without full vectors decode to close approximations', async () => {
    const { ds } = await corpus(600)
    const before = await allVectors(ds)
    await ds.migrate({ field: 'embedding', algorithm: 'dreamdb.ivf-cosine', bits: 4, rerank: false })
    const after = await allVectors(ds)
    expect(after.size).toBe(before.size)
    let worst = 1
    for (const [anchor, v] of before) worst = Math.min(worst, cosine(v, after.get(anchor)!))
    expect(worst).toBeGreaterThan(0.95)
    expect(worst).toBeLessThan(1)
    // Enabling rerank needs full vectors, which are gone now.
    const error = await rejection(
      ds.migrate({ field: 'embedding', algorithm: 'dreamdb.ivf-cosine', rerank: true }),
    )
    expect(error.code).toBe('ERR_DATASET_INVALID_OPTION')
    expect(error.message).toContain('re-ingest')
  })

  it('bad input is a typed error before anything is written', async () => {
    const { ds, data } = await corpus(200)
    const head = ds.currentManifest()
    const cases: [Promise<unknown>, string][] = [
      [ds.migrate({ field: 'nope', algorithm: 'dreamdb.ivf-l2' }), 'ERR_DATASET_UNKNOWN_FIELD'],
      [ds.migrate({ field: 'label', algorithm: 'dreamdb.ivf-l2' }), 'ERR_DATASET_INVALID_OPTION'],
      [ds.migrate({ field: 'embedding', algorithm: 'faiss.hnsw' }), 'ERR_DATASET_INVALID_OPTION'],
      [
        ds.migrate({ field: 'embedding', algorithm: 'dreamdb.ivf-l2', bits: 9 }),
        'ERR_DATASET_INVALID_OPTION',
      ],
      [ds.search('embedding', data[0]!, { k: 0 }), 'ERR_DATASET_INVALID_OPTION'],
      [ds.search('embedding', [1, 2, 3], { k: 3 }), 'ERR_DATASET_INVALID_OPTION'],
      [
        ds.search(
          'embedding',
          data[0]!.map(() => Number.NaN),
          { k: 3 },
        ),
        'ERR_DATASET_INVALID_OPTION',
      ],
      [
        ds.search(
          'embedding',
          data[0]!.map(() => 0),
          { k: 3 },
        ),
        'ERR_DATASET_INVALID_OPTION',
      ],
      [ds.search('embedding', data[0]!, { k: 3, filter: { nope: 1 } }), 'ERR_DATASET_INVALID_OPTION'],
      [ds.search('label', data[0]!, { k: 3 }), 'ERR_DATASET_INVALID_OPTION'],
    ]
    for (const [attempt, code] of cases) expect((await rejection(attempt)).code).toBe(code)
    expect(await ds.refresh()).toBe(head)
    await ds.migrate({ field: 'embedding', algorithm: 'dreamdb.ivf-cosine' })
    for (const q of [[1, 2, 3], data[0]!.map(() => Number.NaN)]) {
      const error = await rejection(ds.search('embedding', q, { k: 3 }))
      expect(error.code).toMatch(/^ERR_VECTOR_/)
    }
  })
})

describe('odd dimensions', () => {
  it('migrate, iterate and search a 49-d field in buckets of 25 (Arrow pads the odd-sized buffers)', async () => {
    const ds = await Dataset.create('odd', {
      backend: 'memory://',
      schema: { fields: [{ name: 'embedding', family: 'embedding', dim: 49, metric: 'l2' }] },
    })
    const data = Array.from({ length: 75 }, (_, i) =>
      Array.from({ length: 49 }, (_, d) => Math.sin(i * 7 + d)),
    )
    await ds.appendMany(
      data.map((embedding) => ({ embedding })),
      { bucketRecords: 25 },
    )
    const before = await allVectors(ds)
    const exact = await ds.search('embedding', data[10]!, { k: 5 })
    await ds.migrate({ field: 'embedding', algorithm: 'dreamdb.ivf-l2', bits: 1, rerank: true })
    expect(await allVectors(ds)).toEqual(before)
    const approximate = await ds.search('embedding', data[10]!, { k: 5, nprobe: 9 })
    expect([...approximate.anchors]).toEqual([...exact.anchors])
  })
})
