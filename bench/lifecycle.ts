/**
 * Lifecycle costs (issue 12): what `fsck` and `collectGarbage` cost in time and store calls
 * on a dataset of 1 thousand and of 1 million records kept in the same number of buckets (so
 * the figures must match: they scale with objects, not records), beside one listing of the
 * store; and the sweep scenario: 100 prediction branches, 99 deleted, the bytes before and
 * after GC. On a folder and, when MinIO is up, on S3.
 */
import { randomUUID } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3'
import { openStore, type Store } from '@dreamdb/cas'
import { Dataset } from '@dreamdb/dataset'
import { collectGarbage, deleteRef, fsck, Repository } from '@dreamdb/manifest'
import { describeMachine, machineInfo, markdownTable, median, writeResults } from './_harness.js'

const SIZES = [1_000, 1_000_000]
const BUCKETS = 100
const BRANCHES = 100
const ROUNDS = 3
const HOUR = 3_600_000
/** GC as if every object were two hours old: the grace (1 hour, the floor) has passed. */
const aged = { graceMs: HOUR, now: () => Date.now() + 2 * HOUR }

/** Store calls by method, through a proxy in front of the store. */
function metered(store: Store): { store: Store; calls: Map<string, number> } {
  const calls = new Map<string, number>()
  const proxy = new Proxy(store, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver)
      if (typeof value !== 'function') return value
      if (key === 'close') return value.bind(target)
      return (...args: unknown[]) => {
        calls.set(String(key), (calls.get(String(key)) ?? 0) + 1)
        return value.apply(target, args)
      }
    },
  })
  return { store: proxy, calls }
}

const total = (calls: Map<string, number>) => [...calls.values()].reduce((a, b) => a + b, 0)

interface Location {
  url: string
  cleanup(): Promise<void>
}

async function folder(): Promise<Location> {
  const root = await mkdtemp(join(tmpdir(), 'dreamdb-bench-lifecycle-'))
  return { url: root, cleanup: () => rm(root, { recursive: true, force: true }) }
}

function minio(endpoint: string): () => Promise<Location> {
  const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true })
  return async () => {
    const bucket = `dreamdb-bench-${randomUUID().slice(0, 8)}`
    await client.send(new CreateBucketCommand({ Bucket: bucket }))
    return { url: `${endpoint}/${bucket}`, cleanup: async () => {} }
  }
}

const SCHEMA = {
  fields: [
    { name: 'embedding', family: 'embedding' as const, dim: 8 },
    { name: 'label', family: 'scalar' as const, kind: 'categorical' as const },
  ],
}

async function corpus(url: string, records: number): Promise<Dataset> {
  const ds = await Dataset.create('corpus', { backend: url, schema: SCHEMA })
  const perBucket = records / BUCKETS
  // Ten appends of ten buckets each: the dataset's history is part of what fsck walks.
  for (let a = 0; a < 10; a++) {
    const batch = Array.from({ length: records / 10 }, (_, i) => {
      const id = a * (records / 10) + i
      return {
        embedding: Float32Array.from({ length: 8 }, (_, d) => Math.sin(id * (d + 1))),
        label: `c${id % 10}`,
      }
    })
    await ds.appendMany(batch, { bucketRecords: perBucket })
  }
  return ds
}

interface Cost {
  ms: number
  calls: number
  byMethod: Record<string, number>
}

async function measure(url: string, run: (store: Store) => Promise<unknown>): Promise<Cost> {
  const times: number[] = []
  let last = new Map<string, number>()
  for (let r = 0; r < ROUNDS; r++) {
    const { store, calls } = metered(await openStore(url))
    const t0 = performance.now()
    await run(store)
    times.push(performance.now() - t0)
    last = calls
    await store.close()
  }
  return { ms: median(times), calls: total(last), byMethod: Object.fromEntries(last) }
}

async function scaling(backend: string, fresh: () => Promise<Location>) {
  const rows = []
  for (const records of SIZES) {
    const location = await fresh()
    try {
      await corpus(location.url, records)
      const listing = await measure(location.url, async (store) => {
        for await (const _ of store.list()) {
          // one pass over the listing
        }
      })
      const check = await measure(location.url, (store) => fsck(store))
      const metadataOnly = await measure(location.url, (store) => fsck(store, { verify: 'metadata' }))
      const gc = await measure(location.url, (store) => collectGarbage(store, aged))
      const report = await fsck(await openStore(location.url))
      rows.push({ backend, records, objects: report.stored.objects, listing, fsck: check, metadataOnly, gc })
    } finally {
      await location.cleanup()
    }
  }
  return rows
}

async function sweep(backend: string, fresh: () => Promise<Location>) {
  const location = await fresh()
  try {
    const src = await corpus(location.url, 10_000)
    const anchors = Array.from({ length: 10_000 }, (_, i) => BigInt(i + 1))
    for (let b = 0; b < BRANCHES; b++) {
      const run = await src.branch(`sweep/run-${b}`)
      await run.addScalarLayer(
        'prediction',
        'embedding',
        'categorical',
        anchors.map((a, i) => [a, `c${(i * (b + 1)) % 10}`] as const),
      )
    }
    const store = await openStore(location.url)
    const before = await fsck(store)
    const repo = new Repository(store)
    for (let b = 1; b < BRANCHES; b++) await deleteRef(repo, `sweep/run-${b}`)
    const gc = await collectGarbage(store, { ...aged, apply: true })
    const after = await fsck(store)
    return {
      backend,
      storedBefore: before.stored,
      storedAfter: after.stored,
      freed: gc.deleted,
      missingAfter: after.missing.length,
    }
  } finally {
    await location.cleanup()
  }
}

const date = new Date()
const machine = machineInfo(date)
const backends: [string, () => Promise<Location>][] = [['folder', folder]]
const endpoint = process.env.DREAMDB_TEST_S3_ENDPOINT
if (endpoint) backends.push(['s3 (MinIO)', minio(endpoint)])

const scaled = []
const sweeps = []
for (const [name, fresh] of backends) {
  console.log(`${name}: fsck and GC at ${SIZES.join(' and ')} records in ${BUCKETS} buckets ...`)
  scaled.push(...(await scaling(name, fresh)))
  console.log(`${name}: the sweep scenario (${BRANCHES} branches, ${BRANCHES - 1} deleted) ...`)
  sweeps.push(await sweep(name, fresh))
}

const cost = (c: Cost) => `${c.ms.toFixed(0)} ms, ${c.calls} calls`
const section = `## lifecycle: fsck and GC scale with objects, and what GC frees after a sweep

${describeMachine(machine)}

Each dataset holds ${BUCKETS} buckets of an 8-d embedding and a label (ten appends), so 1 thousand
and 1 million records are the same number of objects: the figures must agree. Median of
${ROUNDS} runs; "calls" are calls into \`@dreamdb/cas\` (each one request on S3, except a listing, one
call for all its pages: 1 page of 1 000 keys here). GC runs as if every object were two hours old (grace 1 hour, the floor), dry.

${markdownTable(
  [
    'backend',
    'records',
    'objects',
    'one listing',
    'fsck (read + verify all)',
    'fsck --metadata-only',
    'gc (dry)',
  ],
  scaled.map((r) => [
    r.backend,
    r.records.toLocaleString('en'),
    String(r.objects),
    cost(r.listing),
    cost(r.fsck),
    cost(r.metadataOnly),
    cost(r.gc),
  ]),
)}

The sweep scenario: 10 000 records, ${BRANCHES} branches each with a categorical prediction
layer, then ${BRANCHES - 1} branches deleted and GC applied (aged past the grace).

${markdownTable(
  ['backend', 'stored before', 'stored after GC', 'freed', 'missing after (fsck)'],
  sweeps.map((s) => [
    s.backend,
    `${s.storedBefore.objects} objects, ${s.storedBefore.bytes.toLocaleString('en')} B`,
    `${s.storedAfter.objects} objects, ${s.storedAfter.bytes.toLocaleString('en')} B`,
    `${s.freed.objects} objects, ${s.freed.bytes.toLocaleString('en')} B`,
    String(s.missingAfter),
  ]),
)}
`
console.log(section)
await writeResults('lifecycle', date, { machine, scaled, sweeps }, section)
