import { describe, expect, it } from 'vitest'
import { type CompactProgress, Dataset, type ResumeState } from '../src/index.js'
import { permutation, windowOrder } from '../src/plan.js'
import { dataset, idsOf, record, SCHEMA } from './helpers.js'

async function collect(stream: AsyncIterable<import('apache-arrow').RecordBatch>) {
  const batches = []
  for await (const batch of stream) batches.push(batch)
  return batches
}

describe('iterArrowBatches', () => {
  it('yields _anchor plus the requested columns with their Arrow types', async () => {
    const { ds } = await dataset(45)
    const batches = await collect(ds.iterArrowBatches({ batchSize: 16 }))
    expect(batches.map((b) => b.numRows)).toEqual([16, 16, 13])
    const first = batches[0]!
    expect(first.schema.fields.map((f) => `${f.name}:${f.type}`)).toEqual([
      '_anchor:Uint64',
      'image:Binary',
      'embedding:FixedSizeList[8]<Float32>',
      'label:Dictionary<Int32, Utf8>',
    ])
    expect(idsOf(first).slice(0, 3)).toEqual([0, 1, 2])
    expect(new TextDecoder().decode(first.getChild('image')!.get(2) as Uint8Array)).toBe('image-2')
    expect(first.getChild('label')!.get(7)).toBe('class-2')
    expect(typeof first.getChild('_anchor')!.get(0)).toBe('bigint')
  })

  it('projection: iterating embedding and label never reads an image byte', async () => {
    const { ds, store } = await dataset(60)
    const read: string[] = []
    const get = store.get.bind(store)
    store.get = (cid, options) => {
      read.push(cid.toString())
      return get(cid, options)
    }
    const imageObjects = new Set<string>()
    for await (const { bucket } of ds.repository.buckets(ds.manifest)) {
      for (const [key, o] of Object.entries(bucket.fields))
        if (key.startsWith('image')) imageObjects.add(o.cid.toString())
    }
    const rows = (
      await collect(ds.iterArrowBatches({ fields: ['embedding', 'label'], batchSize: 32 }))
    ).reduce((n, b) => n + b.numRows, 0)
    expect(rows).toBe(60)
    expect(read.filter((c) => imageObjects.has(c))).toEqual([])
    expect(read.length).toBeGreaterThan(0)
  })

  // One dataset for the six splits (they only read it): 203 records in 68 buckets.
  let split: ReturnType<typeof dataset> | undefined
  for (const workers of [1, 2, 4]) {
    for (const ranks of [1, 3]) {
      it(`${workers} workers x ${ranks} ranks: every record exactly once, every rank the same number of batches`, async () => {
        split ??= dataset(203, { bucketRecords: 3 })
        const { ds } = await split
        const seen: number[] = []
        const perRank: number[] = []
        for (let rank = 0; rank < ranks; rank++) {
          let batches = 0
          for (let worker = 0; worker < workers; worker++) {
            for (const batch of await collect(
              ds.iterArrowBatches({
                batchSize: 8,
                shuffleSeed: 7,
                epoch: 1,
                rank,
                worldSize: ranks,
                worker,
                numWorkers: workers,
              }),
            )) {
              seen.push(...idsOf(batch))
              batches++
            }
          }
          perRank.push(batches)
        }
        expect(seen.length).toBe(203)
        expect(new Set(seen).size).toBe(203)
        expect(new Set(perRank).size).toBe(1)
      })
    }
  }

  it('shuffles deterministically for a seed, and differently for another epoch', async () => {
    const { ds } = await dataset(120, { bucketRecords: 2 })
    const order = async (epoch: number, seed = 42) =>
      (await collect(ds.iterArrowBatches({ batchSize: 10, shuffleSeed: seed, epoch }))).flatMap(idsOf)
    const a = await order(0)
    expect(await order(0)).toEqual(a)
    const b = await order(1)
    expect(b).not.toEqual(a)
    expect([...b].sort((x, y) => x - y)).toEqual([...a].sort((x, y) => x - y))
    expect(a).not.toEqual([...a].sort((x, y) => x - y))
  })

  it('a shuffled batch is a random subset of its window, its rows in source order', async () => {
    // Windows of one 50-record bucket (appended 50 at a time), batches of 10: five stretches a window.
    const { ds } = await dataset(200, { bucketRecords: 50 })
    const batches = (
      await collect(ds.iterArrowBatches({ batchSize: 10, shuffleSeed: 7, shuffleWindow: 50 }))
    ).map(idsOf)
    expect(batches.flat().sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i))
    for (const ids of batches) expect(ids).toEqual([...ids].sort((a, b) => a - b))
    // Not the bucket cut in slices: batches mix the window's records.
    expect(batches.filter((ids) => ids.at(-1)! - ids[0]! > 10).length).toBeGreaterThan(10)
  })

  it('windowOrder: the permutation’s stretches (on the epoch’s batch grid), each sorted', () => {
    for (const [records, start, batch] of [
      [40, 0, 8],
      [100, 7, 9],
      [37, 3, 100],
      [1, 0, 1],
    ] as const) {
      const order = windowOrder(records, 99, start, batch)
      const plain = permutation(records, 99)
      for (let from = 0; from < records; ) {
        const to = Math.min(records, from + batch - ((start + from) % batch))
        expect([...order.subarray(from, to)]).toEqual([...plain.subarray(from, to)].sort((a, b) => a - b))
        from = to
      }
    }
  })

  it('resumes mid-epoch in a new iterator with no record repeated or skipped', async () => {
    // 3-record buckets: 50 buckets over two timeline leaves, so resumption crosses units.
    const { ds } = await dataset(150, { bucketRecords: 3 })
    const options = { batchSize: 7, shuffleSeed: 3, epoch: 2, rank: 1, worldSize: 2 }
    const full = (await collect(ds.iterArrowBatches(options))).flatMap(idsOf)
    const stream = ds.iterArrowBatches(options)
    const before: number[] = []
    let state: ResumeState | undefined
    for await (const batch of stream) {
      before.push(...idsOf(batch))
      if (before.length >= 30) {
        state = JSON.parse(JSON.stringify(stream.state()))
        break
      }
    }
    const reopened = await Dataset.openAt(ds.currentManifest(), { backend: ds.store })
    const after = (await collect(reopened.iterArrowBatches({ ...options, resumeFrom: state! }))).flatMap(
      idsOf,
    )
    expect([...before, ...after]).toEqual(full)
  })

  it('timeRange yields only the records appended within it', async () => {
    const { ds } = await dataset(40)
    await new Promise((r) => setTimeout(r, 5))
    const from = Date.now()
    await ds.appendMany([100, 101, 102].map((id) => ({ ...recordOf(id) })))
    const batches = await collect(ds.iterArrowBatches({ timeRange: [from, Date.now()] }))
    expect(batches.flatMap(idsOf)).toEqual([100, 101, 102])
  })

  it.each([
    [{ batchSize: 0 }, 'ERR_DATASET_INVALID_OPTION', 'batchSize'],
    [{ fields: ['nope'] }, 'ERR_DATASET_UNKNOWN_FIELD', "'nope'"],
    [{ worker: 2, numWorkers: 2 }, 'ERR_DATASET_INVALID_OPTION', 'worker'],
    [{ rank: -1 }, 'ERR_DATASET_INVALID_OPTION', 'rank'],
    [{ timeRange: [5, 1] }, 'ERR_DATASET_INVALID_OPTION', 'timeRange'],
  ])('rejects %j before reading anything', async (options, code, words) => {
    const { ds } = await dataset(10)
    let error: (Error & { code?: string }) | undefined
    try {
      ds.iterArrowBatches(options as never)
    } catch (e) {
      error = e as Error & { code?: string }
    }
    expect(error?.code).toBe(code)
    expect(error?.message).toContain(words)
  })

  it('rejects a resume state from another manifest', async () => {
    const { ds } = await dataset(30)
    const stream = ds.iterArrowBatches({ batchSize: 5 })
    for await (const _ of stream) break
    const state = stream.state()
    await ds.appendMany([recordOf(999)])
    let error: (Error & { code?: string }) | undefined
    try {
      ds.iterArrowBatches({ batchSize: 5, resumeFrom: state })
    } catch (e) {
      error = e as Error & { code?: string }
    }
    expect(error?.code).toBe('ERR_DATASET_RESUME_MISMATCH')
    expect(error?.message).toContain('manifest')
  })
})

function recordOf(id: number) {
  return {
    image: new TextEncoder().encode(`image-${id}`),
    embedding: Array.from({ length: 8 }, (_, d) => (d === 0 ? id : 0)),
    label: `class-${id % 5}`,
  }
}

describe('batches of one iteration', () => {
  it('share one schema, so they form one Table and one IPC stream', async () => {
    const { Table, tableFromIPC, tableToIPC } = await import('apache-arrow')
    const { ds } = await dataset(70)
    const batches = await collect(ds.iterArrowBatches({ batchSize: 16, shuffleSeed: 1 }))
    const table = new Table(batches)
    expect(table.numRows).toBe(70)
    const back = tableFromIPC(tableToIPC(table, 'stream'))
    expect(back.getChild('label')!.toArray()).toEqual(table.getChild('label')!.toArray())
    expect(back.getChild('_anchor')!.toArray()).toEqual(table.getChild('_anchor')!.toArray())
  })
})

describe('shuffled batches', () => {
  it('keep every row whole: its embedding (moved in place per window), anchor, label and image agree', async () => {
    const { ds } = await dataset(100, { bucketRecords: 20 })
    for (const batchSize of [16, 5]) {
      const batches = await collect(ds.iterArrowBatches({ batchSize, shuffleSeed: 9, shuffleWindow: 40 }))
      const ids = batches.flatMap(idsOf)
      expect([...ids].sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i))
      expect(ids).not.toEqual([...ids].sort((a, b) => a - b))
      const anchors = batches.flatMap((b) => Array.from(b.getChild('_anchor')!.toArray() as BigUint64Array))
      const first = [...anchors].sort((a, b) => (a < b ? -1 : 1))[0]!
      for (const batch of batches) {
        for (let i = 0; i < batch.numRows; i++) {
          const id = idsOf(batch)[i]!
          expect(Number((batch.getChild('_anchor')!.get(i) as bigint) - first)).toBe(id)
          expect(batch.getChild('label')!.get(i)).toBe(`class-${id % 5}`)
          expect(new TextDecoder().decode(batch.getChild('image')!.get(i) as Uint8Array)).toBe(`image-${id}`)
          expect(Array.from(batch.getChild('embedding')!.get(i) as Iterable<number>)).toEqual(
            Array.from({ length: 8 }, (_, d) => Math.fround(d === 0 ? id : Math.sin(id * (d + 1)))),
          )
        }
      }
    }
  })
})

describe('in-order batches', () => {
  it('hold the right values whether they lie inside one bucket (shared bytes) or span several (gathered)', async () => {
    const { ds } = await dataset(100, { bucketRecords: 20 })
    for (const batchSize of [5, 20, 7, 100]) {
      const batches = await collect(ds.iterArrowBatches({ batchSize, fields: ['image', 'embedding'] }))
      const ids = batches.flatMap(idsOf)
      expect(ids).toEqual(Array.from({ length: 100 }, (_, i) => i))
      const images = batches.flatMap((b) =>
        Array.from({ length: b.numRows }, (_, i) => new TextDecoder().decode(b.getChild('image')!.get(i))),
      )
      expect(images).toEqual(ids.map((id) => `image-${id}`))
      for (const batch of batches) {
        const embedding = batch.getChild('embedding')!
        for (let i = 0; i < batch.numRows; i++) {
          const id = idsOf(batch)[i]!
          expect(Array.from(embedding.get(i) as Iterable<number>)).toEqual(
            Array.from({ length: 8 }, (_, d) => Math.fround(d === 0 ? id : Math.sin(id * (d + 1)))),
          )
        }
      }
    }
    // Four batches of 5 inside the first bucket of 20 are views of the same bytes as read.
    const [first, second] = await collect(ds.iterArrowBatches({ batchSize: 5, fields: ['embedding'] }))
    const valuesOf = (b: typeof first) =>
      b!.getChild('embedding')!.data[0]!.children[0]!.values as Float32Array
    expect(valuesOf(first).buffer).toBe(valuesOf(second).buffer)
  })

  it('span more buckets than are prefetched (a batch keeps its windows until built), recycled or not', async () => {
    // Windows of one 2-record bucket, one prefetched: a batch of 40 spans 20 windows.
    const { ds } = await dataset(60, { bucketRecords: 2 })
    for (const recycleBuffers of [false, true]) {
      const options = { batchSize: 40, shuffleWindow: 2, prefetch: 1, recycleBuffers }
      const batches = await collect(ds.iterArrowBatches({ ...options, fields: ['embedding'] }))
      expect(batches.flatMap(idsOf)).toEqual(Array.from({ length: 60 }, (_, i) => i))
    }
  })
})

describe('categorical columns', () => {
  it('share one dictionary across batches, so a class keeps its index from batch to batch', async () => {
    const { ds } = await dataset(100, { bucketRecords: 20 })
    const batches = await collect(ds.iterArrowBatches({ batchSize: 16, fields: ['label'], shuffleSeed: 3 }))
    const indexOf = new Map<string, number>()
    for (const batch of batches) {
      const data = batch.getChild('label')!.data[0]!
      for (let i = 0; i < batch.numRows; i++) {
        const label = batch.getChild('label')!.get(i) as string
        const index = (data.values as Int32Array)[data.offset + i]!
        expect(data.dictionary!.get(index)).toBe(label)
        expect(indexOf.get(label) ?? index).toBe(index)
        indexOf.set(label, index)
      }
    }
    expect([...indexOf.keys()].sort()).toEqual(['class-0', 'class-1', 'class-2', 'class-3', 'class-4'])
  })

  it('beyond 65 536 distinct values, each batch carries just the values it uses', async () => {
    const ds = await Dataset.create('captions', {
      backend: 'memory://',
      schema: { fields: [{ name: 'caption', family: 'scalar', kind: 'categorical' }] },
    })
    const count = 70_000
    await ds.appendMany(Array.from({ length: count }, (_, i) => ({ caption: `caption ${i}` })))
    let seen = 0
    let largest = 0
    let lastDictionary = 0
    // Every value checked, one assertion at the end (70 000 expect() calls took seconds).
    const wrong: string[] = []
    for await (const batch of ds.iterArrowBatches({ batchSize: 4096 })) {
      const column = batch.getChild('caption')!
      const anchors = batch.getChild('_anchor')!
      lastDictionary = column.data[0]!.dictionary!.length
      largest = Math.max(largest, lastDictionary)
      for (let i = 0; i < batch.numRows; i++) {
        const want = `caption ${Number(anchors.get(i)) - 1}`
        if (column.get(i) !== want) wrong.push(`${String(column.get(i))} for ${want}`)
      }
      seen += batch.numRows
    }
    expect(wrong.slice(0, 5)).toEqual([])
    expect(seen).toBe(count)
    // Once more than 65 536 values are interned, a batch's dictionary is its own 4 096 at most.
    expect(lastDictionary).toBeLessThanOrEqual(4096)
    expect(largest).toBeLessThanOrEqual(65_536)
  })
})

describe('binary fields in several fragments per bucket', () => {
  const text = (v: unknown) => new TextDecoder().decode(v as Uint8Array)
  it('round-trip in order, shuffled and projected, next to buckets of one fragment', {
    timeout: 20_000,
  }, async () => {
    const { openStore } = await import('@dreamdb/cas')
    const store = await openStore('memory://')
    const ds = await Dataset.create('corpus', { backend: store, schema: SCHEMA })
    // 20 records in the layout of one fragment per bucket, then 100 in buckets of 50 whose
    // images (`image-<id>`, 7-9 bytes) are cut into fragments of at most 64 bytes.
    await ds.appendMany(Array.from({ length: 20 }, (_, i) => record(i)))
    await ds.appendMany(
      Array.from({ length: 100 }, (_, i) => record(20 + i)),
      { bucketRecords: 50, fragmentBytes: 64 },
    )
    const buckets = []
    for await (const { bucket } of ds.repository.buckets(ds.manifest)) buckets.push(bucket)
    expect(buckets.map((b) => b.records)).toEqual([20, 50, 50])
    expect(Object.keys(buckets[0]!.fields).filter((k) => k.startsWith('image/fragment-'))).toEqual([])
    expect(Object.keys(buckets[1]!.fields).filter((k) => k.startsWith('image/fragment-')).length).toBe(6)
    for (const [batchSize, shuffleSeed] of [
      [5, undefined],
      [60, undefined],
      [7, 3],
    ] as const) {
      const batches = await collect(
        ds.iterArrowBatches({
          batchSize,
          fields: ['image', 'embedding'],
          ...(shuffleSeed === undefined ? {} : { shuffleSeed }),
          shuffleWindow: 40,
        }),
      )
      const ids = batches.flatMap(idsOf)
      expect([...ids].sort((a, b) => a - b)).toEqual(Array.from({ length: 120 }, (_, i) => i))
      for (const batch of batches) {
        const images = Array.from({ length: batch.numRows }, (_, i) => text(batch.getChild('image')!.get(i)))
        expect(images).toEqual(idsOf(batch).map((id) => `image-${id}`))
      }
    }
    // With recycled read buffers too (each batch checked before the next is asked for).
    let seen = 0
    for await (const batch of ds.iterArrowBatches({
      batchSize: 16,
      fields: ['image', 'embedding'],
      recycleBuffers: true,
    })) {
      const images = Array.from({ length: batch.numRows }, (_, i) => text(batch.getChild('image')!.get(i)))
      expect(images).toEqual(idsOf(batch).map((id) => `image-${id}`))
      seen += batch.numRows
    }
    expect(seen).toBe(120)
    // A batch inside one fragment is a view of it, as with one fragment per bucket.
    const pairs = await collect(ds.iterArrowBatches({ batchSize: 2, fields: ['image'] }))
    const [a, b] = [pairs[10], pairs[11]]
    const bytesOf = (batch: typeof a) => batch!.getChild('image')!.data[0]!.values as Uint8Array
    expect(text(a!.getChild('image')!.get(0))).toBe('image-20')
    expect(bytesOf(a).buffer).toBe(bytesOf(b).buffer)

    // Projection: an embedding-only pass reads no image object, fragment or index.
    const imageObjects = new Set(
      buckets.flatMap((bucket) =>
        Object.entries(bucket.fields)
          .filter(([key]) => key.startsWith('image'))
          .map(([, o]) => o.cid.toString()),
      ),
    )
    const read: string[] = []
    const getMany = store.getMany.bind(store)
    store.getMany = async function* (cids, options) {
      const list = []
      for await (const cid of cids) list.push(cid)
      read.push(...list.map(String))
      yield* getMany(list, options)
    }
    const rows = (await collect(ds.iterArrowBatches({ fields: ['embedding'], batchSize: 32 }))).reduce(
      (n, batch) => n + batch.numRows,
      0,
    )
    expect(rows).toBe(120)
    expect(read.length).toBeGreaterThan(0)
    expect(read.filter((c) => imageObjects.has(c))).toEqual([])

    // Compaction keeps every image (the merged bucket's images fit in one fragment), and
    // stops a merge at `targetBytes` of images (150 + 400 bytes fit in 600; 400 more do not).
    await ds.compact({ targetRecords: 200, targetBytes: 600 })
    const sizes = async () => {
      const out = []
      for await (const { bucket } of ds.repository.buckets(ds.manifest)) out.push(bucket.records)
      return out
    }
    expect(await sizes()).toEqual([70, 50])
    await ds.compact({ targetRecords: 200 })
    expect(await sizes()).toEqual([120])
    const compacted = await collect(ds.iterArrowBatches({ batchSize: 120, fields: ['image', 'embedding'] }))
    expect(
      idsOf(compacted[0]!).map((id, i) => text(compacted[0]!.getChild('image')!.get(i)) === `image-${id}`),
    ).not.toContain(false)
  })
})

describe('appendMany without bucketRecords', () => {
  it('sizes buckets as a power of two that keeps the embeddings near 16 MiB', async () => {
    for (const [dim, records, expected] of [
      [8, 40_000, [32_768, 7232]],
      [512, 10_000, [8192, 1808]],
      [1536, 10_000, [2048, 2048, 2048, 2048, 1808]],
    ] as const) {
      const ds = await Dataset.create('sized', {
        backend: 'memory://',
        schema: { fields: [{ name: 'embedding', family: 'embedding', dim }] },
      })
      const vector = new Float32Array(dim).fill(0.5)
      await ds.appendMany(Array.from({ length: records }, () => ({ embedding: vector })))
      const sizes = []
      for await (const { bucket } of ds.repository.buckets(ds.manifest)) sizes.push(bucket.records)
      expect(sizes).toEqual(expected)
    }
  })
})

describe('appendMany without bucketRecords, with images', () => {
  it('halves the records per bucket while the images at their mean size exceed bucketBytes', async () => {
    const ds = await Dataset.create('sized', { backend: 'memory://', schema: SCHEMA })
    const records = Array.from({ length: 3000 }, (_, id) => ({ ...record(id), image: new Uint8Array(1000) }))
    // 32 768 records of 1 kB images would be 32 MB: halved to 1 024 (1 MB) to fit 1 MiB.
    await ds.appendMany(records, { bucketBytes: 1 << 20 })
    const sizes = []
    for await (const { bucket } of ds.repository.buckets(ds.manifest)) sizes.push(bucket.records)
    expect(sizes).toEqual([1024, 1024, 952])
  })
})

describe('fields added later', () => {
  it('read as nulls for records appended before the field existed', async () => {
    const { ds } = await dataset(10)
    const pinned = await Dataset.openAt(await ds.snapshot('before-split'), { backend: ds.store })
    const manifest = await ds.addFields([{ name: 'split', family: 'scalar', kind: 'categorical' }], {
      message: 'splits from now on',
    })
    expect(ds.currentManifest()).toBe(manifest)
    expect(ds.manifest.change).toEqual({ kind: 'schema', added: ['split'], replaced: [] })
    expect(ds.manifest.message).toBe('splits from now on')
    // Refused before anything is written: nothing to add, a taken name, a bad definition, a pinned state.
    const refusals: [() => Promise<unknown>, string, string][] = [
      [() => ds.addFields([]), 'ERR_DATASET_INVALID_OPTION', 'at least one field'],
      [
        () => ds.addFields([{ name: 'label', family: 'scalar', kind: 'string' }]),
        'ERR_MANIFEST_INVALID_SCHEMA',
        'label',
      ],
      [
        () => ds.addFields([{ name: 'clip', family: 'embedding', dim: 0 }]),
        'ERR_MANIFEST_INVALID_SCHEMA',
        'dim',
      ],
      [() => pinned.addFields([{ name: 'x', family: 'scalar', kind: 'int' }]), 'ERR_DATASET_READ_ONLY', ''],
    ]
    for (const [attempt, code, words] of refusals) {
      const error = (await attempt().then(
        () => undefined,
        (e: unknown) => e,
      )) as { code?: string; message?: string } | undefined
      expect(error?.code).toBe(code)
      expect(error?.message).toContain(words)
    }
    expect(await ds.refresh()).toBe(manifest)
    await ds.appendMany([
      { ...recordOf(50), split: 'train' },
      { ...recordOf(51), split: 'validation' },
    ])
    const splits: (string | null)[] = []
    for await (const batch of ds.iterArrowBatches({ fields: ['split'], batchSize: 4 })) {
      for (let i = 0; i < batch.numRows; i++) splits.push(batch.getChild('split')!.get(i) as string | null)
    }
    expect(splits).toEqual([...new Array(10).fill(null), 'train', 'validation'])
  })

  it('embeddings and bytes read as nulls too, not as zero vectors or empty bytes', async () => {
    const { ds } = await dataset(10)
    await ds.addFields([
      { name: 'clip', family: 'embedding', dim: 2 },
      { name: 'thumb', family: 'binary', media: 'image' },
    ])
    await ds.appendMany(
      [50, 51].map((id) => ({ ...recordOf(id), clip: [id, 0], thumb: new Uint8Array([id]) })),
    )
    for (const batchSize of [4, 12]) {
      const clips: (number[] | null)[] = []
      const thumbs: (number[] | null)[] = []
      for await (const batch of ds.iterArrowBatches({
        fields: ['clip', 'thumb'],
        batchSize,
        shuffleSeed: 0,
      })) {
        for (let i = 0; i < batch.numRows; i++) {
          const clip = batch.getChild('clip')!.get(i) as Iterable<number> | null
          const thumb = batch.getChild('thumb')!.get(i) as Uint8Array | null
          clips.push(clip === null ? null : [...clip])
          thumbs.push(thumb === null ? null : [...thumb])
        }
      }
      const present = (values: (number[] | null)[]) => values.filter((v) => v !== null).sort()
      expect(clips.filter((c) => c === null)).toHaveLength(10)
      expect(present(clips)).toEqual([
        [50, 0],
        [51, 0],
      ])
      expect(thumbs.filter((t) => t === null)).toHaveLength(10)
      expect(present(thumbs)).toEqual([[50], [51]])
    }
  })
})

describe('compact', () => {
  it('merges many tiny appends into few buckets without changing a record, an anchor or a snapshot', async () => {
    const { ds } = await dataset(0)
    for (let i = 0; i < 40; i++) await ds.appendMany([recordOf(i)])
    const snapshot = await ds.snapshot('before-compact')
    const contents = async (d: Dataset) => {
      const out: string[] = []
      for await (const b of d.iterArrowBatches({ batchSize: 7 })) {
        for (let i = 0; i < b.numRows; i++) {
          const image = new TextDecoder().decode(b.getChild('image')!.get(i) as Uint8Array)
          out.push(`${b.getChild('_anchor')!.get(i)}|${image}|${b.getChild('label')!.get(i)}|${idsOf(b)[i]}`)
        }
      }
      return out
    }
    const before = await contents(ds)
    expect(ds.manifest.stats.buckets).toBe(40)
    const events: CompactProgress[] = []
    const last = await ds.compact({ targetRecords: 16, onProgress: (e) => events.push(e) })
    expect(ds.manifest.stats.buckets).toBe(3)
    // 40 buckets of one record: runs of 16, 16 and 8, merged from the end backwards.
    expect(events.map((e) => [e.kind, e.buckets, e.records])).toEqual([
      ['planned', 40, 40],
      ['merged', 8, 8],
      ['merged', 16, 16],
      ['merged', 16, 16],
    ])
    expect(events.at(-1)).toMatchObject({ kind: 'merged', done: 3, runs: 3, manifest: last })
    expect(ds.manifest.stats.records).toBe(40)
    expect(await contents(ds)).toEqual(before)
    const pinned = await Dataset.openAt(snapshot, { backend: ds.store })
    expect(pinned.manifest.stats.buckets).toBe(40)
    expect(await contents(pinned)).toEqual(before)
    // Nothing left to merge.
    expect(await ds.compact({ targetRecords: 16 })).toBeUndefined()
  })
})
