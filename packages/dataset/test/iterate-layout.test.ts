/**
 * A shuffled window of several buckets is laid out so that each batch's embedding rows are
 * consecutive rows of one bucket's buffer (a view, not a copy), without changing which
 * record a batch holds.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  BufferPool,
  type GetOptions,
  type ManyOptions,
  openStore,
  type RowGroup,
  type Store,
} from '@dreamdb/cas'
import type { Bucket, Field } from '@dreamdb/manifest'
import {
  Field as ArrowField,
  FixedSizeList,
  Float32,
  type RecordBatch,
  Table,
  tableFromIPC,
  tableToIPC,
  vectorFromArray,
} from 'apache-arrow'
import { describe, expect, it } from 'vitest'
import { Dataset } from '../src/index.js'
import { layoutOf, movedInPlace } from '../src/iterate.js'

describe('layoutOf', () => {
  const starts = (...sizes: number[]) => {
    const out = new Uint32Array(sizes.length + 1)
    sizes.forEach((n, b) => {
      out[b + 1] = out[b]! + n
    })
    return out
  }
  /** Each batch stretch of the window (cut at multiples of `batch` of the epoch offset) in one bucket, consecutively. */
  /**
   * Each batch stretch of the window (cut at multiples of `batch` of the epoch's offset) is
   * consecutive rows of one bucket, every index used once; `moved`: not the identity.
   */
  const check = (sizes: number[], windowStart: number, batch: number, moved: boolean) => {
    const bucketStart = starts(...sizes)
    const total = bucketStart[sizes.length]!
    const layout = layoutOf(bucketStart, windowStart, batch)
    expect(layout !== null).toBe(moved)
    const slot = layout ?? Uint32Array.from({ length: total }, (_, i) => i)
    expect([...slot].sort((a, b) => a - b)).toEqual(Array.from({ length: total }, (_, i) => i))
    const bucketOf = (i: number) => sizes.findIndex((_, b) => i < bucketStart[b + 1]!)
    for (let p = 1; p < total; p++) {
      if ((windowStart + p) % batch === 0) continue
      expect(slot[p]).toBe(slot[p - 1]! + 1)
      expect(bucketOf(slot[p]!)).toBe(bucketOf(slot[p - 1]!))
    }
  }

  it('leaves one bucket, or batches that cross no bucket, where they are', () => {
    expect(layoutOf(starts(16), 3, 8)).toBeNull()
    expect(layoutOf(starts(8, 8), 0, 8)).toBeNull()
    expect(layoutOf(starts(8, 8), 16, 4)).toBeNull()
  })

  it('puts every batch of a window in one bucket when the stretches fit', () => {
    check([8, 8], 4, 8, true)
    check([4, 8], 0, 8, true)
    check([4, 8], 4, 8, false)
    check([8, 4], 0, 8, false)
    check([8192, 8192], 1696, 4096, true)
    check([8192, 1696, 8192], 0, 4096, true)
    check([6, 10], 2, 8, false)
  })

  it('gives up (null) when a stretch fits no bucket', () => {
    expect(layoutOf(starts(6, 10), 0, 8)).toBeNull()
  })
})

describe('shuffled windows of several buckets', () => {
  const DIM = 4
  it('hand out batches inside a window as views, with the same records', async () => {
    // Buckets of 8 records and one of 4, two buckets a window, batches of 8: the short
    // bucket shifts the windows after it off the batch grid, so their bucket boundary falls
    // inside a batch.
    const ds = await Dataset.create('layout', {
      backend: await openStore('memory://'),
      schema: {
        fields: [
          { name: 'embedding', family: 'embedding', dim: DIM },
          { name: 'id', family: 'scalar', kind: 'int' },
        ],
      },
    })
    const sizes = [8, 8, 8, 4, 8, 8, 8, 8, 8, 8]
    let next = 0
    for (const n of sizes) {
      await ds.appendMany(
        Array.from({ length: n }, () => {
          const id = next++
          return { embedding: Float32Array.from({ length: DIM }, (_, d) => id + d / 10), id }
        }),
        { bucketRecords: 8 },
      )
    }
    expect(ds.manifest.stats.buckets).toBe(sizes.length)
    const windows = sizes.length / 2
    for (const recycleBuffers of [undefined, new BufferPool()]) {
      for (let seed = 1; seed <= 6; seed++) {
        const seen: number[] = []
        let copied = 0
        for await (const batch of ds.iterArrowBatches({
          batchSize: 8,
          shuffleSeed: seed,
          shuffleWindow: 16,
          ...(recycleBuffers ? { recycleBuffers } : {}),
        })) {
          const values = vectorsOf(batch)
          const ids = Array.from(batch.getChild('id')!.toArray() as BigInt64Array | Int32Array, Number)
          // Each row's vector is its own record's.
          expect(Array.from({ length: batch.numRows }, (_, i) => values[i * DIM])).toEqual(ids)
          expect(Array.from({ length: batch.numRows }, (_, i) => values[i * DIM + 3])).toEqual(
            ids.map((id) => Math.fround(id + 0.3)),
          )
          // A gathered batch has a buffer of its own rows; a view shares its bucket's.
          if (values.buffer.byteLength === values.byteLength) copied++
          seen.push(...ids)
        }
        expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: next }, (_, i) => i))
        // Only a batch spanning two windows is copied: at most one per window boundary.
        expect(copied).toBeLessThanOrEqual(windows - 1)
      }
    }
  })
})

describe('shuffled windows', () => {
  it('move anchors and categorical ids with their records (one bucket a window, and several)', async () => {
    const ds = await Dataset.create('moved', {
      backend: await openStore('memory://'),
      schema: {
        fields: [
          { name: 'embedding', family: 'embedding', dim: 2 },
          { name: 'id', family: 'scalar', kind: 'int' },
          { name: 'label', family: 'scalar', kind: 'categorical' },
        ],
      },
    })
    const records = 100
    await ds.appendMany(
      Array.from({ length: records }, (_, id) => ({
        embedding: [id, -id],
        id,
        // Runs of 5 records a class: each bucket's dictionary holds other values, in
        // another order, so a window of several buckets must renumber them.
        label: `class-${Math.floor(id / 5) % 9}`,
      })),
      { bucketRecords: 16 },
    )
    // Each record's anchor, from a pass in append order.
    const anchorOf = new Map<number, bigint>()
    for await (const batch of ds.iterArrowBatches({ batchSize: 32 })) {
      const anchors = batch.getChild('_anchor')!.toArray() as BigUint64Array
      const ids = batch.getChild('id')!.toArray() as Int32Array
      ids.forEach((id, i) => {
        anchorOf.set(Number(id), anchors[i]!)
      })
    }
    for (const shuffleWindow of [16, 48]) {
      for (const fields of [undefined, ['label', 'id']]) {
        const seen: number[] = []
        for await (const batch of ds.iterArrowBatches({
          batchSize: 12,
          shuffleSeed: 3,
          shuffleWindow,
          ...(fields ? { fields } : {}),
        })) {
          const ids = Array.from(batch.getChild('id')!.toArray() as Int32Array, Number)
          const anchors = batch.getChild('_anchor')!.toArray() as BigUint64Array
          const labels = batch.getChild('label')!
          ids.forEach((id, i) => {
            expect(anchors[i]).toBe(anchorOf.get(id))
            expect(labels.get(i)).toBe(`class-${Math.floor(id / 5) % 9}`)
          })
          seen.push(...ids)
        }
        expect(seen).not.toEqual(Array.from({ length: records }, (_, i) => i))
        expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: records }, (_, i) => i))
      }
    }
  })
})

const vectorsOf = (batch: RecordBatch) =>
  batch.getChild('embedding')!.data[0]!.children[0]!.values as Float32Array

describe('shuffled windows moved on the read threads', () => {
  it('takes a move as done only where the rows lie 8 bytes before the object’s end', () => {
    const field = {
      name: 'embedding',
      family: 'embedding',
      dim: 4,
      spatialIndex: null,
      compressor: null,
    } as Field
    const rows = Array.from({ length: 10 }, (_, i) => Float32Array.from([i, i, i, i]))
    const vectors = vectorFromArray(rows, new FixedSizeList(4, new ArrowField('item', new Float32(), false)))
    const bytes = tableToIPC(new Table({ embedding: vectors }), 'stream')
    // Decoded from a buffer of its own, as a read hands it over.
    const column = tableFromIPC(new Uint8Array(bytes)).getChild('embedding')!
    const bucket = (size: number) =>
      ({ records: 10, fields: { embedding: { cid: 'x', bytes: size } } }) as unknown as Bucket
    // The values of a stream from Arrow JS end 8 bytes before it does (its end marker).
    expect(movedInPlace(field, [column], [bucket(bytes.byteLength)])).toBe(true)
    expect(movedInPlace(field, [column], [bucket(bytes.byteLength + 8)])).toBe(false)
    expect(movedInPlace(field, [null], [bucket(bytes.byteLength)])).toBe(false)
  })

  it('the rows a read thread moved as it read (one bucket a window, and two) are each record’s own, in the order of a read without threads', async () => {
    const root = await mkdtemp(join(tmpdir(), 'dreamdb-moved-'))
    try {
      // 4 096 records of 64-d a bucket: each embedding object is 1 MiB and a little, read
      // and hashed on a read thread.
      const DIM = 64
      const schema = {
        fields: [
          { name: 'embedding', family: 'embedding' as const, dim: DIM },
          { name: 'id', family: 'scalar' as const, kind: 'int' as const },
        ],
      }
      const ds = await Dataset.create('moved', { backend: await openStore(root), schema })
      const records = 4 * 4096
      await ds.appendMany(
        Array.from({ length: records }, (_, id) => ({
          embedding: Float32Array.from({ length: DIM }, (_, d) => id + d / 128),
          id,
        })),
        { bucketRecords: 4096 },
      )
      expect(ds.manifest.stats.buckets).toBe(4)
      const pass = async (store: Store, options: Record<string, unknown>) => {
        const ids: number[] = []
        const reader = await Dataset.openRef('moved', { backend: store })
        for await (const batch of reader.iterArrowBatches({ batchSize: 1000, shuffleSeed: 5, ...options })) {
          const values = vectorsOf(batch)
          const batchIds = Array.from(batch.getChild('id')!.toArray() as BigInt64Array | Int32Array, Number)
          batchIds.forEach((id, i) => {
            expect(values[i * DIM]).toBe(id)
            expect(values[i * DIM + DIM - 1]).toBe(Math.fround(id + (DIM - 1) / 128))
          })
          ids.push(...batchIds)
        }
        return ids
      }
      for (const shuffleWindow of [4096, 8192]) {
        for (const recycleBuffers of [undefined, new BufferPool()]) {
          const options = { shuffleWindow, ...(recycleBuffers ? { recycleBuffers } : {}) }
          const expected = await pass(await openStore(root, { readThreads: false }), options)
          const { store, moved } = countingMoves(await openStore(root, { readThreads: true }))
          expect(await pass(store, options)).toEqual(expected)
          // Every window's embeddings were moved on a read thread, not here.
          expect(moved.parts).toBe(4)
          expect(expected.slice().sort((a, b) => a - b)).toEqual(Array.from({ length: records }, (_, i) => i))
          // Rows moved where they do not lie: found after decoding, and the window read again.
          const misplaced = countingMoves(await openStore(root, { readThreads: true }), 0)
          expect(await pass(misplaced.store, options)).toEqual(expected)
          expect(misplaced.moved.parts).toBe(4)
        }
      }
    } finally {
      await rm(root, { recursive: true, force: true })
    }
  })
})

/**
 * A store that counts the parts whose rows a read thread moved (`GetOptions.rows`); with
 * `trailer`, it tells the read threads the rows end that many bytes before the object's end
 * instead (a wrong guess, as for an object another Arrow writer laid out).
 */
function countingMoves(store: Store, trailer?: number): { store: Store; moved: { parts: number } } {
  const moved = { parts: 0 }
  const groups = new WeakMap<RowGroup, RowGroup>()
  const counted = (rows: GetOptions['rows']): GetOptions['rows'] =>
    typeof rows !== 'function'
      ? rows
      : (cid) => {
          const order = rows(cid)
          if (order !== undefined && trailer !== undefined && !groups.has(order.group))
            groups.set(order.group, { ...order.group, trailer })
          return (
            order && {
              ...order,
              group: groups.get(order.group) ?? order.group,
              moved: (at?: number) => {
                moved.parts++
                order.moved(at)
              },
            }
          )
        }
  const proxy = new Proxy(store, {
    get(target, key, receiver) {
      if (key === 'getMany')
        return (cids: Parameters<Store['getMany']>[0], options: ManyOptions = {}) =>
          target.getMany(cids, { ...options, rows: counted(options.rows) })
      const value = Reflect.get(target, key, receiver)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
  return { store: proxy, moved }
}
