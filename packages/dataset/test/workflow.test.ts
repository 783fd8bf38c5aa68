import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freshBucket, minioEndpoint, rejection } from '@dreamdb/cas-tests'
import { inspect, log } from '@dreamdb/manifest'
import { Table, Utf8, vectorFromArray } from 'apache-arrow'
import { describe, expect, it } from 'vitest'
import { agreementMatrix, compareRefs, Dataset } from '../src/index.js'
import { idsOf, MNIST_SCHEMA, mnistRecords, record, SCHEMA } from './helpers.js'

/** A nearest-centroid probe on the embeddings: the seed's linear-probe sweep, in miniature. */
function train(batches: import('apache-arrow').RecordBatch[], scale: number) {
  const sums = new Map<string, number[]>()
  const counts = new Map<string, number>()
  for (const batch of batches) {
    for (let i = 0; i < batch.numRows; i++) {
      const label = batch.getChild('label')!.get(i) as string
      const v = [...(batch.getChild('embedding')!.get(i) as Iterable<number>)]
      const sum = sums.get(label) ?? new Array(v.length).fill(0)
      v.forEach((x, d) => {
        sum[d] += x * scale
      })
      sums.set(label, sum)
      counts.set(label, (counts.get(label) ?? 0) + 1)
    }
  }
  const centroids = [...sums].map(([label, sum]) => [label, sum.map((x) => x / counts.get(label)!)] as const)
  return (v: number[]) =>
    centroids.reduce(
      (best, [label, c]) => {
        const d = c.reduce((acc, x, k) => acc + (x - v[k]! * scale) ** 2, 0)
        return d < best.d ? { label, d } : best
      },
      { label: '', d: Number.POSITIVE_INFINITY },
    ).label
}

async function tutorial(backend: string) {
  // 1. Ingest real labelled images (MNIST digits).
  const digits = mnistRecords(7)
  const created = await Dataset.create('imagenet-mini', { backend, schema: MNIST_SCHEMA })
  await created.appendMany(digits.slice(0, 60), { bucketRecords: 16 })

  // 2. Open + snapshot.
  const src = await Dataset.openRef('imagenet-mini', { backend })
  expect(src.currentManifest()).toBe(created.currentManifest())
  const snap = await src.snapshot('sweep-baseline')
  expect(Object.keys(snap).sort()).toEqual(['label', 'manifest', 'timeline'])

  // 3 + 4. Stream batches from the pinned snapshot (two DataLoader workers).
  const pinned = await Dataset.openAt(snap, { backend })
  const batches: import('apache-arrow').RecordBatch[] = []
  for (const worker of [0, 1]) {
    for await (const batch of pinned.iterArrowBatches({
      batchSize: 8,
      fields: ['embedding', 'label'],
      shuffleSeed: 42,
      worker,
      numWorkers: 2,
    })) {
      batches.push(batch)
    }
  }
  expect(batches.reduce((n, b) => n + b.numRows, 0)).toBe(60)

  // 5. The sweep: a branch per configuration, predictions written as a layer.
  const configs = [1, 2, 3]
  const runRefs: string[] = []
  /** Each run's predictions by anchor: what the agreement matrix is checked against. */
  const predicted: Map<bigint, string>[] = []
  const bytesBefore = (await inspect(src.repository, 'imagenet-mini')).stats.bytes
  for (const scale of configs) {
    const ref = `sweep/lp-scale${scale}`
    const branch = await src.branch(ref)
    const predict = train(batches, scale)
    const predictions: [bigint, string][] = []
    for await (const batch of pinned.iterArrowBatches({ fields: ['embedding'] })) {
      for (let i = 0; i < batch.numRows; i++) {
        predictions.push([
          batch.getChild('_anchor')!.get(i) as bigint,
          predict([...(batch.getChild('embedding')!.get(i) as Iterable<number>)]),
        ])
      }
    }
    await branch.addScalarLayer('prediction', 'embedding', 'categorical', predictions)
    runRefs.push(ref)
    predicted.push(new Map(predictions))
    // The base data is shared: the branch adds only its prediction layer.
    const state = await inspect(branch.repository, ref)
    expect(state.stats.bytes.image).toBe(bytesBefore.image)
    expect(
      state.objects
        .filter((o) => o.role === 'field')
        .map((o) => o.cid)
        .sort(),
    ).toEqual(
      (await inspect(src.repository, 'sweep-baseline')).objects
        .filter((o) => o.role === 'field')
        .map((o) => o.cid)
        .sort(),
    )
  }

  // 6. Compare runs side by side.
  const table = await compareRefs({ refs: runRefs, fields: ['prediction'], backend })
  expect(table.schema.fields.map((f) => f.name)).toEqual([
    '_anchor',
    ...runRefs.map((r) => `prediction@${r}`),
  ])
  expect(table.numRows).toBe(60)
  const matrix = agreementMatrix(table, 'prediction', runRefs)
  expect(matrix.counts).toEqual([60, 60, 60])
  expect(matrix.agreement[0]![0]).toBe(1)
  // Each pair's share of the 60 records where the two runs predicted the same label.
  const agree = (a: Map<bigint, string>, b: Map<bigint, string>) =>
    [...a].filter(([anchor, label]) => b.get(anchor) === label).length / a.size
  expect(matrix.agreement).toEqual(predicted.map((a) => predicted.map((b) => agree(a, b))))

  // 7. Tag the winner; months later, inspect answers what data trained it.
  const prod = await src.snapshot('prod-2026-05-15-abc123')
  const audit = await inspect(src.repository, 'prod-2026-05-15-abc123')
  expect(audit.manifest).toBe(prod.manifest)
  expect(audit.stats.records).toBe(60)

  // The images stream back byte for byte.
  const images: string[] = []
  for await (const b of pinned.iterArrowBatches({ fields: ['image'] })) {
    for (let i = 0; i < b.numRows; i++)
      images.push(Buffer.from(b.getChild('image')!.get(i) as Uint8Array).toString('base64'))
  }
  expect(images).toEqual(digits.slice(0, 60).map((d) => Buffer.from(d.image).toString('base64')))

  // Active learning: the corpus grows; earlier snapshots stay exactly as they were.
  const contents = async (ds: Dataset) => {
    const out: string[] = []
    for await (const b of ds.iterArrowBatches({ fields: ['image', 'label'] })) {
      for (let i = 0; i < b.numRows; i++) {
        const image = b.getChild('image')!.get(i) as Uint8Array
        out.push(
          `${b.getChild('_anchor')!.get(i)}:${b.getChild('label')!.get(i)}:${Buffer.from(image).toString('base64')}`,
        )
      }
    }
    return out
  }
  const pinnedBefore = await contents(await Dataset.openAt(snap, { backend }))
  for (let iteration = 0; iteration < 3; iteration++) {
    await src.snapshot(`iter-${iteration}`)
    await src.appendMany([digits[60 + iteration]!])
  }
  expect(await contents(await Dataset.openAt(snap, { backend }))).toEqual(pinnedBefore)
  expect((await contents(await Dataset.openRef('imagenet-mini', { backend }))).length).toBe(63)
  expect((await Dataset.openAt('iter-1', { backend })).manifest.stats.records).toBe(61)
}

describe('the seed tutorial, sections 2 to 7 and the active-learning pattern', () => {
  it('on a folder', async () => {
    const root = await mkdtemp(join(tmpdir(), 'dreamdb-dataset-'))
    try {
      await tutorial(root)
    } finally {
      await rm(root, { recursive: true, force: true })
    }
  })

  const endpoint = minioEndpoint()
  it.runIf(endpoint !== undefined)('on MinIO', async () => {
    await tutorial(`${endpoint}/${await freshBucket(endpoint!)}`)
  })

  it('agreementMatrix on runs that differ, with a record one run did not predict', () => {
    // The tutorial's runs agree everywhere (its probe does not depend on the scale): here
    // the shares and overlaps are not all alike.
    const table = new Table({
      _anchor: vectorFromArray([1n, 2n, 3n, 4n]),
      'prediction@a': vectorFromArray(['x', 'y', 'z', null], new Utf8()),
      'prediction@b': vectorFromArray(['x', 'n', 'z', 'w'], new Utf8()),
    })
    const matrix = agreementMatrix(table, 'prediction', ['a', 'b'])
    expect(matrix.counts).toEqual([3, 4])
    expect(matrix.overlap).toEqual([
      [3, 3],
      [3, 4],
    ])
    expect(matrix.agreement).toEqual([
      [1, 2 / 3],
      [2 / 3, 1],
    ])
  })
})

describe('bad input: a typed error before anything is written', () => {
  async function fresh() {
    const ds = await Dataset.create('corpus', { backend: 'memory://', schema: SCHEMA })
    await ds.appendMany([record(1), record(2)])
    return ds
  }

  it.each([
    [[{ ...record(3), extra: 1 }], 'ERR_DATASET_UNKNOWN_FIELD'],
    [[{ embedding: record(3).embedding, label: 'x' }], 'ERR_DATASET_INVALID_OPTION'],
    [[{ ...record(3), embedding: [1, 2, 3] }], 'ERR_ARROW_INVALID_VALUE'],
    [[{ ...record(3), embedding: record(3).embedding.map(() => Number.NaN) }], 'ERR_ARROW_INVALID_VALUE'],
    [[{ ...record(3), label: 7 }], 'ERR_ARROW_INVALID_VALUE'],
    [[], 'ERR_DATASET_INVALID_OPTION'],
  ])('appendMany(%#)', async (records, code) => {
    const ds = await fresh()
    const before = ds.currentManifest()
    let objects = 0
    for await (const _ of ds.store.list()) objects++
    expect((await rejection(ds.appendMany(records as never))).code).toBe(code)
    let after = 0
    for await (const _ of ds.store.list()) after++
    expect(after).toBe(objects)
    expect(await ds.refresh()).toBe(before)
  })

  it('layers: duplicate anchors, unknown anchors, unknown parent, wrong dimension', async () => {
    const ds = await fresh()
    const anchors: bigint[] = []
    for await (const b of ds.iterArrowBatches({ fields: ['label'] }))
      anchors.push(...(b.getChild('_anchor')!.toArray() as BigUint64Array))
    const cases: [Promise<unknown>, string][] = [
      [
        ds.addScalarLayer('p', 'embedding', 'categorical', [
          [anchors[0]!, 'a'],
          [anchors[0]!, 'b'],
        ]),
        'appears twice',
      ],
      [
        ds.addScalarLayer('p', 'embedding', 'categorical', [[anchors[0]! + 1000n, 'a']]),
        'is not a record of this dataset',
      ],
      [ds.addScalarLayer('p', 'nope', 'categorical', [[anchors[0]!, 'a']]), "Unknown field 'nope'"],
      [
        ds.addEmbeddingLayer({
          name: 'student',
          parentField: 'image',
          dim: 4,
          samples: [[anchors[0]!, [1, 2]]],
        }),
        'expected dimension 4',
      ],
      [ds.addScalarLayer('p', 'embedding', 'categorical', [[anchors[0]!, 5]]), 'expected a string'],
    ]
    for (const [attempt, words] of cases) expect((await rejection(attempt)).message).toContain(words)
    expect(ds.manifest.layers).toEqual([])
  })

  it('writes to a pinned snapshot are refused', async () => {
    const ds = await fresh()
    const snap = await ds.snapshot('v1')
    const pinned = await Dataset.openAt(snap, { backend: ds.store })
    expect((await rejection(pinned.appendMany([record(9)]))).code).toBe('ERR_DATASET_READ_ONLY')
  })
})

/** Each attempt rejects with its code and a message holding its words. */
async function expectRefusals(cases: [() => Promise<unknown>, string, string][]): Promise<void> {
  for (const [attempt, code, words] of cases) {
    const error = await rejection(attempt())
    expect(error.code).toBe(code)
    expect(error.message).toContain(words)
  }
}

describe('dropping a layer', () => {
  it("takes it out of the branch's state in one commit; snapshots and other branches keep it", async () => {
    const ds = await Dataset.create('corpus', { backend: 'memory://', schema: SCHEMA })
    await ds.appendMany([record(1), record(2), record(3)])
    const anchors: bigint[] = []
    for await (const b of ds.iterArrowBatches({ fields: ['label'] }))
      anchors.push(...(b.getChild('_anchor')!.toArray() as BigUint64Array))
    const run = await ds.branch('sweep/lr-0.1')
    await run.addScalarLayer('prediction', 'embedding', 'categorical', [
      [anchors[0]!, 'cat'],
      [anchors[1]!, 'dog'],
    ])
    await run.addScalarLayer('confidence', 'embedding', 'float', [[anchors[0]!, 0.9]])
    const kept = await run.snapshot('sweep-lr-0.1-before-drop')
    const other = await Dataset.openRef('sweep/lr-0.1', { backend: ds.store })
    await other.branch('sweep/lr-0.1-copy')
    const bytes = run.manifest.stats.bytes.prediction!
    expect(bytes).toBeGreaterThan(0)

    const manifest = await run.dropLayer('prediction', { message: 'lr 0.1 lost' })
    expect(run.manifest.layers.map((l) => l.name)).toEqual(['confidence'])
    expect(run.manifest.change).toEqual({ kind: 'drop', layer: 'prediction', records: 2 })
    expect(run.manifest.message).toBe('lr 0.1 lost')
    expect(run.manifest.stats.bytes.prediction).toBeUndefined()
    expect(run.manifest.stats.records).toBe(3)
    // A fresh reader decodes the new change kind.
    const reopened = await Dataset.openRef('sweep/lr-0.1', { backend: ds.store })
    expect(reopened.currentManifest()).toBe(manifest)
    expect(reopened.manifest.layers.map((l) => l.name)).toEqual(['confidence'])
    let refused: unknown
    try {
      reopened.iterArrowBatches({ fields: ['prediction'] })
    } catch (error) {
      refused = error
    }
    expect(refused).toMatchObject({
      code: 'ERR_DATASET_UNKNOWN_FIELD',
      message: expect.stringContaining("'prediction'"),
    })
    // The base records and the other layer read as before.
    const rows: unknown[] = []
    for await (const b of reopened.iterArrowBatches({ fields: ['label', 'confidence'] }))
      for (let i = 0; i < b.numRows; i++)
        rows.push([b.getChild('label')!.get(i), b.getChild('confidence')!.get(i)])
    expect(rows).toHaveLength(3)
    expect(rows[0]).toEqual([record(1).label, expect.closeTo(0.9, 5)])
    // The snapshot and the other branch still hold it, values and all.
    for (const at of [
      await Dataset.openAt(kept, { backend: ds.store }),
      await Dataset.openRef('sweep/lr-0.1-copy', { backend: ds.store }),
    ]) {
      const values: unknown[] = []
      for await (const b of at.iterArrowBatches({ fields: ['prediction'] }))
        for (let i = 0; i < b.numRows; i++) values.push(b.getChild('prediction')!.get(i))
      expect(values).toEqual(['cat', 'dog', null])
    }
    // The trunk never had it.
    expect(ds.manifest.layers).toEqual([])
  })

  it('refuses, with nothing written: a name that is no layer, a base field, a layer others derive from, a pinned state', async () => {
    const ds = await Dataset.create('corpus', { backend: 'memory://', schema: SCHEMA })
    await ds.appendMany([record(1)])
    let anchor = 0n
    for await (const b of ds.iterArrowBatches({ fields: ['label'] }))
      anchor = b.getChild('_anchor')!.get(0) as bigint
    await ds.addScalarLayer('prediction', 'embedding', 'categorical', [[anchor, 'cat']])
    await ds.addScalarLayer('reviewed', 'prediction', 'categorical', [[anchor, 'yes']])
    const before = ds.currentManifest()
    const pinned = await Dataset.openAt(await ds.snapshot('v1'), { backend: ds.store })
    const cases: [() => Promise<unknown>, string, string][] = [
      [
        () => ds.dropLayer('nope'),
        'ERR_DATASET_INVALID_OPTION',
        "Invalid layer \"nope\": is not a layer of this dataset (its layers: 'prediction', 'reviewed')",
      ],
      [() => ds.dropLayer('label'), 'ERR_DATASET_INVALID_OPTION', 'is a base field'],
      [
        () => ds.dropLayer('prediction'),
        'ERR_MANIFEST_INVALID_CHANGE',
        "layer 'reviewed' derives from 'prediction'; drop it first",
      ],
      [() => ds.dropLayer('reviewed', { message: 7 as never }), 'ERR_DATASET_INVALID_OPTION', 'message'],
      [() => pinned.dropLayer('reviewed'), 'ERR_DATASET_READ_ONLY', ''],
    ]
    await expectRefusals(cases)
    expect(await ds.refresh()).toBe(before)
    // In order: the derived layer, then its parent.
    await ds.dropLayer('reviewed')
    await ds.dropLayer('prediction')
    expect(ds.manifest.layers).toEqual([])
  })
})

describe('dropping a base field', () => {
  it('the branch reads and appends without it, compacts, searches; snapshots and other branches keep it', async () => {
    const ds = await Dataset.create('corpus', { backend: 'memory://', schema: SCHEMA })
    await ds.appendMany([record(1), record(2), record(3)], { bucketRecords: 2 })
    const kept = await ds.snapshot('with-images')
    const other = await ds.branch('with-images-branch')
    const bytes = ds.manifest.stats.bytes.image!
    expect(bytes).toBeGreaterThan(0)

    const manifest = await ds.dropField('image', { message: 'embeddings are computed' })
    expect(ds.manifest.schema.fields.map((f) => f.name)).toEqual(['embedding', 'label'])
    expect(ds.manifest.change).toEqual({ kind: 'drop-field', field: 'image', buckets: 2 })
    expect(ds.manifest.message).toBe('embeddings are computed')
    expect(ds.manifest.stats).toMatchObject({ records: 3, buckets: 2 })
    expect(ds.manifest.stats.bytes.image).toBeUndefined()
    // No bucket of the new state names an image object.
    for await (const { bucket } of ds.repository.buckets(ds.manifest))
      expect(Object.keys(bucket.fields).filter((k) => k.startsWith('image'))).toEqual([])
    const reopened = await Dataset.openRef('corpus', { backend: ds.store })
    expect(reopened.currentManifest()).toBe(manifest)
    let refused: unknown
    try {
      reopened.iterArrowBatches({ fields: ['image'] })
    } catch (error) {
      refused = error
    }
    expect(refused).toMatchObject({
      code: 'ERR_DATASET_UNKNOWN_FIELD',
      message: expect.stringContaining("'image'"),
    })
    // Appends go on without it; one that still carries it is refused, naming it.
    await reopened.appendMany([{ embedding: record(4).embedding, label: record(4).label }])
    expect((await rejection(reopened.appendMany([record(5)]))).message).toContain('image')
    await reopened.compact({ targetRecords: 16 })
    const rows: unknown[] = []
    for await (const b of reopened.iterArrowBatches())
      for (let i = 0; i < b.numRows; i++)
        rows.push([b.schema.fields.map((f) => f.name).join(','), b.getChild('label')!.get(i)])
    expect(rows).toEqual([1, 2, 3, 4].map((id) => ['_anchor,embedding,label', record(id).label]))
    // Search reads the embeddings of the merged bucket: record 2 is its own nearest.
    const anchors: bigint[] = []
    for await (const b of reopened.iterArrowBatches({ fields: ['label'] }))
      anchors.push(...(b.getChild('_anchor')!.toArray() as BigUint64Array))
    const hits = await reopened.search('embedding', record(2).embedding, { k: 1 })
    expect(hits.anchors[0]).toBe(anchors[1])
    // The snapshot and the other branch read their images as before.
    for (const at of [await Dataset.openAt(kept, { backend: ds.store }), other]) {
      const images: string[] = []
      for await (const b of at.iterArrowBatches({ fields: ['image'] }))
        for (let i = 0; i < b.numRows; i++)
          images.push(new TextDecoder().decode(b.getChild('image')!.get(i) as Uint8Array))
      expect(images).toEqual(['image-1', 'image-2', 'image-3'])
    }
  })

  it('refuses, with nothing written: a name that is no base field, a layer, a field a layer derives from, the last field, a pinned state', async () => {
    const ds = await Dataset.create('corpus', { backend: 'memory://', schema: SCHEMA })
    await ds.appendMany([record(1)])
    let anchor = 0n
    for await (const b of ds.iterArrowBatches({ fields: ['label'] }))
      anchor = b.getChild('_anchor')!.get(0) as bigint
    await ds.addScalarLayer('prediction', 'embedding', 'categorical', [[anchor, 'cat']])
    const before = ds.currentManifest()
    const pinned = await Dataset.openAt(await ds.snapshot('v1'), { backend: ds.store })
    const cases: [() => Promise<unknown>, string, string][] = [
      [
        () => ds.dropField('nope'),
        'ERR_DATASET_INVALID_OPTION',
        "Invalid field \"nope\": is not a base field of this dataset (its base fields: 'image', 'embedding', 'label')",
      ],
      [() => ds.dropField('prediction'), 'ERR_DATASET_INVALID_OPTION', 'is a layer; drop it with dropLayer'],
      [
        () => ds.dropField('embedding'),
        'ERR_MANIFEST_INVALID_CHANGE',
        "layer 'prediction' derives from 'embedding'",
      ],
      [() => ds.dropField('label', { message: 7 as never }), 'ERR_DATASET_INVALID_OPTION', 'message'],
      [() => pinned.dropField('label'), 'ERR_DATASET_READ_ONLY', ''],
    ]
    await expectRefusals(cases)
    expect(await ds.refresh()).toBe(before)
    await ds.dropField('image')
    await ds.dropField('label')
    expect((await rejection(ds.dropField('embedding'))).message).toContain(
      "'embedding' is the only base field",
    )
  })
})

describe('restoring a past state', () => {
  it('takes back an append in one commit; the history keeps it; restoring again is a no-op', async () => {
    const ds = await Dataset.create('corpus', { backend: 'memory://', schema: SCHEMA })
    await ds.appendMany([record(1), record(2), record(3)])
    const good = await ds.snapshot('good')
    const bad = await ds.appendMany([record(98), record(99)], { message: 'a bad batch' })
    const labels = async (d: Dataset) => {
      const out: string[] = []
      for await (const b of d.iterArrowBatches({ fields: ['label'] }))
        for (let i = 0; i < b.numRows; i++) out.push(b.getChild('label')!.get(i) as string)
      return out
    }
    const manifest = await ds.restore('good', { message: 'take back the bad batch' })
    expect(ds.manifest.change).toEqual({ kind: 'restore', from: expect.anything() })
    expect(String((ds.manifest.change as { from: unknown }).from)).toBe(good.manifest)
    expect(ds.manifest.message).toBe('take back the bad batch')
    expect(ds.manifest.parents.map(String)).toEqual([bad])
    expect(ds.manifest.stats.records).toBe(3)
    expect(await labels(ds)).toEqual([1, 2, 3].map((id) => record(id).label))
    const reopened = await Dataset.openRef('corpus', { backend: ds.store })
    expect(reopened.currentManifest()).toBe(manifest)
    expect(await labels(reopened)).toEqual(await labels(await Dataset.openAt(good, { backend: ds.store })))
    // The bad batch is still in the history, and can be restored in turn (by manifest CID).
    expect(await ds.restore(ds.currentManifest())).toBe(manifest)
    await ds.restore(bad)
    expect(ds.manifest.stats.records).toBe(5)
    // Appends go on from the restored state.
    await ds.restore(good)
    await ds.appendMany([record(4)])
    expect(await labels(ds)).toEqual([1, 2, 3, 4].map((id) => record(id).label))
  })

  it('refuses a branch that moved since it was read, an unknown ref, a pinned state; nothing written', async () => {
    const ds = await Dataset.create('corpus', { backend: 'memory://', schema: SCHEMA })
    await ds.appendMany([record(1)])
    const first = await ds.snapshot('first')
    await ds.appendMany([record(2)])
    const stale = await Dataset.openRef('corpus', { backend: ds.store })
    await ds.appendMany([record(3)], { message: 'seen by ds only' })
    const head = ds.currentManifest()
    const pinned = await Dataset.openAt(first, { backend: ds.store })
    await expectRefusals([
      [() => stale.restore('first'), 'ERR_MANIFEST_CONFLICT', 'the branch moved (append)'],
      [() => ds.restore('nope'), 'ERR_MANIFEST_REF_NOT_FOUND', 'nope'],
      [() => ds.restore('first', { message: 7 as never }), 'ERR_DATASET_INVALID_OPTION', 'message'],
      [() => pinned.restore('corpus'), 'ERR_DATASET_READ_ONLY', ''],
    ])
    expect(await ds.refresh()).toBe(head)
  })
})

describe('merging branches', () => {
  const rows = async (d: Dataset, fields: string[]) => {
    const out: Record<string, unknown>[] = []
    for await (const b of d.iterArrowBatches({ fields }))
      for (let i = 0; i < b.numRows; i++) {
        const row: Record<string, unknown> = { id: idsOf(b)[i] }
        for (const f of fields.filter((f) => f !== 'embedding')) row[f] = b.getChild(f)!.get(i)
        out.push(row)
      }
    return out
  }
  const anchorsOf = async (d: Dataset) => {
    const out: bigint[] = []
    for await (const b of d.iterArrowBatches({ fields: ['label'] }))
      out.push(...(b.getChild('_anchor')!.toArray() as BigUint64Array))
    return out
  }

  it("brings a branch's appends and layers in, after this branch's own; merging again takes only what is new", async () => {
    const main = await Dataset.create('corpus', { backend: 'memory://', schema: SCHEMA })
    await main.appendMany([record(1), record(2), record(3)])
    const feature = await main.branch('feature')
    await feature.appendMany([record(10), record(11)])
    const anchors = await anchorsOf(feature)
    await feature.addScalarLayer(
      'prediction',
      'embedding',
      'categorical',
      anchors.map((a) => [a, `p${a}`] as const),
    )
    await main.appendMany([record(4)])
    const before = main.currentManifest()

    const manifest = await main.merge('feature', { message: 'merge the new batch and its predictions' })
    expect(main.manifest.parents.map(String)).toEqual([before, feature.currentManifest()])
    expect(main.manifest.change).toMatchObject({
      kind: 'merge',
      buckets: 1,
      records: 2,
      layers: ['prediction'],
    })
    expect(main.manifest.message).toBe('merge the new batch and its predictions')
    expect(main.manifest.stats.records).toBe(6)
    const merged = await rows(main, ['embedding', 'label', 'prediction'])
    expect(merged.map((r) => r.id)).toEqual([1, 2, 3, 4, 10, 11])
    const byId = new Map(merged.map((r) => [r.id, r.prediction]))
    expect(byId.get(4)).toBeNull()
    expect(byId.get(10)).toMatch(/^p\d+$/)
    expect(new Set(await anchorsOf(main)).size).toBe(6)
    // A fresh reader decodes it; the merged branch's commits are in the history.
    const reopened = await Dataset.openRef('corpus', { backend: main.store })
    expect(reopened.currentManifest()).toBe(manifest)
    const history = await log(main.repository, 'corpus')
    expect(history.map((e) => e.change.kind)).toEqual(expect.arrayContaining(['merge', 'layer', 'append']))
    // Already merged: no commit. Then only what the branch did since.
    expect(await main.merge('feature')).toBe(manifest)
    await feature.appendMany([record(12)])
    await main.merge('feature')
    expect(main.manifest.change).toMatchObject({ kind: 'merge', buckets: 1, records: 1, layers: [] })
    expect((await rows(main, ['embedding', 'label'])).map((r) => r.id)).toEqual([1, 2, 3, 4, 10, 11, 12])
  })

  it('takes the newest state of the other branch it already merged as the merge base, not an older common one', async () => {
    // The first merge's first parent (the empty trunk) is a common ancestor too, and closer
    // to this head than the side head it merged: a merge base found by depth alone would be
    // it, and the side's first record would come in twice (found by the torture suite).
    const main = await Dataset.create('corpus', { backend: 'memory://', schema: SCHEMA })
    const side = await main.branch('side')
    await side.appendMany([record(1)])
    await main.merge('side')
    await side.appendMany([record(2)])
    for (const id of [3, 4, 5, 6]) await main.appendMany([record(id)])
    await main.merge('side')
    expect(main.manifest.change).toMatchObject({ kind: 'merge', records: 1 })
    expect((await rows(main, ['embedding', 'label'])).map((r) => r.id)).toEqual([1, 3, 4, 5, 6, 2])
  })

  it('refuses, with nothing written: a layer both sides changed, a branch that did more than append, unrelated histories, a stale or pinned dataset', async () => {
    const main = await Dataset.create('corpus', { backend: 'memory://', schema: SCHEMA })
    await main.appendMany([record(1), record(2)])
    const anchors = await anchorsOf(main)
    const feature = await main.branch('feature')
    await feature.addScalarLayer('prediction', 'embedding', 'categorical', [[anchors[0]!, 'theirs']])
    const compacted = await main.branch('compacted')
    await compacted.appendMany([record(3)])
    await compacted.compact({ targetRecords: 16 })
    const other = await Dataset.create('other', { backend: main.store, schema: SCHEMA })
    await other.appendMany([record(9)])
    await main.addScalarLayer('prediction', 'embedding', 'categorical', [[anchors[1]!, 'ours']])
    await main.appendMany([record(5)])
    const head = main.currentManifest()
    const pinned = await Dataset.openAt(await main.snapshot('v1'), { backend: main.store })
    await expectRefusals([
      [() => main.merge('feature'), 'ERR_DATASET_MERGE_CONFLICT', "both branches changed layer 'prediction'"],
      [() => main.merge('compacted'), 'ERR_DATASET_MERGE_CONFLICT', 'it made a compact'],
      [() => main.merge('other'), 'ERR_DATASET_MERGE_CONFLICT', 'share no manifest'],
      [() => main.merge('nope'), 'ERR_MANIFEST_REF_NOT_FOUND', 'nope'],
      [() => pinned.merge('feature'), 'ERR_DATASET_READ_ONLY', ''],
    ])
    expect(await main.refresh()).toBe(head)
    // A dataset that read the branch before a layer was written there is refused; one that
    // read it before an append merges (appends change no layer or field it checked).
    await feature.dropLayer('prediction')
    const withNew = await feature.branch('feature-2')
    await withNew.appendMany([record(20)])
    const beforeLayer = await Dataset.openRef('corpus', { backend: main.store })
    await main.addScalarLayer('reviewed', 'embedding', 'categorical', [[anchors[0]!, 'yes']])
    const layered = main.currentManifest()
    expect((await rejection(beforeLayer.merge('feature-2'))).code).toBe('ERR_MANIFEST_CONFLICT')
    expect(await main.refresh()).toBe(layered)
    const beforeAppend = await Dataset.openRef('corpus', { backend: main.store })
    await main.appendMany([record(6)])
    await beforeAppend.merge('feature-2')
    expect(beforeAppend.manifest.stats.records).toBe(5)
    expect((await rows(beforeAppend, ['embedding', 'label'])).map((r) => r.id)).toEqual([1, 2, 5, 6, 20])
  })
})
