/**
 * Every CLI verb that writes (init, ingest, snapshot, branch, migrate), given bad input:
 * a typed error (a stable code, never "a bug" exit 70, a message naming the offending
 * value) and a store left exactly as it was: objects, refs and, on a folder, every file
 * (temp files and locks too); on MinIO every key of the bucket. The CLI runs in process
 * (`run`, the same entry as the binary without the process around it).
 */
import { Writable } from 'node:stream'
import { Dataset } from '@dreamdb/dataset'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
// Test helpers of the bottom layer, by path: the CLI does not depend on @dreamdb/cas-tests.
import { freshBucket } from '../../../packages/cas-tests/src/minio.js'
import { type RawLocation, snapshotStore } from '../../../packages/cas-tests/src/store-snapshot.js'
import { classify, EXIT } from '../src/errors.js'
import { run } from '../src/program.js'
import { record, SCHEMA, tempDir } from './helpers.js'
import { writeSplit } from './shards.js'

interface Case {
  verb: string
  what: string
  args: (w: { shards: string; strings: string }) => string[]
  code: string
  names: string | RegExp
}

const SCHEMA_JSON = JSON.stringify(SCHEMA.fields)

const ingest = (root: string, name: string, ...more: string[]) => [
  'ingest',
  '--root',
  root,
  '--dataset-name',
  name,
  '--splits',
  'train',
  '--no-progress',
  ...more,
]

const CASES: Case[] = [
  {
    verb: 'init',
    what: 'a taken name',
    args: () => ['init', 'corpus', '--schema', SCHEMA_JSON],
    code: 'ERR_MANIFEST_REF_EXISTS',
    names: "'corpus'",
  },
  {
    verb: 'init',
    what: 'a name git refuses',
    args: () => ['init', 'corpus.', '--schema', SCHEMA_JSON],
    code: 'ERR_MANIFEST_INVALID_REF_NAME',
    names: "'corpus.'",
  },
  {
    verb: 'init',
    what: 'a name one over the limit',
    args: () => ['init', 'c'.repeat(201), '--schema', SCHEMA_JSON],
    code: 'ERR_MANIFEST_INVALID_REF_NAME',
    names: 'the limit is 200',
  },
  {
    verb: 'init',
    what: 'an unknown scalar kind',
    args: () => ['init', 'other', '--schema', '[{"name":"x","family":"scalar","kind":"label"}]'],
    code: 'ERR_MANIFEST_INVALID_SCHEMA',
    names: '"label"',
  },
  {
    verb: 'init',
    what: 'dim 0',
    args: () => ['init', 'other', '--schema', '[{"name":"v","family":"embedding","dim":0}]'],
    code: 'ERR_MANIFEST_INVALID_SCHEMA',
    names: 'dim 0',
  },
  {
    verb: 'init',
    what: 'a schema that is not JSON',
    args: () => ['init', 'other', '--schema', '{fields'],
    code: 'ERR_CLI_USAGE',
    names: 'not valid JSON',
  },
  {
    verb: 'init',
    what: 'a schema file that does not exist',
    args: () => ['init', 'other', '--schema', 'no-such-schema.json'],
    code: 'ERR_CLI_FILE_NOT_FOUND',
    names: 'no-such-schema.json',
  },
  {
    verb: 'ingest',
    what: 'a dataset name git refuses',
    args: (w) => ingest(w.shards, 'digits.'),
    code: 'ERR_MANIFEST_INVALID_REF_NAME',
    names: "'digits.'",
  },
  {
    verb: 'ingest',
    what: 'a reserved dataset name',
    args: (w) => ingest(w.shards, '_dreamdb/x'),
    code: 'ERR_MANIFEST_INVALID_REF_NAME',
    names: "'_dreamdb/x'",
  },
  {
    verb: 'ingest',
    what: 'a snapshot',
    args: (w) => ingest(w.shards, 'prep-v1'),
    code: 'ERR_DATASET_READ_ONLY',
    names: 'prep-v1',
  },
  {
    verb: 'ingest',
    what: 'a dataset of another schema',
    args: (w) => ingest(w.shards, 'corpus'),
    code: 'ERR_INGEST_SCHEMA_MISMATCH',
    names: 'corpus',
  },
  {
    verb: 'ingest',
    what: 'an embedding column that does not exist',
    args: (w) => ingest(w.shards, 'digits', '--embedding-column', 'nope'),
    code: 'ERR_INGEST_BAD_EMBEDDING',
    names: 'nope',
  },
  {
    verb: 'ingest',
    what: 'embeddings that are strings',
    args: (w) => ingest(w.strings, 'digits'),
    code: 'ERR_INGEST_BAD_EMBEDDING',
    names: 'embedding',
  },
  {
    verb: 'ingest',
    what: 'no shards',
    args: (w) => ingest(`${w.shards}/nowhere`, 'digits'),
    code: 'ERR_INGEST_FILE_NOT_FOUND',
    names: 'nowhere',
  },
  {
    verb: 'ingest',
    what: '--ivf without --rabitq',
    args: (w) => ingest(w.shards, 'digits', '--ivf'),
    code: 'ERR_CLI_USAGE',
    names: '--ivf without --rabitq',
  },
  {
    verb: 'ingest',
    what: '--bits 9',
    args: (w) => ingest(w.shards, 'digits', '--ivf', '--rabitq', '--bits', '9'),
    code: 'ERR_CLI_USAGE',
    names: 'not 9',
  },
  {
    verb: 'snapshot',
    what: 'a label git refuses',
    args: () => ['snapshot', 'v2.', '--from', 'corpus'],
    code: 'ERR_MANIFEST_INVALID_REF_NAME',
    names: "'v2.'",
  },
  {
    verb: 'snapshot',
    what: 'a label that pins another state',
    args: () => ['snapshot', 'prep-v1', '--from', 'corpus'],
    code: 'ERR_MANIFEST_LABEL_TAKEN',
    names: "'prep-v1'",
  },
  {
    verb: 'snapshot',
    what: 'the name of a branch',
    args: () => ['snapshot', 'sweep/a', '--from', 'corpus'],
    code: 'ERR_MANIFEST_REF_EXISTS',
    names: "'sweep/a'",
  },
  {
    verb: 'snapshot',
    what: 'a source that does not exist',
    args: () => ['snapshot', 'v2', '--from', 'nope'],
    code: 'ERR_MANIFEST_REF_NOT_FOUND',
    names: "'nope'",
  },
  {
    verb: 'branch',
    what: 'a taken name',
    args: () => ['branch', 'sweep/a', '--from', 'corpus'],
    code: 'ERR_MANIFEST_REF_EXISTS',
    names: "'sweep/a'",
  },
  ...['a..b', 'x.lock', 'sweep/.b', 'a@{1}', 'sweep/'].map(
    (name): Case => ({
      verb: 'branch',
      what: `the name ${JSON.stringify(name)}`,
      args: () => ['branch', name, '--from', 'corpus'],
      code: 'ERR_MANIFEST_INVALID_REF_NAME',
      names: `'${name}'`,
    }),
  ),
  {
    verb: 'branch',
    what: 'a source that does not exist',
    args: () => ['branch', 'b2', '--from', 'nope'],
    code: 'ERR_MANIFEST_REF_NOT_FOUND',
    names: "'nope'",
  },
  {
    verb: 'migrate',
    what: 'a scalar field',
    args: () => ['migrate', 'corpus', '--field', 'label', '--algorithm', 'dreamdb.ivf-l2'],
    code: 'ERR_DATASET_INVALID_OPTION',
    names: '"label"',
  },
  {
    verb: 'migrate',
    what: 'an unknown field',
    args: () => ['migrate', 'corpus', '--field', 'nope', '--algorithm', 'dreamdb.ivf-l2'],
    code: 'ERR_DATASET_UNKNOWN_FIELD',
    names: "'nope'",
  },
  {
    verb: 'migrate',
    what: 'a snapshot',
    args: () => ['migrate', 'prep-v1', '--algorithm', 'dreamdb.ivf-l2'],
    code: 'ERR_DATASET_READ_ONLY',
    names: 'bafy',
  },
  {
    verb: 'migrate',
    what: 'a ref that does not exist',
    args: () => ['migrate', 'nope', '--algorithm', 'dreamdb.ivf-l2'],
    code: 'ERR_MANIFEST_REF_NOT_FOUND',
    names: "'nope'",
  },
  {
    verb: 'migrate',
    what: 'an unknown algorithm',
    args: () => ['migrate', 'corpus', '--algorithm', 'faiss.hnsw'],
    code: 'ERR_CLI_USAGE',
    names: 'faiss.hnsw',
  },
  {
    verb: 'migrate',
    what: '--bits 9',
    args: () => ['migrate', 'corpus', '--algorithm', 'dreamdb.ivf-l2', '--bits', '9'],
    code: 'ERR_DATASET_INVALID_OPTION',
    names: 'bits 9',
  },
  {
    verb: 'drop-layer',
    what: 'a name that is not a layer',
    args: () => ['drop-layer', 'corpus', '--layer', 'nope'],
    code: 'ERR_DATASET_INVALID_OPTION',
    names: '"nope"',
  },
  {
    verb: 'drop-layer',
    what: 'a base field',
    args: () => ['drop-layer', 'corpus', '--layer', 'label'],
    code: 'ERR_DATASET_INVALID_OPTION',
    names: 'base field',
  },
  {
    verb: 'drop-layer',
    what: 'a snapshot',
    args: () => ['drop-layer', 'prep-v1', '--layer', 'prediction'],
    code: 'ERR_DATASET_READ_ONLY',
    names: 'bafy',
  },
  {
    verb: 'merge',
    what: 'an unknown --from',
    args: () => ['merge', 'corpus', '--from', 'nope'],
    code: 'ERR_MANIFEST_REF_NOT_FOUND',
    names: 'nope',
  },
  {
    verb: 'merge',
    what: 'into a snapshot',
    args: () => ['merge', 'prep-v1', '--from', 'sweep/a'],
    code: 'ERR_DATASET_READ_ONLY',
    names: 'bafy',
  },
  {
    verb: 'merge',
    what: 'no --from',
    args: () => ['merge', 'corpus'],
    code: 'ERR_CLI_USAGE',
    names: '--from',
  },
  {
    verb: 'restore',
    what: 'an unknown --from',
    args: () => ['restore', 'corpus', '--from', 'nope'],
    code: 'ERR_MANIFEST_REF_NOT_FOUND',
    names: 'nope',
  },
  {
    verb: 'restore',
    what: 'a snapshot',
    args: () => ['restore', 'prep-v1', '--from', 'corpus'],
    code: 'ERR_DATASET_READ_ONLY',
    names: 'bafy',
  },
  {
    verb: 'restore',
    what: 'no --from',
    args: () => ['restore', 'corpus'],
    code: 'ERR_CLI_USAGE',
    names: '--from',
  },
  {
    verb: 'add-fields',
    what: 'a name a field has',
    args: () => ['add-fields', 'corpus', '--schema', '[{"name":"label","family":"scalar","kind":"string"}]'],
    code: 'ERR_MANIFEST_INVALID_SCHEMA',
    names: 'label',
  },
  {
    verb: 'add-fields',
    what: 'an embedding of dim 0',
    args: () => ['add-fields', 'corpus', '--schema', '[{"name":"clip","family":"embedding","dim":0}]'],
    code: 'ERR_MANIFEST_INVALID_SCHEMA',
    names: 'dim',
  },
  {
    verb: 'add-fields',
    what: 'no fields',
    args: () => ['add-fields', 'corpus', '--schema', '[]'],
    code: 'ERR_DATASET_INVALID_OPTION',
    names: 'at least one field',
  },
  {
    verb: 'add-fields',
    what: 'JSON that does not parse',
    args: () => ['add-fields', 'corpus', '--schema', '[{"name":'],
    code: 'ERR_CLI_USAGE',
    names: '--schema',
  },
  {
    verb: 'add-fields',
    what: 'a snapshot',
    args: () => [
      'add-fields',
      'prep-v1',
      '--schema',
      '[{"name":"caption","family":"scalar","kind":"string"}]',
    ],
    code: 'ERR_DATASET_READ_ONLY',
    names: 'bafy',
  },
  {
    verb: 'drop-field',
    what: 'a name that is not a base field',
    args: () => ['drop-field', 'corpus', '--field', 'nope'],
    code: 'ERR_DATASET_INVALID_OPTION',
    names: '"nope"',
  },
  {
    verb: 'drop-field',
    what: 'a layer',
    args: () => ['drop-field', 'sweep/a', '--field', 'prediction'],
    code: 'ERR_DATASET_INVALID_OPTION',
    names: 'is a layer',
  },
  {
    verb: 'drop-field',
    what: 'a field a layer derives from',
    args: () => ['drop-field', 'sweep/a', '--field', 'embedding'],
    code: 'ERR_MANIFEST_INVALID_CHANGE',
    names: "layer 'prediction' derives from 'embedding'",
  },
  {
    verb: 'drop-field',
    what: 'a snapshot',
    args: () => ['drop-field', 'prep-v1', '--field', 'label'],
    code: 'ERR_DATASET_READ_ONLY',
    names: 'bafy',
  },
  {
    verb: 'drop-field',
    what: 'no --field',
    args: () => ['drop-field', 'corpus'],
    code: 'ERR_CLI_USAGE',
    names: '--field',
  },
  {
    verb: 'compact',
    what: 'a snapshot',
    args: () => ['compact', 'prep-v1'],
    code: 'ERR_DATASET_READ_ONLY',
    names: 'bafy',
  },
  {
    verb: 'compact',
    what: '--target-records 1',
    args: () => ['compact', 'corpus', '--target-records', '1'],
    code: 'ERR_DATASET_INVALID_OPTION',
    names: 'targetRecords 1',
  },
  {
    verb: 'compact',
    what: '--target-records many',
    args: () => ['compact', 'corpus', '--target-records', 'many'],
    code: 'ERR_CLI_USAGE',
    names: '--target-records',
  },
  {
    verb: 'drop-layer',
    what: 'no --layer',
    args: () => ['drop-layer', 'corpus'],
    code: 'ERR_CLI_USAGE',
    names: '--layer',
  },
  {
    verb: 'migrate',
    what: '--lists 0',
    args: () => ['migrate', 'corpus', '--algorithm', 'dreamdb.ivf-l2', '--lists', '0'],
    code: 'ERR_CLI_USAGE',
    names: '--lists',
  },
]

const discard = () =>
  new Writable({
    write(_chunk, _encoding, callback) {
      callback()
    },
  })

async function dreamdb(args: string[], backend: string, cwd: string): Promise<unknown> {
  const io = { stdout: discard(), stderr: discard(), env: { NO_COLOR: '1' }, cwd }
  try {
    await run([...args, '--backend', backend], io, new AbortController().signal)
    return undefined
  } catch (error) {
    return error
  }
}

/** corpus (12 records, moved on since prep-v1), the branch sweep/a with a layer on the embedding. */
async function prepare(backend: string) {
  const ds = await Dataset.create('corpus', { backend, schema: SCHEMA })
  await ds.appendMany(Array.from({ length: 8 }, (_, i) => record(i)))
  await ds.snapshot('prep-v1')
  const sweep = await ds.branch('sweep/a')
  const anchors: [bigint, string][] = []
  for await (const batch of sweep.iterArrowBatches({ fields: ['label'] }))
    for (let i = 0; i < batch.numRows; i++) anchors.push([batch.getChild('_anchor')!.get(i) as bigint, 'cat'])
  await sweep.addScalarLayer('prediction', 'embedding', 'categorical', anchors)
  await ds.appendMany(Array.from({ length: 4 }, (_, i) => record(8 + i)))
  const store = ds.store
  return store
}

function refusals(
  name: string,
  open: () => Promise<{ backend: string; raw: RawLocation; done: () => Promise<void> }>,
) {
  describe(name, () => {
    let dir: Awaited<ReturnType<typeof tempDir>>
    let target: Awaited<ReturnType<typeof open>>
    let store: Awaited<ReturnType<typeof prepare>>
    const shards = { shards: '', strings: '' }
    beforeAll(async () => {
      dir = await tempDir()
      shards.shards = `${dir.path}/shards`
      shards.strings = `${dir.path}/strings`
      await writeSplit(shards.shards, { split: 'train', shards: 1, rows: 4, first: 0 })
      await writeSplit(shards.strings, { split: 'train', shards: 1, rows: 4, first: 0, embedding: 'strings' })
      target = await open()
      store = await prepare(target.backend)
    })
    afterAll(async () => {
      await store?.close()
      await target?.done()
      await dir?.remove()
    })

    it.each(CASES.map((c) => [c.verb, c.what, c] as const))('%s: %s', async (_verb, _what, c) => {
      const before = await snapshotStore(store, target.raw)
      const error = await dreamdb(c.args(shards), target.backend, dir.path)
      expect(error, 'the command was refused').toBeDefined()
      const classified = classify(error)
      expect(classified.code, (error as Error).stack).toBe(c.code)
      expect(classified.exitCode).not.toBe(EXIT.internal)
      if (typeof c.names === 'string') expect(classified.message).toContain(c.names)
      else expect(classified.message).toMatch(c.names)
      expect(await snapshotStore(store, target.raw)).toEqual(before)
    })
  })
}

refusals('refused CLI verbs on a folder leave it as it was', async () => {
  const dir = await tempDir()
  const backend = `${dir.path}/.dreamdb`
  return { backend, raw: { folder: backend }, done: dir.remove }
})

const endpoint = process.env.DREAMDB_TEST_S3_ENDPOINT
if (endpoint) {
  refusals('refused CLI verbs on MinIO leave the bucket as it was', async () => {
    const bucket = await freshBucket(endpoint)
    return { backend: `${endpoint}/${bucket}`, raw: { s3: { endpoint, bucket } }, done: async () => {} }
  })
}
