/**
 * Manifest-layer costs: requests and time to open, branch and snapshot a dataset of 1
 * thousand and of 1 million records (next to one raw tiny write on the same backend), the
 * requests of one `appendMany`, and the objects and metadata bytes an append writes,
 * including after 10 000 one-record appends.
 */
import { randomUUID } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { type CasProgressEvent, openStore, type Store } from '@dreamdb/cas'
import { Dataset } from '@dreamdb/dataset'
import { type BucketInput, Repository } from '@dreamdb/manifest'
import { describeMachine, machineInfo, markdownTable, median, writeResults } from './_harness.js'

const ROUNDS = 15
const SIZES = [1_000, 1_000_000]
const RECORDS_PER_BUCKET = 1_000
const ONE_RECORD_APPENDS = 10_000

/** Counts what a block of work costs: store calls, HTTP requests (S3), objects and bytes written. */
class Meter {
  calls = 0
  /** Requests through the store: one per call, one per object a putMany stores. */
  requests = 0
  /** Store calls by method, in order. */
  methods: string[] = []
  http = 0
  dataObjects = 0
  dataBytes = 0
  metadataObjects = 0
  metadataBytes = 0
  reset(): void {
    Object.assign(this, {
      calls: 0,
      requests: 0,
      methods: [],
      http: 0,
      dataObjects: 0,
      dataBytes: 0,
      metadataObjects: 0,
      metadataBytes: 0,
    })
  }
  snapshot() {
    const { calls, requests, http, dataObjects, dataBytes, metadataObjects, metadataBytes } = this
    return {
      calls,
      requests,
      http,
      dataObjects,
      dataBytes,
      metadataObjects,
      metadataBytes,
      methods: [...this.methods],
    }
  }
}

/** The store, seen through a meter: every call counts, every stored object is sized. */
function metered(store: Store, meter: Meter): Store {
  return new Proxy(store, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver)
      if (typeof value !== 'function' || key === 'close') return value
      return (...args: unknown[]) => {
        meter.calls++
        if (key === 'putMany' && Symbol.iterator in (args[0] as object)) {
          args[0] = [...(args[0] as Iterable<Uint8Array>)].map((item) => {
            meter.requests++
            meter.methods.push('put')
            return item
          })
        } else {
          meter.requests++
          meter.methods.push(String(key))
        }
        if (key === 'put' || key === 'putMany') {
          const options = (args[1] ?? {}) as { codec?: number; onProgress?: (e: CasProgressEvent) => void }
          args[1] = {
            ...options,
            onProgress: (event: CasProgressEvent) => {
              options.onProgress?.(event)
              if (event.type !== 'dreamdb:cas:put' || !event.stored) return
              if (event.cid.code === 0x71) {
                meter.metadataObjects++
                meter.metadataBytes += event.size
              } else {
                meter.dataObjects++
                meter.dataBytes += event.size
              }
            },
          }
        }
        if (key === 'createRef' || key === 'updateRef')
          meter.metadataBytes += (args[1] as Uint8Array).byteLength
        return value.apply(target, args)
      }
    },
  })
}

interface Backend {
  name: string
  /** A fresh empty store location. */
  fresh(): Promise<{ url: string; cleanup(): Promise<void> }>
  open(url: string, meter: Meter): Promise<Store>
  /** One plain write of `bytes` with no DreamDB in between: the floor for "one tiny write". */
  rawWrite(url: string, bytes: Uint8Array): Promise<void>
}

const fsBackend: Backend = {
  name: 'fs',
  async fresh() {
    const root = await mkdtemp(join(tmpdir(), 'dreamdb-bench-manifest-'))
    return { url: root, cleanup: () => rm(root, { recursive: true, force: true }) }
  },
  async open(url, meter) {
    return metered(await openStore(url), meter)
  },
  async rawWrite(url, bytes) {
    await writeFile(join(url, `raw-${randomUUID()}`), bytes, { flush: true })
  },
}

function s3Backend(endpoint: string): Backend {
  const client = (meter?: Meter) => {
    const c = new S3Client({
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    })
    if (meter) {
      c.middlewareStack.add(
        ((next: (args: unknown) => Promise<unknown>) => async (args: unknown) => {
          meter.http++
          return next(args)
        }) as never,
        { step: 'finalizeRequest', name: 'countRequests' },
      )
    }
    return c
  }
  const raw = client()
  return {
    name: 's3 (MinIO)',
    async fresh() {
      const bucket = `dreamdb-bench-${randomUUID().slice(0, 8)}`
      await raw.send(new CreateBucketCommand({ Bucket: bucket }))
      return { url: `${endpoint}/${bucket}`, cleanup: async () => {} }
    },
    async open(url, meter) {
      return metered(await openStore(url, { s3Client: client(meter) }), meter)
    },
    async rawWrite(url, bytes) {
      const bucket = new URL(url).pathname.slice(1)
      await raw.send(new PutObjectCommand({ Bucket: bucket, Key: `raw-${randomUUID()}`, Body: bytes }))
    },
  }
}

const SCHEMA = {
  fields: [
    { name: 'image', family: 'binary' as const, media: 'image' as const },
    { name: 'label', family: 'scalar' as const, kind: 'categorical' as const },
  ],
}

/** Write stand-in field objects and return a bucket of `records` records referencing them. */
async function bucketOf(repo: Repository, records: number, tag: string): Promise<BucketInput> {
  const start = await repo.mintAnchors(records)
  const fields: BucketInput['fields'] = {}
  for (const name of ['image', 'label']) {
    const bytes = new TextEncoder().encode(`${name} values of ${records} records (${tag})`)
    fields[name] = { cid: await repo.store.put(bytes), bytes: bytes.byteLength }
  }
  return { records, anchorRanges: [{ start, count: records }], fields }
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = performance.now()
  const value = await fn()
  return { ms: performance.now() - start, value }
}

interface OperationFigures {
  operation: string
  calls: number
  http: number | null
  medianMs: number
  rawWriteMs: number
}

async function measureDataset(backend: Backend, records: number) {
  const location = await backend.fresh()
  const meter = new Meter()
  try {
    const setup = new Repository(await backend.open(location.url, meter))
    await setup.createDataset('corpus', { schema: SCHEMA })
    const buckets: BucketInput[] = []
    for (let i = 0; i < records / RECORDS_PER_BUCKET; i++)
      buckets.push(await bucketOf(setup, RECORDS_PER_BUCKET, `b${i}`))
    await setup.commit('corpus', { kind: 'append', buckets })
    // Take the one-time conditional-write probe out of the figures below.
    await setup.snapshot('warm-up', 'corpus')

    const operations: Record<string, (repo: Repository, round: number) => Promise<unknown>> = {
      open: (repo) => repo.resolve('corpus'),
      snapshot: (repo, round) => repo.snapshot(`snap-${round}`, 'corpus'),
      branch: (repo, round) => repo.branch(`branch-${round}`, 'corpus'),
    }
    const figures: OperationFigures[] = []
    for (const [operation, run] of Object.entries(operations)) {
      const times: number[] = []
      const raws: number[] = []
      let cost = meter.snapshot()
      for (let round = 0; round < ROUNDS; round++) {
        // A new Repository each round: nothing cached, as in a fresh process.
        const repo = new Repository(setup.store)
        raws.push((await timed(() => backend.rawWrite(location.url, new Uint8Array(120)))).ms)
        meter.reset()
        times.push((await timed(() => run(repo, round))).ms)
        cost = meter.snapshot()
      }
      figures.push({
        operation,
        calls: cost.calls,
        http: backend.name === 'fs' ? null : cost.http,
        medianMs: median(times),
        rawWriteMs: median(raws),
      })
    }

    const appender = new Repository(setup.store)
    const bucket = await bucketOf(appender, 1_000, 'append')
    meter.reset()
    await appender.commit('corpus', { kind: 'append', buckets: [bucket] })
    return { records, operations: figures, append1000: meter.snapshot() }
  } finally {
    await location.cleanup()
  }
}

const APPEND_MANY_ROUNDS = 10
const APPEND_MANY_RECORDS = 100

/**
 * The requests of one `Dataset.appendMany` of 100 records (one bucket: an image, an 8-d
 * embedding stored as two objects, and a label) on a dataset that has been appended to
 * before: the steady state of a writer that keeps its dataset open.
 */
async function measureAppendMany(backend: Backend) {
  const location = await backend.fresh()
  const meter = new Meter()
  try {
    const store = await backend.open(location.url, meter)
    const ds = await Dataset.create('corpus', {
      backend: store,
      schema: {
        fields: [
          { name: 'image', family: 'binary', media: 'image' },
          { name: 'embedding', family: 'embedding', dim: 8 },
          { name: 'label', family: 'scalar', kind: 'categorical' },
        ],
      },
    })
    const records = (round: number) =>
      Array.from({ length: APPEND_MANY_RECORDS }, (_, i) => ({
        image: new TextEncoder().encode(`image ${round}.${i}`),
        embedding: Array.from({ length: 8 }, (_, d) => Math.sin(round * 1000 + i + d)),
        label: `class-${i % 5}`,
      }))
    // The first append also reserves a block of anchors (a ref read and write per 65 536).
    await ds.appendMany(records(-1))
    const rounds: ReturnType<Meter['snapshot']>[] = []
    for (let round = 0; round < APPEND_MANY_ROUNDS; round++) {
      meter.reset()
      await ds.appendMany(records(round))
      rounds.push(meter.snapshot())
    }
    return { backend: backend.name, rounds }
  } finally {
    await location.cleanup()
  }
}

async function measureOneRecordAppends(backend: Backend) {
  const location = await backend.fresh()
  const meter = new Meter()
  try {
    const repo = new Repository(await backend.open(location.url, meter))
    await repo.createDataset('stream', { schema: SCHEMA })
    const started = performance.now()
    for (let i = 0; i < ONE_RECORD_APPENDS; i++) {
      await repo.commit('stream', { kind: 'append', buckets: [await bucketOf(repo, 1, `r${i}`)] })
    }
    const seconds = (performance.now() - started) / 1000
    const bucket = await bucketOf(repo, 1, 'next')
    meter.reset()
    await repo.commit('stream', { kind: 'append', buckets: [bucket] })
    const next = meter.snapshot()
    const head = await repo.resolve('stream')
    return {
      appends: ONE_RECORD_APPENDS,
      seconds,
      appendsPerSecond: ONE_RECORD_APPENDS / seconds,
      buckets: head.manifest.stats.buckets,
      nextAppend: next,
    }
  } finally {
    await location.cleanup()
  }
}

const date = new Date()
const machine = machineInfo(date)
/** 1-minute load average, so a reader knows how busy the machine was. */
const load = () => loadavg()[0]!.toFixed(1)
const loadAtStart = load()
const endpoint = process.env.DREAMDB_TEST_S3_ENDPOINT
const backends = [fsBackend, ...(endpoint ? [s3Backend(endpoint)] : [])]
if (!endpoint)
  console.warn('MinIO is not running (use `pnpm bench manifest`); measuring the folder backend only')

const datasets: {
  backend: string
  records: number
  operations: OperationFigures[]
  append1000: ReturnType<Meter['snapshot']>
}[] = []
for (const backend of backends) {
  for (const records of SIZES) {
    console.log(`${backend.name}: ${records.toLocaleString('en-US')} records ...`)
    datasets.push({ backend: backend.name, ...(await measureDataset(backend, records)) })
  }
}
const appendMany: Awaited<ReturnType<typeof measureAppendMany>>[] = []
for (const backend of backends) {
  console.log(`${backend.name}: ${APPEND_MANY_ROUNDS} appendMany calls ...`)
  appendMany.push(await measureAppendMany(backend))
}
console.log(`fs: ${ONE_RECORD_APPENDS.toLocaleString('en-US')} one-record appends ...`)
const streaming = await measureOneRecordAppends(fsBackend)

const fmt = (ms: number) => ms.toFixed(2)
const operationRows = datasets.flatMap((d) =>
  d.operations.map((o) => [
    d.backend,
    d.records.toLocaleString('en-US'),
    o.operation,
    String(o.calls),
    o.http === null ? '-' : String(o.http),
    fmt(o.medianMs),
    fmt(o.rawWriteMs),
    (o.medianMs / o.rawWriteMs).toFixed(1),
  ]),
)
const appendRows = datasets.map((d) => [
  d.backend,
  d.records.toLocaleString('en-US'),
  String(d.append1000.dataObjects),
  String(d.append1000.metadataObjects),
  String(d.append1000.metadataBytes),
  String(d.append1000.calls),
])
const appendManyRows = appendMany.map((a) => {
  const requests = a.rounds.map((r) => r.requests)
  const http = a.rounds.map((r) => r.http)
  return [
    a.backend,
    `${Math.min(...requests)}-${Math.max(...requests)}`,
    a.backend === 'fs' ? '-' : `${Math.min(...http)}-${Math.max(...http)}`,
    a.rounds[0]!.methods.join(' '),
  ]
})
for (const a of appendMany) {
  console.log(
    `${a.backend}: requests per appendMany ${a.rounds.map((r) => r.requests).join(' ')}; HTTP ${a.rounds.map((r) => r.http).join(' ')}`,
  )
}
const section = `## manifest: open, branch, snapshot, append

${date.toISOString().slice(0, 10)}, ${describeMachine(machine)}; load average ${loadAtStart} at the start, ${load()} at the end.

Requests to open, snapshot and branch a dataset do not depend on its size: the 1 thousand
and 1 million record rows must show the same counts. "store calls" are calls into
\`@dreamdb/cas\`; "HTTP" counts the S3 requests MinIO served (the one-time conditional-write
probe is taken before measuring). "raw write" is one plain write of a 120-byte object on the
same backend (\`writeFile\` with flush / \`PutObject\`), the floor for "one tiny write";
the ratio is the operation's median over it (${ROUNDS} rounds, a fresh \`Repository\` each round).

${markdownTable(['backend', 'records', 'operation', 'store calls', 'HTTP', 'median ms', 'raw write ms', 'ratio'], operationRows)}

One \`Dataset.appendMany\` of ${APPEND_MANY_RECORDS} records (one bucket of 4 data objects: an image, an 8-d
embedding in two objects, a label) on a dataset its writer holds open, ${APPEND_MANY_ROUNDS} rounds after a
first append (which also reserves a block of anchors). "requests" counts every call into
\`@dreamdb/cas\` and every object of a \`putMany\`; "HTTP" counts what MinIO served. Issue #15's
budget is 7; before it the same append cost 13 (a ref read, a HEAD per data object it had just
written, and a second ref read inside the ref update).

${markdownTable(['backend', 'requests per append', 'HTTP per append', 'requests of the first round'], appendManyRows)}

A 1 000-record append through a fresh \`Repository\` (one bucket; 2 data objects written by the caller
beforehand and not named as \`written\`, so each is checked once) writes:

${markdownTable(['backend', 'dataset records', 'data objects', 'metadata objects', 'metadata bytes', 'store calls'], appendRows)}

After ${ONE_RECORD_APPENDS.toLocaleString('en-US')} one-record appends on a folder (${streaming.seconds.toFixed(1)} s,
${streaming.appendsPerSecond.toFixed(0)} commits/s, one process; ${streaming.buckets.toLocaleString('en-US')} buckets in the
timeline), the next one-record append writes ${streaming.nextAppend.metadataObjects} metadata objects,
${streaming.nextAppend.metadataBytes} metadata bytes, in ${streaming.nextAppend.calls} store calls: the tree's right spine,
the manifest and the ref, growing with log(buckets), not with the dataset.
`
console.log(section)
await writeResults('manifest', date, { machine, datasets, appendMany, oneRecordAppends: streaming }, section)
