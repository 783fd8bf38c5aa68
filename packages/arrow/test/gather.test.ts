import { readThreadsForWork } from '@dreamdb/cas'
import type { Field } from '@dreamdb/manifest'
import { Binary, Table, type Vector, vectorFromArray } from 'apache-arrow'
import { describe, expect, it } from 'vitest'
import { embeddingColumn, valuesColumn } from '../src/columns.js'
import {
  BatchGatherer,
  Blocks,
  permuteCategorical,
  permuteVectorsAside,
  permuteVectorsInPlace,
} from '../src/index.js'

const embedding: Field = {
  name: 'embedding',
  family: 'embedding',
  dim: 2,
  metric: 'l2',
  algorithm: null,
  spatialIndex: null,
  compressor: null,
  rerank: false,
}
const label: Field = { name: 'label', family: 'scalar', kind: 'categorical' }
const count: Field = { name: 'count', family: 'scalar', kind: 'int' }
const image: Field = { name: 'image', family: 'binary', media: 'image' }
const fields = [embedding, label, count, image]

/** Two buckets' columns (the second without `image`, as if written before it existed). */
const sources: Record<string, (Vector | null)[]> = {
  embedding: [
    valuesColumn(embedding as never, [
      [1, 1],
      [2, 2],
      [3, 3],
    ]),
    valuesColumn(embedding as never, [
      [4, 4],
      [5, 5],
    ]),
  ],
  label: [valuesColumn(label as never, ['a', 'b', null]), valuesColumn(label as never, ['c', 'a'])],
  count: [valuesColumn(count as never, [1, 2, 3]), valuesColumn(count as never, [4, null])],
  image: [
    vectorFromArray([new Uint8Array([1]), new Uint8Array([2, 2]), new Uint8Array([])], new Binary()),
    null,
  ],
}

function blocksOf(...blocks: [source: number, row: number, count: number][]): Blocks {
  const out = new Blocks()
  for (const [source, row, n] of blocks) out.push(source, row, n)
  return out
}

const plain = (v: Vector) =>
  Array.from({ length: v.length }, (_, i) => {
    const x = v.get(i)
    if (x instanceof Float32Array || x instanceof Uint8Array) return [...x]
    return x !== null && typeof x === 'object' ? [...(x as Iterable<unknown>)] : x
  })

describe('Blocks', () => {
  it('merges a block that continues the last one and grows past its first capacity', () => {
    const blocks = blocksOf([0, 0, 2], [0, 2, 1], [1, 0, 1], [0, 3, 1])
    expect(blocks.length).toBe(3)
    expect(blocks.rows).toBe(5)
    expect([...blocks.count.subarray(0, 3)]).toEqual([3, 1, 1])
    for (let i = 0; i < 40; i++) blocks.push(i % 2, i, 1)
    expect(blocks.length).toBe(43)
    expect(blocks.source[42]).toBe(1)
  })
})

describe('BatchGatherer', () => {
  it('shares the stored bytes of a batch inside one bucket', () => {
    const gatherer = new BatchGatherer(fields)
    const blocks = blocksOf([0, 1, 2])
    const vectors = gatherer.column(embedding, sources.embedding!, blocks)
    expect(plain(vectors)).toEqual([
      [2, 2],
      [3, 3],
    ])
    const stored = sources.embedding![0]!.data[0]!.children[0]!.values as Float32Array
    expect((vectors.data[0]!.children[0]!.values as Float32Array).buffer).toBe(stored.buffer)
    const bytes = gatherer.column(image, sources.image!, blocks)
    expect(plain(bytes)).toEqual([[2, 2], []])
    expect(bytes.data[0]!.values.buffer).toBe(sources.image![0]!.data[0]!.values.buffer)
  })

  it('gathers rows in any order across buckets; a bucket without the field gives nulls', () => {
    const gatherer = new BatchGatherer(fields)
    const blocks = blocksOf([1, 1, 1], [0, 2, 1], [1, 0, 1], [0, 0, 2])
    const column = (f: Field) => plain(gatherer.column(f, sources[f.name]!, blocks))
    expect(column(embedding)).toEqual([
      [5, 5],
      [3, 3],
      [4, 4],
      [1, 1],
      [2, 2],
    ])
    expect(column(label)).toEqual(['a', null, 'c', 'a', 'b'])
    expect(column(count)).toEqual([null, 3n, 4n, 1n, 2n])
    expect(column(image)).toEqual([null, [], null, [1], [2, 2]])
    const nulls = gatherer.column(embedding, [null, sources.embedding![1]!], blocks)
    expect(nulls.nullCount).toBe(3)
    expect(plain(nulls)).toEqual([[5, 5], null, [4, 4], null, null])
  })

  it('reads sliced columns at their own rows', () => {
    const gatherer = new BatchGatherer(fields)
    const sliced = Object.fromEntries(
      Object.entries(sources).map(([name, columns]) => [name, columns.map((c) => c?.slice(1) ?? null)]),
    )
    const blocks = blocksOf([0, 1, 1], [1, 0, 1], [0, 0, 1])
    expect(plain(gatherer.column(embedding, sliced.embedding!, blocks))).toEqual([
      [3, 3],
      [5, 5],
      [2, 2],
    ])
    expect(plain(gatherer.column(label, sliced.label!, blocks))).toEqual([null, 'a', 'b'])
    expect(plain(gatherer.column(image, sliced.image!, blocks))).toEqual([[], null, [2, 2]])
  })

  it('gives every batch of an iteration the same types, so the batches make one table', () => {
    const gatherer = new BatchGatherer(fields)
    const batches = [blocksOf([0, 0, 3]), blocksOf([1, 0, 2]), new Blocks()].map((blocks) =>
      gatherer.batch(
        gatherer.anchors([new BigUint64Array([10n, 11n, 12n]), new BigUint64Array([20n, 21n])], blocks),
        fields.map((f) => [f.name, gatherer.column(f, sources[f.name]!, blocks)]),
      ),
    )
    // The empty batch (a partition's padding) has the same schema and no rows.
    expect(batches[2]!.numRows).toBe(0)
    expect(batches[2]!.schema.fields.map((f) => String(f.type))).toEqual(
      batches[0]!.schema.fields.map((f) => String(f.type)),
    )
    const table = new Table(batches.slice(0, 2))
    expect(table.schema.fields.map((f) => f.name)).toEqual([
      '_anchor',
      'embedding',
      'label',
      'count',
      'image',
    ])
    expect(table.numRows).toBe(5)
    expect([...table.getChild('_anchor')!]).toEqual([10n, 11n, 12n, 20n, 21n])
    expect([...table.getChild('label')!]).toEqual(['a', 'b', null, 'c', 'a'])
  })

  it('refuses a field it was not made for', () => {
    expect(() => new BatchGatherer([label]).column(count, sources.count!, blocksOf([0, 0, 1]))).toThrow(
      "field 'count' is not one of this iteration's",
    )
  })
})

describe('permuteCategorical', () => {
  it('puts a window of several buckets in its order under one dictionary, each row with its own value', () => {
    // Two buckets whose dictionaries hold other values, in another order.
    const buckets = [valuesColumn(label as never, ['a', 'b', 'a']), valuesColumn(label as never, ['c', 'a'])]
    const bucketOf = Uint32Array.from([0, 0, 0, 1, 1])
    const rowOf = Uint32Array.from([0, 1, 2, 0, 1])
    const order = Uint32Array.from([3, 0, 4, 2, 1])
    const moved = permuteCategorical(buckets, bucketOf, rowOf, order)!
    expect(moved.map((column) => column.toArray())).toEqual([
      ['c', 'a', 'a'],
      ['a', 'b'],
    ])
    // One dictionary for the window, so a batch takes its ids in blocks from either bucket.
    expect(moved[0]!.data[0]!.dictionary).toBe(moved[1]!.data[0]!.dictionary)
    // Gathered like any column: the same values across the buckets.
    const gatherer = new BatchGatherer(fields)
    const blocks = new Blocks()
    blocks.push(0, 1, 2)
    blocks.push(1, 0, 2)
    expect(gatherer.column(label, moved, blocks).toArray()).toEqual(['a', 'a', 'a', 'b'])
    // The decoded columns are left as they were.
    expect(buckets.map((column) => column!.toArray())).toEqual([
      ['a', 'b', 'a'],
      ['c', 'a'],
    ])
  })

  it('leaves a window with nulls or a bucket without the field to the row-by-row gather', () => {
    const one = Uint32Array.from([0, 0])
    const rows = Uint32Array.from([0, 1])
    const swap = Uint32Array.from([1, 0])
    expect(permuteCategorical([valuesColumn(label as never, ['a', null])], one, rows, swap)).toBeNull()
    expect(permuteCategorical([null], one, rows, swap)).toBeNull()
  })
})

describe('permuteVectorsAside', () => {
  const dim = 3
  const field: Field = { ...embedding, dim } as Field
  /** Buckets of `sizes` records, vector k = [k, k + 0.5, -k], in shared or ordinary memory. */
  const window = (sizes: number[], shared: boolean) => {
    let k = 0
    return sizes.map((n) => {
      const memory = shared ? new SharedArrayBuffer(8 + n * dim * 4) : new ArrayBuffer(8 + n * dim * 4)
      // At a byte offset, as a column decoded out of an object is.
      const flat = new Float32Array(memory, 8, n * dim)
      for (let r = 0; r < n; r++, k++) flat.set([k, k + 0.5, -k], r * dim)
      return embeddingColumn(field as never, flat)
    })
  }
  const layout = (sizes: number[]) => {
    const total = sizes.reduce((a, b) => a + b, 0)
    const bucketOf = new Uint32Array(total)
    const rowOf = new Uint32Array(total)
    let p = 0
    sizes.forEach((n, b) => {
      for (let r = 0; r < n; r++, p++) {
        bucketOf[p] = b
        rowOf[p] = r
      }
    })
    // A fixed shuffle with cycles inside one bucket and across buckets, and a fixed point.
    const order = Uint32Array.from({ length: total }, (_, i) => (i * 7 + 3) % total)
    return { bucketOf, rowOf, order }
  }
  const threads = readThreadsForWork()

  it.runIf(threads !== undefined)(
    'moves shared rows on a read thread exactly as permuteVectorsInPlace moves them here',
    async () => {
      for (const sizes of [[10], [4, 6], [5, 1, 7]]) {
        const { bucketOf, rowOf, order } = layout(sizes)
        const expected = window(sizes, false)
        expect(permuteVectorsInPlace(dim, expected, bucketOf, rowOf, order)).toBe(true)
        const aside = window(sizes, true)
        const moved = await permuteVectorsAside(field, aside, bucketOf, rowOf, order, (p, s) =>
          threads!.permuteRows(p, s),
        )
        expect(moved).toBe(true)
        expect(aside.map(plain)).toEqual(expected.map(plain))
        // Position p holds the record order[p] held (records numbered in window order).
        const flat = aside.flatMap(plain) as number[][]
        expect(flat.map((v) => v[0])).toEqual([...order])
      }
    },
  )

  it('leaves columns in ordinary memory to the caller, unchanged', async () => {
    const sizes = [4, 6]
    const { bucketOf, rowOf, order } = layout(sizes)
    const columns = window(sizes, false)
    const before = columns.map(plain)
    let called = false
    const moved = await permuteVectorsAside(field, columns, bucketOf, rowOf, order, async (p) => {
      called = true
      return p.buffers
    })
    expect(moved).toBe(false)
    expect(called).toBe(false)
    expect(columns.map(plain)).toEqual(before)
  })
})
