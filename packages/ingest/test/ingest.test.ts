/**
 * `ingest()` in process, reading parquet shards written in the test (Hugging Face layout,
 * real MNIST digits as PNG) into folder stores: the records read back byte for byte with
 * every source column; anchors in source order, the same after an interrupted run; progress
 * as structured commit metadata (and, for datasets ingested before it existed, from the
 * commit messages); and every kind of bad input refused before anything is written.
 */
import { createHash } from 'node:crypto'
import { readdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { readBinaryRange, readFragmentIndex } from '@dreamdb/arrow'
import { openStore } from '@dreamdb/cas'
import { Dataset } from '@dreamdb/dataset'
import { log, Repository } from '@dreamdb/manifest'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  CHUNK_META_FORMAT,
  chunkMessage,
  coreSchema,
  fullSchema,
  type IngestOptions,
  type IngestResult,
  ingest,
} from '../src/ingest.js'
import { openShard } from '../src/shards.js'
import { type FixtureRecord, tempDir, writeSplit } from './digits.js'

let dir: { path: string; remove: () => Promise<void> }
let root: string
let fixtures: FixtureRecord[]
const key = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

/** `ingest()` into a folder store, with the defaults of these tests. */
async function run(backend: string, options: Partial<IngestOptions> = {}): Promise<IngestResult> {
  const store = await openStore(backend)
  try {
    return await ingest(new Repository(store), {
      root,
      dataset: 'mnist',
      splits: ['train', 'validation'],
      embedding: { kind: 'column', column: 'embedding' },
      cwd: dir.path,
      ...options,
    })
  } finally {
    await store.close()
  }
}

/** Every record of a dataset with the fields asked for, and its anchor. */
async function records(backend: string, name: string, fields: string[]) {
  const ds = await Dataset.openRef(name, { backend })
  const rows: Record<string, unknown>[] = []
  try {
    for await (const batch of ds.iterArrowBatches({ fields })) {
      for (let i = 0; i < batch.numRows; i++) {
        const row: Record<string, unknown> = { _anchor: batch.getChild('_anchor')!.get(i) }
        for (const f of fields) {
          const v = batch.getChild(f)!.get(i)
          row[f] =
            v instanceof Uint8Array
              ? Uint8Array.from(v)
              : typeof (v as { toArray?: unknown } | null)?.toArray === 'function'
                ? Array.from((v as { toArray(): Float32Array }).toArray())
                : v
        }
        rows.push(row)
      }
    }
    return { rows, schema: ds.manifest.schema.fields, manifest: ds.currentManifest() }
  } finally {
    await ds.repository.store.close()
  }
}

/** Each fixture record is in the dataset exactly once, byte for byte, with its label, split and vector. */
async function expectExactlyOnce(backend: string, name: string, expected: FixtureRecord[]) {
  const { rows } = await records(backend, name, ['image', 'embedding', 'label', 'split'])
  expect(rows).toHaveLength(expected.length)
  const byImage = new Map<string, Record<string, unknown>[]>()
  for (const row of rows) {
    const k = key(row.image as Uint8Array)
    byImage.set(k, [...(byImage.get(k) ?? []), row])
  }
  for (const record of expected) {
    const found = byImage.get(key(record.image))
    expect(found, `${record.shard} row ${record.row}`).toHaveLength(1)
    const got = found![0]!
    expect(Buffer.compare(Buffer.from(got.image as Uint8Array), Buffer.from(record.image))).toBe(0)
    expect(got.label).toBe(record.label)
    expect(got.split).toBe(record.split)
    ;(got.embedding as number[]).forEach((x, d) => {
      expect(x).toBeCloseTo(record.embedding[d]!, 6)
    })
  }
}

/**
 * Every image's digest in its bucket's index is its bytes' sha2-256 (the decode thread takes
 * them, design/0006): each record read on its own, which checks it against that digest.
 */
async function expectImageDigests(backend: string, name: string, count: number) {
  const store = await openStore(backend)
  try {
    const ds = await Dataset.openRef(name, { backend: store })
    const image = ds.manifest.schema.fields.find((f) => f.name === 'image')!
    let seen = 0
    for await (const { bucket } of ds.repository.buckets(ds.manifest)) {
      const index = await readFragmentIndex(store, image, bucket)
      const values = await readBinaryRange(store, image, bucket, index, 0, bucket.records)
      values.forEach((value, i) => {
        const digest = createHash('sha256').update(value).digest()
        expect(Buffer.from(index.sha256.subarray(i * 32, i * 32 + 32)).equals(digest)).toBe(true)
      })
      seen += values.length
    }
    expect(seen).toBe(count)
  } finally {
    await store.close()
  }
}

/** No ref at all, hidden ones included (no lease, no anchor counter): nothing was written. */
async function expectNothingWritten(backend: string) {
  const store = await openStore(backend)
  const refs: string[] = []
  for await (const name of store.listRefs('')) refs.push(name)
  await store.close()
  expect(refs).toEqual([])
}

beforeAll(async () => {
  dir = await tempDir()
  root = join(dir.path, 'mnist-hf')
  fixtures = [
    ...(await writeSplit(root, { split: 'train', shards: 3, rows: 40, first: 0 })),
    ...(await writeSplit(root, { split: 'validation', shards: 1, rows: 30, first: 120 })),
  ]
  // The tests rely on telling records apart by their bytes.
  expect(new Set(fixtures.map((r) => key(r.image))).size).toBe(fixtures.length)
})
afterAll(async () => dir?.remove())

it('writes the fixtures in the Hugging Face layout', async () => {
  expect((await readdir(join(root, 'data'))).sort()).toEqual([
    'train-00000-of-00003.parquet',
    'train-00001-of-00003.parquet',
    'train-00002-of-00003.parquet',
    'validation-00000-of-00001.parquet',
  ])
})

describe('ingest', () => {
  it('reads the shards byte for byte, indexes them, and a re-run changes nothing', async () => {
    const backend = join(dir.path, 'store-main')
    const events: string[] = []
    const out = await run(backend, {
      batchRecords: 16,
      index: { algorithm: 'dreamdb.ivf-cosine', bits: 1 },
      onProgress: (e) => events.push(e.kind),
    })
    expect(out).toMatchObject({
      dataset: 'mnist',
      created: true,
      embedding: { source: 'column', column: 'embedding', dim: 49 },
      splits: {
        train: { shards: 3, records: 120, ingested: 120, skipped: 0 },
        validation: { shards: 1, records: 30, ingested: 30, skipped: 0 },
      },
      records: { ingested: 150, skipped: 0, total: 150 },
      // 40 rows in chunks of 16: 3 commits per train shard; 30 rows: 2.
      commits: 11,
      index: { algorithm: 'dreamdb.ivf-cosine', bits: 1, trained: true },
    })
    expect(out.bytes).toBe(fixtures.reduce((n, r) => n + r.image.byteLength, 0))
    expect(events[0]).toBe('planned')
    expect(events.filter((e) => e === 'chunk')).toHaveLength(11)
    expect(events.at(-1)).toBe('indexing')
    await expectExactlyOnce(backend, 'mnist', fixtures)
    await expectImageDigests(backend, 'mnist', 150)
    const { schema } = await records(backend, 'mnist', ['label'])
    expect(schema.slice(0, 4)).toMatchObject([
      { name: 'image', family: 'binary', media: 'image' },
      { name: 'embedding', family: 'embedding', dim: 49, metric: 'cosine', algorithm: 'dreamdb.ivf-cosine' },
      { name: 'label', family: 'scalar', kind: 'categorical' },
      { name: 'split', family: 'scalar', kind: 'categorical' },
    ])

    // Run again: nothing appended, nothing retrained, the same manifest.
    const again = await run(backend, { index: { algorithm: 'dreamdb.ivf-cosine', bits: 1 } })
    expect(again).toMatchObject({
      created: false,
      records: { ingested: 0, skipped: 150, total: 150 },
      commits: 0,
      index: { trained: false },
      manifest: out.manifest,
    })
  })

  it('alone on its dataset: no claim read before it is taken, none of its own commits read back, no object it wrote checked again', async () => {
    const store = await openStore(join(dir.path, 'store-requests'))
    const calls: string[] = []
    const counted = new Proxy(store, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target) as unknown
        if (typeof value !== 'function') return value
        return (...args: unknown[]) => {
          calls.push(typeof args[0] === 'string' ? `${String(prop)} ${args[0]}` : String(prop))
          return (value as (...a: unknown[]) => unknown).apply(target, args)
        }
      },
    }) as typeof store
    try {
      const out = await ingest(new Repository(counted), {
        root,
        dataset: 'mnist',
        splits: ['train', 'validation'],
        embedding: { kind: 'column', column: 'embedding' },
        cwd: dir.path,
        // Several chunks a shard: their split (and source shard) columns are dedup hits.
        batchRecords: 16,
      })
      expect(out.commits).toBe(11)
    } finally {
      await store.close()
    }
    expect(calls.filter((c) => c.startsWith('createRef _dreamdb/leases/ingest-shards/'))).toHaveLength(4)
    expect(calls.filter((c) => c.startsWith('readRef _dreamdb/leases/ingest-shards/'))).toEqual([])
    // Manifests are read from the dataset's repository, which keeps the ones it committed.
    expect(calls.filter((c) => c === 'get')).toEqual([])
    // Dedup hits of objects this run wrote moments ago: as young as new ones (design/0003).
    expect(calls.filter((c) => c === 'has')).toEqual([])
    expect(calls.filter((c) => c === 'readRef _dreamdb/gc/sweep')).toEqual([])
  })

  it('reads string labels, fixed-size and float64 vectors, and shards directly under the root', async () => {
    const other = join(dir.path, 'flat')
    const expected = [
      ...(await writeSplit(other, {
        split: 'train',
        shards: 2,
        rows: 12,
        first: 200,
        folder: 'root',
        embedding: 'fixed',
        label: 'string',
      })),
      ...(await writeSplit(other, {
        split: 'test',
        shards: 1,
        rows: 9,
        first: 230,
        folder: 'root',
        embedding: 'float64',
      })),
    ]
    const backend = join(dir.path, 'store-flat')
    const out = await run(backend, { root: other, dataset: 'flat', splits: ['train', 'test'] })
    expect(out.splits).toEqual({
      train: { shards: 2, records: 24, ingested: 24, skipped: 0 },
      test: { shards: 1, records: 9, ingested: 9, skipped: 0 },
    })
    await expectExactlyOnce(backend, 'flat', expected)
  })
})

describe('every source column (issue #14)', () => {
  it('keeps other scalar columns, the image path, and each record its source shard and row', async () => {
    const extra = join(dir.path, 'extra')
    const expected = await writeSplit(extra, { split: 'train', shards: 2, rows: 10, first: 0, extra: true })
    const backend = join(dir.path, 'store-extra')
    const out = await run(backend, { root: extra, dataset: 'extra', splits: ['train'], batchRecords: 4 })
    expect(out.columns).toEqual({
      mode: 'all',
      fields: [
        'image',
        'embedding',
        'label',
        'split',
        'image_path',
        'source_shard',
        'source_row',
        'id',
        'caption',
        'width',
        'score',
      ],
      kept: ['id', 'caption', 'width', 'score'],
      // A list of strings has no scalar field: said, not dropped silently.
      skipped: [
        { name: 'tags', type: 'List<Utf8>', kind: null, reason: 'no scalar field holds its type' },
        { name: '__index_level_0__', type: 'Int64', kind: null, reason: 'its name cannot be a field name' },
      ],
    })
    const fields = ['image', 'image_path', 'source_shard', 'source_row', 'id', 'caption', 'width', 'score']
    const { rows, schema } = await records(backend, 'extra', fields)
    expect(schema.slice(4)).toMatchObject([
      { name: 'image_path', family: 'scalar', kind: 'string' },
      { name: 'source_shard', family: 'scalar', kind: 'categorical' },
      { name: 'source_row', family: 'scalar', kind: 'int' },
      { name: 'id', family: 'scalar', kind: 'string' },
      { name: 'caption', family: 'scalar', kind: 'string' },
      { name: 'width', family: 'scalar', kind: 'int' },
      { name: 'score', family: 'scalar', kind: 'float' },
    ])
    expect(rows).toHaveLength(expected.length)
    for (const record of expected) {
      const row = rows.find((r) => key(r.image as Uint8Array) === key(record.image))!
      const s = record.shard.endsWith('00000-of-00002.parquet') ? 0 : 1
      expect(row).toMatchObject({
        image_path: record.path,
        source_shard: record.shard,
        source_row: BigInt(record.row),
        id: `train-${s}-${record.row}`,
        caption: record.row % 5 === 4 ? null : `a handwritten ${record.label}`,
        width: 28n,
        score: record.row / 4,
      })
    }
  })

  it("columns: 'core' keeps image, embedding, label and split only", async () => {
    const extra = join(dir.path, 'extra-core')
    const expected = await writeSplit(extra, { split: 'train', shards: 1, rows: 6, first: 0, extra: true })
    const backend = join(dir.path, 'store-core')
    const out = await run(backend, { root: extra, dataset: 'core', splits: ['train'], columns: 'core' })
    expect(out.columns.fields).toEqual(['image', 'embedding', 'label', 'split'])
    expect(out.columns.skipped.map((c) => c.name)).toEqual([
      'id',
      'caption',
      'width',
      'score',
      'tags',
      '__index_level_0__',
    ])
    await expectExactlyOnce(backend, 'core', expected)
    // Into a dataset with every column, 'core' is a contradiction, not a silent switch.
    await run(backend, { root: extra, dataset: 'full', splits: ['train'] })
    await expect(
      run(backend, { root: extra, dataset: 'full', splits: ['train'], columns: 'core' }),
    ).rejects.toMatchObject({ code: 'ERR_INGEST_SCHEMA_MISMATCH' })
  })
})

describe('anchors in source order (issue #14)', () => {
  /** Plan position of each fixture: shards in the order given, rows in order. */
  const position = (shard: string, row: number) => {
    const order = [
      'data/train-00000-of-00003.parquet',
      'data/train-00001-of-00003.parquet',
      'data/train-00002-of-00003.parquet',
      'data/validation-00000-of-00001.parquet',
    ]
    return BigInt(order.indexOf(shard) * 40 + row)
  }

  it('follow (shard, row) whichever upload finishes first, and an interrupted run changes none of them; records iterate in that order', async () => {
    const backend = join(dir.path, 'store-anchors')
    // Stopped after a few commits, with four chunks in flight at a time.
    const stop = new AbortController()
    let chunks = 0
    await expect(
      run(backend, {
        batchRecords: 7,
        concurrency: 4,
        signal: stop.signal,
        onProgress: (e) => {
          if (e.kind === 'chunk' && ++chunks === 3) stop.abort()
        },
      }),
    ).rejects.toMatchObject({ name: 'AbortError' })
    const partial = await records(backend, 'mnist', ['source_shard', 'source_row'])
    expect(partial.rows.length).toBeGreaterThan(0)
    expect(partial.rows.length).toBeLessThan(fixtures.length)

    const rerun = await run(backend, { batchRecords: 5, concurrency: 4 })
    expect(rerun.records).toEqual({
      ingested: fixtures.length - partial.rows.length,
      skipped: partial.rows.length,
      total: 150,
    })
    const { rows } = await records(backend, 'mnist', ['source_shard', 'source_row'])
    expect(rows).toHaveLength(fixtures.length)
    const first = rows.reduce(
      (min, r) => ((r._anchor as bigint) < min ? (r._anchor as bigint) : min),
      2n ** 64n,
    )
    for (const r of rows) {
      // Consecutive in source order: no gap of a fresh anchor block after the interruption.
      expect((r._anchor as bigint) - first, `${r.source_shard} row ${r.source_row}`).toBe(
        position(r.source_shard as string, Number(r.source_row)),
      )
    }
    // Commits land in source order too: the records iterate in (shard, row) order, the
    // interrupted run's first.
    const order = rows.map((r) => position(r.source_shard as string, Number(r.source_row)))
    expect(order).toEqual([...order].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)))
    expect(rows.slice(0, partial.rows.length).map((r) => r._anchor)).toEqual(
      partial.rows.map((r) => r._anchor),
    )
    // The records of the first run kept their anchors.
    for (const p of partial.rows) {
      expect(rows.find((r) => r._anchor === p._anchor)).toMatchObject({
        source_shard: p.source_shard,
        source_row: p.source_row,
      })
    }
  })
})

describe('progress as commit metadata', () => {
  it('each chunk commit carries meta.ingest; a re-run reads it, not the message', async () => {
    const backend = join(dir.path, 'store-meta')
    const shard = await openShard(
      {
        split: 'validation',
        path: join(root, 'data', 'validation-00000-of-00001.parquet'),
        name: 'data/validation-00000-of-00001.parquet',
      },
      'embedding',
    )
    // Rows 0-10 of the shard committed by hand, with the metadata and a message no regex reads.
    const ds = await Dataset.create('meta', { backend, schema: { fields: fullSchema(49, shard) } })
    const mine = fixtures.filter((f) => f.split === 'validation').slice(0, 10)
    const anchor = await ds.repository.mintAnchors(30)
    await ds.appendMany(
      mine.map((f) => ({
        image: f.image,
        embedding: f.embedding,
        label: f.label,
        split: f.split,
        image_path: f.path,
        source_shard: f.shard,
        source_row: f.row,
      })),
      {
        message: 'the first ten rows, by hand',
        anchorStart: anchor,
        meta: {
          ingest: {
            format: CHUNK_META_FORMAT,
            split: 'validation',
            shard: shard.name,
            rows: shard.rows,
            fingerprint: shard.fingerprint,
            start: 0,
            end: 10,
            anchor: anchor.toString(),
            plan: { digest: 'by-hand', anchor: anchor.toString() },
          },
        },
      },
    )
    await ds.repository.store.close()
    const out = await run(backend, { dataset: 'meta', splits: ['validation'], batchRecords: 8 })
    expect(out.records).toEqual({ ingested: 20, skipped: 10, total: 30 })
    await expectExactlyOnce(
      backend,
      'meta',
      fixtures.filter((f) => f.split === 'validation'),
    )
    // The rows it appended continue the shard's anchors.
    const { rows } = await records(backend, 'meta', ['source_row'])
    for (const r of rows) expect(r._anchor).toBe(anchor + BigInt(r.source_row as bigint))
    const store = await openStore(backend)
    const entries = await log(new Repository(store), 'meta')
    await store.close()
    const metas = entries.flatMap((e) => (e.meta?.ingest ? [e.meta.ingest as Record<string, unknown>] : []))
    expect(metas.map((m) => [m.start, m.end]).sort((a, b) => Number(a[0]) - Number(b[0]))).toEqual([
      [0, 10],
      [10, 18],
      [18, 26],
      [26, 30],
    ])
    for (const m of metas.slice(0, 3))
      expect(m).toMatchObject({ format: CHUNK_META_FORMAT, shard: shard.name, rows: 30 })
  })

  it('a dataset ingested before the metadata existed resumes from its commit messages, with its four fields', async () => {
    const backend = join(dir.path, 'store-legacy')
    const shard = await openShard(
      {
        split: 'validation',
        path: join(root, 'data', 'validation-00000-of-00001.parquet'),
        name: 'data/validation-00000-of-00001.parquet',
      },
      'embedding',
    )
    // What an older ingest left: the core fields, and only a message per chunk.
    const ds = await Dataset.create('legacy', { backend, schema: { fields: coreSchema(49) } })
    const validation = fixtures.filter((f) => f.split === 'validation')
    for (const [start, end] of [
      [0, 7],
      [14, 21],
    ] as const) {
      await ds.appendMany(
        validation
          .slice(start, end)
          .map((f) => ({ image: f.image, embedding: f.embedding, label: f.label, split: f.split })),
        { message: chunkMessage({ shard, start, end }) },
      )
    }
    await ds.repository.store.close()
    const out = await run(backend, { dataset: 'legacy', splits: ['validation'], batchRecords: 4 })
    expect(out.records).toEqual({ ingested: 16, skipped: 14, total: 30 })
    expect(out.columns.mode).toBe('core')
    await expectExactlyOnce(backend, 'legacy', validation)
  })
})

describe('bad input: a typed error and nothing written', () => {
  const bad = (backend: string, options: Partial<IngestOptions>) =>
    run(backend, { dataset: 'bad', splits: ['train'], ...options })

  it('a root that does not exist, a split without shards, an incomplete split', async () => {
    const backend = join(dir.path, 'bad-root')
    await expect(bad(backend, { root: join(dir.path, 'nowhere') })).rejects.toMatchObject({
      code: 'ERR_INGEST_FILE_NOT_FOUND',
      message: expect.stringContaining('nowhere'),
    })
    const noSplit = bad(backend, { splits: ['train', 'test'] })
    await expect(noSplit).rejects.toMatchObject({
      code: 'ERR_INGEST_NO_SHARDS',
      message: expect.stringContaining("split 'test'"),
      hint: expect.stringContaining("the shards there are for 'validation'"),
    })
    const partial = join(dir.path, 'partial')
    await writeSplit(partial, { split: 'train', shards: 3, rows: 4, first: 0 })
    await rm(join(partial, 'data', 'train-00001-of-00003.parquet'))
    await expect(bad(backend, { root: partial })).rejects.toMatchObject({
      code: 'ERR_INGEST_NO_SHARDS',
      message: expect.stringContaining('train-00001-of-00003'),
    })
    await expectNothingWritten(backend)
  })

  it('a shard without the expected columns, or not parquet at all', async () => {
    const backend = join(dir.path, 'bad-columns')
    const noLabel = join(dir.path, 'no-label')
    await writeSplit(noLabel, { split: 'train', shards: 1, rows: 4, first: 0, drop: 'label' })
    await expect(bad(backend, { root: noLabel })).rejects.toMatchObject({
      code: 'ERR_INGEST_BAD_SHARD',
      message: expect.stringMatching(
        /^data\/train-00000-of-00001\.parquet: has no column 'label'; its columns are image, embedding/,
      ),
    })
    const garbage = join(dir.path, 'garbage')
    await writeSplit(garbage, { split: 'train', shards: 2, rows: 4, first: 0 })
    await writeFile(join(garbage, 'data', 'train-00001-of-00002.parquet'), 'not a parquet file at all')
    await expect(bad(backend, { root: garbage })).rejects.toMatchObject({
      code: 'ERR_INGEST_BAD_SHARD',
      message: expect.stringContaining('data/train-00001-of-00002.parquet: is not a readable parquet file'),
    })
    await expectNothingWritten(backend)
  })

  it('an embedding column of the wrong type or with an inconsistent dimension', async () => {
    const backend = join(dir.path, 'bad-embedding')
    const strings = join(dir.path, 'emb-strings')
    await writeSplit(strings, { split: 'train', shards: 1, rows: 4, first: 0, embedding: 'strings' })
    await expect(bad(backend, { root: strings })).rejects.toMatchObject({
      code: 'ERR_INGEST_BAD_EMBEDDING',
      message: expect.stringContaining("column 'embedding' is Utf8, expected a list of floats"),
    })
    const none = join(dir.path, 'emb-none')
    await writeSplit(none, { split: 'train', shards: 1, rows: 4, first: 0, embedding: 'none' })
    await expect(
      bad(backend, { root: none, embedding: { kind: 'column', column: 'clip' } }),
    ).rejects.toMatchObject({
      code: 'ERR_INGEST_BAD_EMBEDDING',
      message: expect.stringContaining("has no column 'clip'"),
    })
    await expectNothingWritten(backend)
    // Row 19 of the first shard is short: found before the first commit.
    const ragged = join(dir.path, 'emb-ragged')
    await writeSplit(ragged, { split: 'train', shards: 2, rows: 20, first: 0, embedding: 'ragged' })
    await expect(bad(backend, { root: ragged, batchRecords: 5 })).rejects.toMatchObject({
      code: 'ERR_INGEST_BAD_EMBEDDING',
      message: expect.stringContaining(
        "train-00000-of-00002.parquet: row 19: column 'embedding' has 48 dimensions, the others 49",
      ),
    })
    await expectNothingWritten(backend)
    // A null vector, a NaN, a float64 beyond float32's range: each refused before any write.
    for (const [kind, text] of [
      ['null', "row 3: column 'embedding' is null"],
      ['nan', "row 3: column 'embedding' component 3 is NaN"],
      ['huge', "row 3: column 'embedding' component 0 is Infinity"],
    ] as const) {
      const root = join(dir.path, `emb-${kind}`)
      await writeSplit(root, { split: 'train', shards: 1, rows: 4, first: 0, embedding: kind })
      await expect(bad(backend, { root })).rejects.toMatchObject({
        code: 'ERR_INGEST_BAD_EMBEDDING',
        message: expect.stringContaining(text),
      })
    }
    await expectNothingWritten(backend)
  })

  it('an unreadable model', async () => {
    const backend = join(dir.path, 'bad-model')
    const none = join(dir.path, 'emb-none-model')
    await writeSplit(none, { split: 'train', shards: 1, rows: 4, first: 0, embedding: 'none' })
    await expect(
      bad(backend, { root: none, embedding: { kind: 'model', path: 'missing.onnx' } }),
    ).rejects.toMatchObject({ code: 'ERR_INGEST_FILE_NOT_FOUND' })
    const junk = join(dir.path, 'junk.onnx')
    await writeFile(junk, 'this is not a model')
    await expect(
      bad(backend, { root: none, embedding: { kind: 'model', path: junk } }),
    ).rejects.toMatchObject({
      code: 'ERR_INGEST_BAD_MODEL',
      message: expect.stringContaining('is not an ONNX model'),
    })
    await expectNothingWritten(backend)
  })

  it('a dataset that exists with another schema', async () => {
    const backend = join(dir.path, 'bad-schema')
    const ds = await Dataset.create('bad', {
      backend,
      schema: {
        fields: [
          { name: 'embedding', family: 'embedding', dim: 49 },
          { name: 'label', family: 'scalar', kind: 'string' },
        ],
      },
    })
    const before = ds.currentManifest()
    await ds.repository.store.close()
    await expect(bad(backend, {})).rejects.toMatchObject({
      code: 'ERR_INGEST_SCHEMA_MISMATCH',
      message: expect.stringContaining(
        "Dataset 'bad' exists with other fields: embedding (embedding dim 49), label (string)",
      ),
      hint: expect.stringContaining('choose another dataset name'),
    })
    const after = await Dataset.openRef('bad', { backend })
    expect(after.currentManifest()).toBe(before)
    await after.repository.store.close()
  })

  it('a shard that changed since part of it was ingested', async () => {
    const backend = join(dir.path, 'bad-changed')
    const shifting = join(dir.path, 'shifting')
    await writeSplit(shifting, { split: 'train', shards: 1, rows: 8, first: 0 })
    await bad(backend, { root: shifting })
    await writeSplit(shifting, { split: 'train', shards: 1, rows: 8, first: 50 })
    await expect(bad(backend, { root: shifting })).rejects.toMatchObject({
      code: 'ERR_INGEST_SHARD_CHANGED',
      message: expect.stringContaining(
        'data/train-00000-of-00001.parquet has changed since part of it was ingested',
      ),
    })
  })
})
