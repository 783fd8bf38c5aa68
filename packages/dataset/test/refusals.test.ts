/**
 * Every refused call of every verb of the dataset API: a typed error (a stable `code`, a
 * message naming the offending value) and a store left exactly as it was, objects, refs,
 * and on a folder every file (temp files and locks too), on MinIO every key of the bucket.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openStore, type Store } from '@dreamdb/cas'
import { freshBucket, minioEndpoint, type RawLocation, snapshotStore } from '@dreamdb/cas-tests'
import { createCompressor, saveCompressor } from '@dreamdb/vector'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Dataset } from '../src/index.js'
import { record, SCHEMA } from './helpers.js'

interface World {
  store: Store
  /** The dataset's main branch, 'corpus': 30 records, a layer 'pred' (int), moved on since 'corpus-v1'. */
  ds: Dataset
  /** Read-only, at the snapshot 'corpus-v1'. */
  pinned: Dataset
  /** A compressor object for 4 dimensions (the dataset's embedding has 8). */
  wrongCompressor: string
}

interface Case {
  verb: string
  what: string
  call: (w: World) => Promise<unknown>
  code: string
  /** What the message must name (the offending value). */
  names: string | RegExp
}

const good = (id: number) => record(id)
const anchors = async (w: World) => {
  const batch = await w.ds
    .iterArrowBatches({ fields: ['label'], batchSize: 4 })
    [Symbol.asyncIterator]()
    .next()
  return Array.from(batch.value!.getChild('_anchor')!.toArray() as BigUint64Array)
}

const CASES: Case[] = [
  // Dataset.create
  {
    verb: 'create',
    what: 'a taken name',
    call: (w) => Dataset.create('corpus', { backend: w.store, schema: SCHEMA }),
    code: 'ERR_MANIFEST_REF_EXISTS',
    names: "'corpus'",
  },
  {
    verb: 'create',
    what: 'a name git refuses (trailing dot)',
    call: (w) => Dataset.create('corpus2.', { backend: w.store, schema: SCHEMA }),
    code: 'ERR_MANIFEST_INVALID_REF_NAME',
    names: "'corpus2.'",
  },
  {
    verb: 'create',
    what: 'a name one over the limit',
    call: (w) => Dataset.create('n'.repeat(201), { backend: w.store, schema: SCHEMA }),
    code: 'ERR_MANIFEST_INVALID_REF_NAME',
    names: '201 characters',
  },
  {
    verb: 'create',
    what: 'an unknown scalar kind',
    call: (w) =>
      Dataset.create('other', {
        backend: w.store,
        schema: { fields: [{ name: 'x', family: 'scalar', kind: 'label' as 'int' }] },
      }),
    code: 'ERR_MANIFEST_INVALID_SCHEMA',
    names: '"label"',
  },
  {
    verb: 'create',
    what: 'a field twice',
    call: (w) =>
      Dataset.create('other', {
        backend: w.store,
        schema: {
          fields: [
            { name: 'x', family: 'scalar', kind: 'int' },
            { name: 'x', family: 'scalar', kind: 'int' },
          ],
        },
      }),
    code: 'ERR_MANIFEST_INVALID_SCHEMA',
    names: "'x'",
  },
  // appendMany
  {
    verb: 'appendMany',
    what: 'no records',
    call: (w) => w.ds.appendMany([]),
    code: 'ERR_DATASET_INVALID_OPTION',
    names: 'an empty list',
  },
  {
    verb: 'appendMany',
    what: 'a null record',
    call: (w) => w.ds.appendMany([good(100), null as never]),
    code: 'ERR_DATASET_INVALID_OPTION',
    names: 'records[1] "null"',
  },
  {
    verb: 'appendMany',
    what: 'a record missing a field',
    call: (w) => w.ds.appendMany([{ image: good(1).image, embedding: good(1).embedding }]),
    code: 'ERR_DATASET_INVALID_OPTION',
    names: "'label'",
  },
  {
    verb: 'appendMany',
    what: 'an unknown field',
    call: (w) => w.ds.appendMany([{ ...good(1), colour: 'red' }]),
    code: 'ERR_DATASET_UNKNOWN_FIELD',
    names: "'colour'",
  },
  {
    verb: 'appendMany',
    what: "a component '1e3' (in a later bucket)",
    call: (w) =>
      w.ds.appendMany([good(100), { ...good(101), embedding: [0, 1, '1e3', 0, 0, 0, 0, 0] }], {
        bucketRecords: 1,
      }),
    code: 'ERR_ARROW_INVALID_VALUE',
    names: /'embedding' at record 0: component 2 is the string "1e3"/,
  },
  {
    verb: 'appendMany',
    what: 'a component true',
    call: (w) => w.ds.appendMany([{ ...good(100), embedding: [true, 0, 0, 0, 0, 0, 0, 0] }]),
    code: 'ERR_ARROW_INVALID_VALUE',
    names: 'component 0 is boolean true',
  },
  {
    verb: 'appendMany',
    what: 'a wrong dimension',
    call: (w) => w.ds.appendMany([{ ...good(100), embedding: [1, 2, 3] }]),
    code: 'ERR_ARROW_INVALID_VALUE',
    names: 'expected dimension 8, got 3',
  },
  {
    verb: 'appendMany',
    what: 'NaN',
    call: (w) => w.ds.appendMany([{ ...good(100), embedding: new Float32Array(8).fill(Number.NaN) }]),
    code: 'ERR_ARROW_INVALID_VALUE',
    names: 'component 0 is NaN',
  },
  {
    verb: 'appendMany',
    what: 'an image that is not bytes',
    call: (w) => w.ds.appendMany([{ ...good(100), image: 'a.png' }]),
    code: 'ERR_ARROW_INVALID_VALUE',
    names: '"a.png"',
  },
  {
    verb: 'appendMany',
    what: 'a label that is not a string',
    call: (w) => w.ds.appendMany([{ ...good(100), label: 7 }]),
    code: 'ERR_ARROW_INVALID_VALUE',
    names: 'number 7',
  },
  {
    verb: 'appendMany',
    what: 'bucketRecords 0',
    call: (w) => w.ds.appendMany([good(100)], { bucketRecords: 0 }),
    code: 'ERR_DATASET_INVALID_OPTION',
    names: 'bucketRecords 0',
  },
  {
    verb: 'appendMany',
    what: 'bucketBytes -1',
    call: (w) => w.ds.appendMany([good(100)], { bucketBytes: -1 }),
    code: 'ERR_DATASET_INVALID_OPTION',
    names: 'bucketBytes -1',
  },
  {
    verb: 'appendMany',
    what: 'fragmentBytes 0',
    call: (w) => w.ds.appendMany([good(100)], { fragmentBytes: 0 }),
    code: 'ERR_DATASET_INVALID_OPTION',
    names: 'fragmentBytes 0',
  },
  {
    verb: 'appendMany',
    what: 'a message that is not a string',
    call: (w) => w.ds.appendMany([good(100)], { message: 42 as unknown as string }),
    code: 'ERR_DATASET_INVALID_OPTION',
    names: 'message 42',
  },
  {
    verb: 'appendMany',
    what: 'a snapshot',
    call: (w) => w.pinned.appendMany([good(100)]),
    code: 'ERR_DATASET_READ_ONLY',
    names: 'bafy',
  },
  // addScalarLayer
  {
    verb: 'addScalarLayer',
    what: 'an unknown kind',
    call: async (w) =>
      w.ds.addScalarLayer('p2', 'embedding', 'label' as 'int', [[(await anchors(w))[0]!, 1]]),
    code: 'ERR_MANIFEST_INVALID_SCHEMA',
    names: /kind "label" of 'p2' must be one of categorical, string, int, float, bool, timestamp/,
  },
  {
    verb: 'addScalarLayer',
    what: 'the name of a base field',
    call: async (w) => w.ds.addScalarLayer('label', 'embedding', 'int', [[(await anchors(w))[0]!, 1]]),
    code: 'ERR_MANIFEST_INVALID_SCHEMA',
    names: /layer 'label'.*a base field already has this name/,
  },
  {
    verb: 'addScalarLayer',
    what: 'a layer re-added with another kind',
    call: async (w) => w.ds.addScalarLayer('pred', 'embedding', 'bool', [[(await anchors(w))[0]!, true]]),
    code: 'ERR_MANIFEST_INVALID_SCHEMA',
    names: /kind 'int', not parent 'embedding' and kind 'bool'/,
  },
  {
    verb: 'addScalarLayer',
    what: 'an invalid name',
    call: async (w) => w.ds.addScalarLayer('9 lives', 'embedding', 'int', [[(await anchors(w))[0]!, 1]]),
    code: 'ERR_MANIFEST_INVALID_SCHEMA',
    names: '"9 lives"',
  },
  {
    verb: 'addScalarLayer',
    what: 'an unknown parent',
    call: async (w) => w.ds.addScalarLayer('p2', 'nope', 'int', [[(await anchors(w))[0]!, 1]]),
    code: 'ERR_DATASET_UNKNOWN_FIELD',
    names: "'nope'",
  },
  {
    verb: 'addScalarLayer',
    what: 'no samples',
    call: (w) => w.ds.addScalarLayer('p2', 'embedding', 'int', []),
    code: 'ERR_DATASET_INVALID_SAMPLE',
    names: 'at least one sample',
  },
  {
    verb: 'addScalarLayer',
    what: 'an anchor the dataset does not have',
    call: (w) => w.ds.addScalarLayer('p2', 'embedding', 'int', [[2n ** 60n, 1]]),
    code: 'ERR_DATASET_INVALID_SAMPLE',
    names: String(2n ** 60n),
  },
  {
    verb: 'addScalarLayer',
    what: 'an anchor twice',
    call: async (w) => {
      const [a] = await anchors(w)
      return w.ds.addScalarLayer('p2', 'embedding', 'int', [
        [a!, 1],
        [a!, 2],
      ])
    },
    code: 'ERR_DATASET_INVALID_SAMPLE',
    names: 'appears twice',
  },
  {
    verb: 'addScalarLayer',
    what: 'a value of the wrong type',
    call: async (w) => w.ds.addScalarLayer('pred', 'embedding', 'int', [[(await anchors(w))[0]!, '1']]),
    code: 'ERR_ARROW_INVALID_VALUE',
    names: 'the string "1"',
  },
  {
    verb: 'addScalarLayer',
    what: 'a snapshot',
    call: async (w) => w.pinned.addScalarLayer('p2', 'embedding', 'int', [[(await anchors(w))[0]!, 1]]),
    code: 'ERR_DATASET_READ_ONLY',
    names: 'bafy',
  },
  // addEmbeddingLayer
  ...(
    [
      ['dim 0', { dim: 0 }, 'ERR_MANIFEST_INVALID_SCHEMA', 'dim 0'],
      ['a bad metric', { metric: 'manhattan' }, 'ERR_MANIFEST_INVALID_SCHEMA', '"manhattan"'],
      ['an unknown algorithm', { algorithm: 'faiss.hnsw' }, 'ERR_DATASET_INVALID_OPTION', '"faiss.hnsw"'],
      ['an empty algorithm', { algorithm: '' }, 'ERR_MANIFEST_INVALID_SCHEMA', 'algorithm'],
      ['the name of a base field', { name: 'embedding' }, 'ERR_MANIFEST_INVALID_SCHEMA', "'embedding'"],
      ['an invalid name', { name: 'a/b' }, 'ERR_MANIFEST_INVALID_SCHEMA', '"a/b"'],
      ['a spatial index that is not a CID', { spatialIndex: 'nope' }, 'ERR_DATASET_INVALID_OPTION', '"nope"'],
      ['rerank that is not a boolean', { rerank: 'yes' }, 'ERR_MANIFEST_INVALID_SCHEMA', 'rerank'],
      ['a component that is a string', { value: [1, '2', 3, 4] }, 'ERR_ARROW_INVALID_VALUE', '"2"'],
      [
        'a component that is null',
        { value: [1, null, 3, 4] },
        'ERR_ARROW_INVALID_VALUE',
        'component 1 is null',
      ],
      ['a wrong dimension', { value: [1, 2, 3] }, 'ERR_ARROW_INVALID_VALUE', 'expected dimension 4, got 3'],
    ] as const
  ).map(
    ([what, change, code, names]): Case => ({
      verb: 'addEmbeddingLayer',
      what,
      call: async (w) => {
        const { value, ...init } = { value: [1, 2, 3, 4] as readonly unknown[], ...change }
        return w.ds.addEmbeddingLayer({
          name: 'student',
          parentField: 'embedding',
          dim: 4,
          samples: [[(await anchors(w))[0]!, value]],
          ...(init as object),
        })
      },
      code,
      names,
    }),
  ),
  {
    verb: 'addEmbeddingLayer',
    what: 'no init object',
    call: (w) => w.ds.addEmbeddingLayer(null as never),
    code: 'ERR_DATASET_INVALID_OPTION',
    names: 'init null',
  },
  // snapshot
  {
    verb: 'snapshot',
    what: 'a label git refuses (trailing dot)',
    call: (w) => w.ds.snapshot('v2.'),
    code: 'ERR_MANIFEST_INVALID_REF_NAME',
    names: "'v2.'",
  },
  {
    verb: 'snapshot',
    what: 'a label that names another state',
    call: (w) => w.ds.snapshot('corpus-v1'),
    code: 'ERR_MANIFEST_LABEL_TAKEN',
    names: "'corpus-v1'",
  },
  {
    verb: 'snapshot',
    what: 'the name of a branch',
    call: (w) => w.ds.snapshot('run'),
    code: 'ERR_MANIFEST_REF_EXISTS',
    names: "'run'",
  },
  {
    verb: 'snapshot',
    what: 'a reserved name',
    call: (w) => w.ds.snapshot('_dreamdb/anchor-counter'),
    code: 'ERR_MANIFEST_INVALID_REF_NAME',
    names: "'_dreamdb/anchor-counter'",
  },
  {
    verb: 'snapshot',
    what: 'a label one over the limit',
    call: (w) => w.ds.snapshot(`${'s'.repeat(100)}/${'t'.repeat(100)}`),
    code: 'ERR_MANIFEST_INVALID_REF_NAME',
    names: 'the limit is 200',
  },
  // branch
  {
    verb: 'branch',
    what: 'a taken name',
    call: (w) => w.ds.branch('run'),
    code: 'ERR_MANIFEST_REF_EXISTS',
    names: "'run'",
  },
  {
    verb: 'branch',
    what: 'the label of a snapshot',
    call: (w) => w.pinned.branch('corpus-v1'),
    code: 'ERR_MANIFEST_REF_EXISTS',
    names: "'corpus-v1'",
  },
  ...['a..b', 'x.lock', 'sweep/.hidden', 'a@{1}', 'sp ace', 'end/'].map(
    (name): Case => ({
      verb: 'branch',
      what: `the name ${JSON.stringify(name)}`,
      call: (w) => w.ds.branch(name),
      code: 'ERR_MANIFEST_INVALID_REF_NAME',
      names: `'${name}'`,
    }),
  ),
  // migrate
  {
    verb: 'migrate',
    what: 'an unknown field',
    call: (w) => w.ds.migrate({ field: 'nope', algorithm: 'dreamdb.ivf-l2' }),
    code: 'ERR_DATASET_UNKNOWN_FIELD',
    names: "'nope'",
  },
  {
    verb: 'migrate',
    what: 'a scalar field',
    call: (w) => w.ds.migrate({ field: 'label', algorithm: 'dreamdb.ivf-l2' }),
    code: 'ERR_DATASET_INVALID_OPTION',
    names: '"label"',
  },
  ...(
    [
      ['an unknown algorithm', { algorithm: 'faiss.hnsw' }, '"faiss.hnsw"'],
      ['bits 9', { bits: 9 }, 'bits 9'],
      ['rerank "yes"', { rerank: 'yes' }, 'rerank "yes"'],
      ['lists 0', { lists: 0 }, 'lists 0'],
      ['seed -1', { seed: -1 }, 'seed -1'],
      ['a message that is not a string', { message: 1 }, 'message 1'],
      ['a spatial index that is not a CID', { spatialIndex: 'nope' }, '"nope"'],
      ['a compressor with float32', { algorithm: null, compressor: 'WRONG' }, 'plain float32'],
      ['a compressor for another dimension', { compressor: 'WRONG' }, 'is for dim 4'],
    ] as const
  ).map(
    ([what, change, names]): Case => ({
      verb: 'migrate',
      what,
      call: (w) => {
        const options = { field: 'embedding', algorithm: 'dreamdb.ivf-l2', lists: 2, ...change } as Record<
          string,
          unknown
        >
        if (options.compressor === 'WRONG') options.compressor = w.wrongCompressor
        return w.ds.migrate(options as never)
      },
      code: 'ERR_DATASET_INVALID_OPTION',
      names,
    }),
  ),
  {
    verb: 'migrate',
    what: 'a snapshot',
    call: (w) => w.pinned.migrate({ field: 'embedding', algorithm: 'dreamdb.ivf-l2' }),
    code: 'ERR_DATASET_READ_ONLY',
    names: 'bafy',
  },
  // compact
  {
    verb: 'compact',
    what: 'targetRecords 1',
    call: (w) => w.ds.compact({ targetRecords: 1 }),
    code: 'ERR_DATASET_INVALID_OPTION',
    names: 'targetRecords 1',
  },
  {
    verb: 'compact',
    what: 'targetRecords NaN',
    call: (w) => w.ds.compact({ targetRecords: Number.NaN }),
    code: 'ERR_DATASET_INVALID_OPTION',
    names: 'targetRecords',
  },
  {
    verb: 'compact',
    what: 'a snapshot',
    call: (w) => w.pinned.compact(),
    code: 'ERR_DATASET_READ_ONLY',
    names: 'bafy',
  },
  // search
  {
    verb: 'search',
    what: 'an unknown field',
    call: (w) => w.ds.search('nope', new Float32Array(8), { k: 1 }),
    code: 'ERR_DATASET_UNKNOWN_FIELD',
    names: "'nope'",
  },
  {
    verb: 'search',
    what: 'a scalar field',
    call: (w) => w.ds.search('label', new Float32Array(8), { k: 1 }),
    code: 'ERR_DATASET_INVALID_OPTION',
    names: '"label"',
  },
  {
    verb: 'search',
    what: 'k 0',
    call: (w) => w.ds.search('embedding', new Float32Array(8).fill(1), { k: 0 }),
    code: 'ERR_DATASET_INVALID_OPTION',
    names: 'k 0',
  },
  {
    verb: 'search',
    what: 'a query of the wrong dimension',
    call: (w) => w.ds.search('embedding', [1, 2, 3], { k: 1 }),
    code: 'ERR_DATASET_INVALID_OPTION',
    names: '3 dimensions',
  },
  {
    verb: 'search',
    what: 'a query with a string component',
    call: (w) => w.ds.search('embedding', [1, '1e3', 0, 0, 0, 0, 0, 0] as never, { k: 1 }),
    code: 'ERR_DATASET_INVALID_OPTION',
    names: 'query',
  },
  {
    verb: 'search',
    what: 'a filter on a non-scalar field',
    call: (w) => w.ds.search('embedding', new Float32Array(8).fill(1), { k: 1, filter: { image: 'x' } }),
    code: 'ERR_DATASET_INVALID_OPTION',
    names: '"image"',
  },
]

async function setup(backend: string | Store): Promise<World> {
  const store = typeof backend === 'string' ? await openStore(backend, { createBucket: true }) : backend
  const ds = await Dataset.create('corpus', { backend: store, schema: SCHEMA })
  await ds.appendMany(
    Array.from({ length: 20 }, (_, i) => good(i)),
    { bucketRecords: 10 },
  )
  const snap = await ds.snapshot('corpus-v1')
  await ds.branch('run')
  await ds.appendMany(Array.from({ length: 10 }, (_, i) => good(20 + i)))
  const first = await anchors({ ds } as World)
  await ds.addScalarLayer(
    'pred',
    'embedding',
    'int',
    first.map((a, i) => [a, i]),
  )
  const wrong = await saveCompressor(store, createCompressor({ dim: 4, metric: 'l2' }))
  return {
    store,
    ds,
    pinned: await Dataset.openAt(snap, { backend: store }),
    wrongCompressor: wrong.toString(),
  }
}

function refusals(
  name: string,
  open: () => Promise<{ world: World; raw: RawLocation; done: () => Promise<void> }>,
) {
  describe(name, () => {
    let world: World
    let raw: RawLocation
    let done: () => Promise<void>
    beforeAll(async () => {
      ;({ world, raw, done } = await open())
    })
    afterAll(async () => {
      await done?.()
    })

    it.each(CASES.map((c) => [c.verb, c.what, c] as const))('%s: %s', async (_verb, _what, c) => {
      const before = await snapshotStore(world.store, raw)
      let error: (Error & { code?: string }) | undefined
      try {
        await c.call(world)
      } catch (e) {
        error = e as Error & { code?: string }
      }
      expect(error, 'the call was refused').toBeDefined()
      expect(error!.code, error!.stack).toBe(c.code)
      if (typeof c.names === 'string') expect(error!.message).toContain(c.names)
      else expect(error!.message).toMatch(c.names)
      expect(await snapshotStore(world.store, raw)).toEqual(before)
      // The dataset object still reads the state it had.
      expect(world.ds.manifest.stats.records).toBe(30)
    })
  })
}

refusals('refused calls of the dataset API on a folder leave it as it was', async () => {
  const root = await mkdtemp(join(tmpdir(), 'dreamdb-refusals-'))
  return {
    world: await setup(root),
    raw: { folder: root },
    done: () => rm(root, { recursive: true, force: true }),
  }
})

const endpoint = minioEndpoint()
if (endpoint !== undefined) {
  refusals('refused calls of the dataset API on MinIO leave the bucket as it was', async () => {
    const bucket = await freshBucket(endpoint)
    const world = await setup(`${endpoint}/${bucket}`)
    return { world, raw: { s3: { endpoint, bucket } }, done: () => world.store.close() }
  })
}
