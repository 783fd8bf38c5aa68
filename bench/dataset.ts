/**
 * Dataset iteration and layers: time to first batch at 10 thousand and 1 million records,
 * throughput of 512-d embeddings plus a label next to pyarrow (Parquet) and pylance (Lance)
 * reading the same records, bytes read by an embedding-only pass over an image dataset, the
 * speed of that pass next to the same records without images (`--only=images` runs just
 * that figure; `--image-records=N`, `--image-dim=D` and `--image-rounds=N` set
 * its size), peak RSS of a pass at 100 thousand and 1 million records (each in a fresh
 * process), and bytes added by a 100-branch sweep of prediction layers. The section it
 * writes opens with issue #13's "Done when" read figures, each against its goal.
 */
import { execFileSync } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CreateBucketCommand } from '@aws-sdk/client-s3'
import { type CasProgressEvent, openStore, type Store } from '@dreamdb/cas'
import { Dataset } from '@dreamdb/dataset'
import { type RecordBatch, Table, tableToIPC } from 'apache-arrow'
import {
  baselineS3Client,
  describeMachine,
  machineInfo,
  markdownTable,
  median,
  writeResults,
} from './_harness.js'

const quick = process.argv.includes('--quick')
/** `--records=N --dim=D`: the throughput figure's shape (default 100 000 x 512, --quick 20 000 x 512). */
const option = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1]
/**
 * The throughput figure's shapes (records x dim): issue #13 asks for 100k x 512-d and 1M x
 * 128-d; `--records=N --dim=D` measures one shape, `--shapes=20000x512,50000x128` any.
 */
const SHAPES: { records: number; dim: number }[] =
  option('shapes') !== undefined
    ? option('shapes')!
        .split(',')
        .map((shape) => {
          const [records, dim] = shape.split('x').map(Number)
          return { records: records!, dim: dim! }
        })
    : option('records') !== undefined || option('dim') !== undefined
      ? [
          {
            records: Number(option('records') ?? (quick ? 20_000 : 100_000)),
            dim: Number(option('dim') ?? 512),
          },
        ]
      : quick
        ? [
            { records: 20_000, dim: 512 },
            { records: 50_000, dim: 128 },
          ]
        : [
            { records: 100_000, dim: 512 },
            { records: 1_000_000, dim: 128 },
          ]
/** Peak RSS of one pass in a fresh process, at these record counts (128-d): flat is the goal. */
const RSS_SIZES = quick ? [10_000, 100_000] : [100_000, 1_000_000]
const ROUNDS = quick ? 2 : 5
/** Turns of DreamDB and the peers in the throughput figure. */
const CYCLES = quick ? 1 : 3
/** First batches timed per dataset size. */
const FIRST_BATCH_ROUNDS = quick ? 5 : 21
/** `--throughput-only`: only the throughput figure (an A/B of the read path), printed, not written. */
const throughputOnly = process.argv.includes('--throughput-only')

/** A store that counts bytes read and bytes newly written. */
function counting(store: Store) {
  const counts = { read: 0, written: 0 }
  const proxy = new Proxy(store, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver)
      if (typeof value !== 'function') return value
      if (key === 'get') {
        return async (...args: Parameters<Store['get']>) => {
          const bytes = await target.get(...args)
          counts.read += bytes.byteLength
          return bytes
        }
      }
      if (key === 'getRange') {
        return async (...args: Parameters<Store['getRange']>) => {
          const bytes = await target.getRange(...args)
          counts.read += bytes.byteLength
          return bytes
        }
      }
      if (key === 'getMany') {
        return async function* (...args: Parameters<Store['getMany']>) {
          for await (const item of target.getMany(...args)) {
            counts.read += item.bytes.byteLength
            yield item
          }
        }
      }
      if (key === 'put') {
        return (data: Parameters<Store['put']>[0], options: Parameters<Store['put']>[1] = {}) =>
          target.put(data, {
            ...options,
            onProgress: (event: CasProgressEvent) => {
              options.onProgress?.(event)
              if (event.type === 'dreamdb:cas:put' && event.stored) counts.written += event.size
            },
          })
      }
      if (key === 'putMany') {
        return (items: Parameters<Store['putMany']>[0], options: Parameters<Store['putMany']>[1] = {}) =>
          target.putMany(items, {
            ...options,
            onProgress: (event: CasProgressEvent) => {
              if (event.type === 'dreamdb:cas:put' && event.stored) counts.written += event.size
            },
          })
      }
      return value.bind(target)
    },
  })
  return { store: proxy as Store, counts }
}

/**
 * A deterministic pseudo-random vector: every element drawn from a 32-bit PRNG (mulberry32,
 * in integer arithmetic) seeded by the record id, so the values are distinct across records
 * and no reader gets a dictionary-encodable column for free. (The former float LCG lost its
 * low bits past 2^53 and collapsed to ~4 000 distinct values in 100k records.)
 */
function vector(id: number, dim: number): Float32Array {
  const out = new Float32Array(dim)
  let state = Math.imul(id + 1, 0x9e3779b9) >>> 0
  for (let d = 0; d < dim; d++) {
    state = (state + 0x6d2b79f5) >>> 0
    let t = Math.imul(state ^ (state >>> 15), state | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    out[d] = ((t ^ (t >>> 14)) >>> 0) / 2 ** 32 - 0.5
  }
  return out
}

async function ingest(
  ds: Dataset,
  count: number,
  make: (id: number) => Record<string, unknown>,
  chunk = 8192,
) {
  for (let start = 0; start < count; start += chunk) {
    const records = Array.from({ length: Math.min(chunk, count - start) }, (_, i) => make(start + i))
    await ds.appendMany(records) // default bucket sizing, as a user gets it
  }
}

async function withFolder<T>(fn: (root: string) => Promise<T>): Promise<T> {
  const root = await mkdtemp(join(tmpdir(), 'dreamdb-bench-dataset-'))
  try {
    return await fn(root)
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}

/** Open the dataset afresh and time until the first shuffled batch is in hand. */
async function timeToFirstBatch(root: string, seed: number): Promise<number> {
  const start = performance.now()
  const ds = await Dataset.openRef('ttfb', { backend: await openStore(root) })
  for await (const _ of ds.iterArrowBatches({
    batchSize: 256,
    fields: ['embedding', 'label'],
    shuffleSeed: seed,
  }))
    break
  return performance.now() - start
}

const LABELS = Array.from({ length: 100 }, (_, i) => `n0${1440764 + i * 7919}`)

async function firstBatchFigures() {
  const sizes = quick ? [10_000, 100_000] : [10_000, 1_000_000]
  const roots = await Promise.all(sizes.map(() => mkdtemp(join(tmpdir(), 'dreamdb-bench-ttfb-'))))
  try {
    for (const [i, records] of sizes.entries()) {
      const ds = await Dataset.create('ttfb', {
        backend: await openStore(roots[i]!),
        schema: {
          fields: [
            { name: 'embedding', family: 'embedding', dim: 16 },
            { name: 'label', family: 'scalar', kind: 'categorical' },
          ],
        },
      })
      await ingest(ds, records, (id) => ({ embedding: vector(id, 16), label: LABELS[id % 100] }))
    }
    // The sizes take turns, round by round, so a slow spell of this shared machine falls on both.
    const samples = sizes.map(() => [] as number[])
    for (let round = 0; round < FIRST_BATCH_ROUNDS + 1; round++) {
      for (const [i, root] of roots.entries()) {
        const ms = await timeToFirstBatch(root, round)
        if (round > 0) samples[i]!.push(ms) // round 0 warms the JIT
      }
    }
    return sizes.map((records, i) => {
      console.log(`  first batch at ${records} records: ${median(samples[i]!).toFixed(1)} ms`)
      return { records, medianMs: median(samples[i]!) }
    })
  } finally {
    await Promise.all(roots.map((root) => rm(root, { recursive: true, force: true })))
  }
}

async function throughputFigures(records: number, dim: number) {
  const loadStart = loadavg()[0]!
  // Appends as large as a default bucket can be, so the default sizing decides the buckets.
  const chunk = 32_768
  return await withFolder(async (root) => {
    const ds = await Dataset.create('vectors', {
      backend: await openStore(root),
      schema: {
        fields: [
          { name: 'embedding', family: 'embedding', dim },
          { name: 'label', family: 'scalar', kind: 'categorical' },
        ],
      },
    })
    const make = (id: number) => ({ embedding: vector(id, dim), label: LABELS[id % 100] })
    await ingest(ds, records, make, chunk)
    // The same records on MinIO, for DreamDB and (copied by the script) for the peers.
    const endpoint = process.env.DREAMDB_TEST_S3_ENDPOINT
    const stamp = Date.now().toString(36)
    const remote = endpoint === undefined ? undefined : `${endpoint}/bench-dataset-${stamp}`
    const peerBucket = `bench-dataset-peers-${stamp}`
    if (remote !== undefined) {
      const onS3 = await Dataset.create('vectors', {
        backend: await openStore(remote, { createBucket: true }),
        schema: ds.manifest.schema,
      })
      await ingest(onS3, records, make, chunk)
      await baselineS3Client(endpoint!).send(new CreateBucketCommand({ Bucket: peerBucket }))
    }
    // Export the same records once, for the peers to write as Parquet and Lance.
    const ipcPath = join(root, 'export.arrows')
    const exported: RecordBatch[] = []
    for await (const batch of ds.iterArrowBatches({ batchSize: 4096, fields: ['embedding', 'label'] }))
      exported.push(batch)
    await writeFile(ipcPath, tableToIPC(new Table(exported), 'stream'))

    const readOnce = async (readThreads: boolean, shuffleSeed?: number, backend = root, recycle = false) => {
      const pinned = await Dataset.openRef('vectors', { backend: await openStore(backend, { readThreads }) })
      const start = performance.now()
      const startCpu = process.cpuUsage()
      let rows = 0
      let sum = 0
      for await (const batch of pinned.iterArrowBatches({
        batchSize: 4096,
        fields: ['embedding', 'label'],
        ...(shuffleSeed === undefined ? {} : { shuffleSeed }),
        ...(recycle ? { recycleBuffers: true } : {}),
      })) {
        rows += batch.numRows
        const values = batch.getChild('embedding')!.data[0]!.children[0]!.values as Float32Array
        sum += values[values.length - 1]! // touch the data
      }
      if (rows !== records || Number.isNaN(sum)) throw new Error(`read ${rows} of ${records} records`)
      const seconds = (performance.now() - start) / 1000
      const used = process.cpuUsage(startCpu)
      // CPU of every thread of this process (read threads included), the server's not.
      cpu
        .get(
          recycle
            ? backend !== root
              ? 's3-recycle'
              : shuffleSeed !== undefined
                ? 'shuffled-recycle'
                : 'recycle'
            : key(readThreads, shuffleSeed, backend),
        )!
        .push((used.user + used.system) / 1e6)
      return seconds
    }
    const key = (readThreads: boolean, shuffleSeed: number | undefined, backend: string) =>
      backend !== root ? 's3' : shuffleSeed !== undefined ? 'shuffled' : readThreads ? 'threads' : 'inline'
    const cpu = new Map(
      ['threads', 'recycle', 'inline', 'shuffled', 'shuffled-recycle', 's3', 's3-recycle'].map((k) => [
        k,
        [] as number[],
      ]),
    )
    const python = execFileSync(join(process.cwd(), '..', 'tools', 'python-env.sh'), {
      encoding: 'utf8',
    }).trim()
    type PeerRun = { seconds: number; samples: number[]; cpu: number[] }
    /** The peers' reads of the local files, or with a bucket, of their copies on MinIO. */
    const readPeers = (bucket?: string) =>
      JSON.parse(
        execFileSync(
          python,
          [
            join('peers', 'read_peers.py'),
            ipcPath,
            root,
            String(ROUNDS),
            'embedding,label',
            ...(bucket === undefined ? [] : [bucket]),
          ],
          { encoding: 'utf8' },
        ),
      ) as {
        pyarrow: string
        pylance: string
        parquet?: PeerRun
        parquet_uncompressed?: PeerRun
        lance?: PeerRun
        parquet_s3?: PeerRun
        lance_s3?: PeerRun
      }
    // DreamDB and the peers take turns, so a slow spell of this shared machine falls on all.
    await readOnce(true) // warms the JIT
    await readOnce(false)
    for (const samples of cpu.values()) samples.length = 0
    const samples = {
      threads: [] as number[],
      recycle: [] as number[],
      inline: [] as number[],
      shuffled: [] as number[],
      shuffledRecycled: [] as number[],
      parquet: [] as number[],
      parquetUncompressed: [] as number[],
      lance: [] as number[],
      s3: [] as number[],
      s3Recycle: [] as number[],
      parquetS3: [] as number[],
      lanceS3: [] as number[],
    }
    const peerCpu = {
      parquet: [] as number[],
      parquetUncompressed: [] as number[],
      lance: [] as number[],
      parquetS3: [] as number[],
      lanceS3: [] as number[],
    }
    let peers: ReturnType<typeof readPeers> | undefined
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      for (let round = 0; round < ROUNDS; round++) {
        samples.threads.push(await readOnce(true))
        samples.recycle.push(await readOnce(true, undefined, root, true))
        samples.inline.push(await readOnce(false))
        samples.shuffled.push(await readOnce(true, cycle * ROUNDS + round))
        samples.shuffledRecycled.push(await readOnce(true, cycle * ROUNDS + round, root, true))
      }
      peers = readPeers()
      samples.parquet.push(...peers.parquet!.samples)
      samples.parquetUncompressed.push(...peers.parquet_uncompressed!.samples)
      samples.lance.push(...peers.lance!.samples)
      peerCpu.parquet.push(...peers.parquet!.cpu)
      peerCpu.parquetUncompressed.push(...peers.parquet_uncompressed!.cpu)
      peerCpu.lance.push(...peers.lance!.cpu)
    }
    // Then MinIO, in turns of its own, so the server's work never overlaps the local reads.
    for (let cycle = 0; remote !== undefined && cycle < CYCLES; cycle++) {
      for (let round = 0; round < ROUNDS; round++) {
        samples.s3.push(await readOnce(true, undefined, remote))
        samples.s3Recycle.push(await readOnce(true, undefined, remote, true))
      }
      const fromMinio = readPeers(peerBucket)
      samples.parquetS3.push(...fromMinio.parquet_s3!.samples)
      samples.lanceS3.push(...fromMinio.lance_s3!.samples)
      peerCpu.parquetS3.push(...fromMinio.parquet_s3!.cpu)
      peerCpu.lanceS3.push(...fromMinio.lance_s3!.cpu)
    }
    const megabytes = (records * (dim * 4 + 4)) / 1e6
    const row = (name: string, seconds: number, cpuSeconds: number[]) => ({
      reader: name,
      recordsPerSecond: records / seconds,
      megabytesPerSecond: megabytes / seconds,
      cpuMsPerPass: median(cpuSeconds) * 1000,
    })
    return {
      records,
      dim,
      load: { start: loadStart, end: loadavg()[0]! },
      results: [
        row('DreamDB iterArrowBatches (folder)', median(samples.threads), cpu.get('threads')!),
        row('DreamDB, recycleBuffers: true', median(samples.recycle), cpu.get('recycle')!),
        row('DreamDB, read threads off', median(samples.inline), cpu.get('inline')!),
        row('DreamDB, shuffled (a new seed each read)', median(samples.shuffled), cpu.get('shuffled')!),
        row(
          'DreamDB, shuffled with recycleBuffers: true',
          median(samples.shuffledRecycled),
          cpu.get('shuffled-recycle')!,
        ),
        row(`pyarrow ${peers!.pyarrow} Parquet iter_batches`, median(samples.parquet), peerCpu.parquet),
        row(
          `pyarrow ${peers!.pyarrow} Parquet uncompressed iter_batches`,
          median(samples.parquetUncompressed),
          peerCpu.parquetUncompressed,
        ),
        row(`pylance ${peers!.pylance} to_batches`, median(samples.lance), peerCpu.lance),
        ...(remote === undefined
          ? []
          : [
              row('DreamDB iterArrowBatches (MinIO)', median(samples.s3), cpu.get('s3')!),
              row(
                'DreamDB from MinIO, recycleBuffers: true',
                median(samples.s3Recycle),
                cpu.get('s3-recycle')!,
              ),
              row(
                `pyarrow ${peers!.pyarrow} Parquet from MinIO (S3FileSystem)`,
                median(samples.parquetS3),
                peerCpu.parquetS3,
              ),
              row(`pylance ${peers!.pylance} from MinIO`, median(samples.lanceS3), peerCpu.lanceS3),
            ]),
      ],
    }
  })
}

async function projectionFigures() {
  const records = quick ? 1_000 : 5_000
  return await withFolder(async (root) => {
    const { store, counts } = counting(await openStore(root))
    const ds = await Dataset.create('images', {
      backend: store,
      schema: {
        fields: [
          { name: 'image', family: 'binary', media: 'image' },
          { name: 'embedding', family: 'embedding', dim: 512 },
          { name: 'label', family: 'scalar', kind: 'categorical' },
        ],
      },
    })
    const image = (id: number) => new Uint8Array(20_000).fill(id % 251)
    await ingest(
      ds,
      records,
      (id) => ({ image: image(id), embedding: vector(id, 512), label: LABELS[id % 100] }),
      2048,
    )
    const pinned = await Dataset.openRef('images', { backend: store })
    const embeddingBytes = pinned.manifest.stats.bytes.embedding!
    const imageBytes = pinned.manifest.stats.bytes.image!
    counts.read = 0
    for await (const _ of pinned.iterArrowBatches({ batchSize: 1024, fields: ['embedding'] })) {
      // consume
    }
    return { records, embeddingBytes, imageBytes, bytesRead: counts.read }
  })
}

async function sweepFigures() {
  const records = quick ? 10_000 : 100_000
  const branches = quick ? 10 : 100
  return await withFolder(async (root) => {
    const { store, counts } = counting(await openStore(root))
    const ds = await Dataset.create('corpus', {
      backend: store,
      schema: {
        fields: [
          { name: 'embedding', family: 'embedding', dim: 16 },
          { name: 'label', family: 'scalar', kind: 'categorical' },
        ],
      },
    })
    await ingest(ds, records, (id) => ({ embedding: vector(id, 16), label: LABELS[id % 100] }))
    const anchors: bigint[] = []
    for await (const batch of ds.iterArrowBatches({ fields: ['label'], batchSize: 8192 })) {
      anchors.push(...(batch.getChild('_anchor')!.toArray() as BigUint64Array))
    }
    const baseBytes = counts.written
    let rawBytes = 0
    counts.written = 0
    for (let run = 0; run < branches; run++) {
      const branch = await ds.branch(`sweep/run-${run}`)
      const samples = anchors.map((anchor, i) => [anchor, LABELS[(i * (run + 3)) % 100]!] as const)
      rawBytes += samples.reduce((sum, [, label]) => sum + 8 + Buffer.byteLength(label), 0)
      await branch.addScalarLayer('prediction', 'embedding', 'categorical', samples)
    }
    return {
      records,
      branches,
      baseBytes,
      addedBytes: counts.written,
      rawBytes,
      minimalBytes: branches * records * 4,
    }
  })
}

/**
 * Embedding-only passes over the same records with and without 20 kB images: the images'
 * fragments must not shrink the embedding buckets (issue #13). The third dataset is the
 * sizing before it (at most 64 MiB of images per bucket, one fragment), for comparison.
 */
async function imageFigures() {
  const records = Number(option('image-records') ?? (quick ? 16_384 : 65_536))
  const rounds = Number(option('image-rounds') ?? ROUNDS * CYCLES)
  const dim = Number(option('image-dim') ?? 512)
  let bucketRecords = 32_768
  while (bucketRecords > 1024 && bucketRecords * dim * 4 > 16 << 20) bucketRecords /= 2
  // Appends as large as a bucket without images, so the sizing alone decides the buckets.
  const chunk = bucketRecords
  return await withFolder(async (root) => {
    const store = await openStore(root)
    const variants = [
      { name: 'without images', images: false, options: {} },
      { name: 'with 20 kB images', images: true, options: {} },
      // Before: the embeddings' record count, cut wherever the images reached 64 MiB.
      {
        name: 'with 20 kB images, sized as before #13',
        images: true,
        options: { bucketRecords, bucketBytes: 64 << 20 },
      },
    ].map((v, i) => ({ ...v, ref: `images-${i}`, samples: [] as number[], cpu: [] as number[], buckets: 0 }))
    for (const variant of variants) {
      const ds = await Dataset.create(variant.ref, {
        backend: store,
        schema: {
          fields: [
            ...(variant.images
              ? [{ name: 'image', family: 'binary' as const, media: 'image' as const }]
              : []),
            { name: 'embedding', family: 'embedding' as const, dim },
            { name: 'label', family: 'scalar' as const, kind: 'categorical' as const },
          ],
        },
      })
      for (let start = 0; start < records; start += chunk) {
        const ids = Array.from({ length: Math.min(chunk, records - start) }, (_, i) => start + i)
        await ds.appendMany(
          ids.map((id) => ({
            ...(variant.images ? { image: new Uint8Array(20_000).fill(id % 251) } : {}),
            embedding: vector(id, dim),
            label: LABELS[id % 100],
          })),
          variant.options,
        )
      }
      variant.buckets = ds.manifest.stats.buckets
    }
    const pass = async (ref: string) => {
      const ds = await Dataset.openRef(ref, { backend: store })
      const start = performance.now()
      const startCpu = process.cpuUsage()
      let rows = 0
      for await (const batch of ds.iterArrowBatches({ batchSize: 4096, fields: ['embedding'] }))
        rows += batch.numRows
      if (rows !== records) throw new Error(`read ${rows} of ${records} records`)
      const used = process.cpuUsage(startCpu)
      return { seconds: (performance.now() - start) / 1000, cpuMs: (used.user + used.system) / 1000 }
    }
    for (const variant of variants) await pass(variant.ref) // warms the JIT and the page cache
    const loadStart = loadavg()[0]!
    // The variants take turns, so a slow spell of this shared machine falls on all of them.
    for (let round = 0; round < rounds; round++) {
      for (const variant of variants) {
        const { seconds, cpuMs } = await pass(variant.ref)
        variant.samples.push(records / seconds)
        variant.cpu.push(cpuMs)
      }
    }
    const base = median(variants[0]!.samples)
    return {
      records,
      dim,
      chunk,
      rounds,
      load: { start: loadStart, end: loadavg()[0]! },
      results: variants.map((v) => ({
        dataset: v.name,
        buckets: v.buckets,
        recordsPerSecond: median(v.samples),
        cpuMsPerPass: median(v.cpu),
        vsWithout: median(v.samples) / base,
      })),
    }
  })
}

function imageSection(images: Awaited<ReturnType<typeof imageFigures>>): string {
  return `**Images beside embeddings**: embedding-only passes (batches of 4 096, in order) over
${images.records.toLocaleString('en-US')} records of a ${images.dim}-d embedding and a label, without and with a 20 kB image
each, appended ${images.chunk.toLocaleString('en-US')} at a time with the default sizing; the third dataset caps a bucket at 64 MiB
of images, as before issue #13 (one fragment per bucket). The datasets take turns, median of
${images.rounds} passes each; load average ${images.load.start.toFixed(1)} before, ${images.load.end.toFixed(1)} after. Goal: with images
at least 0.9x without.

${markdownTable(
  ['dataset', 'buckets', 'records/s', 'vs without images', 'CPU ms per pass'],
  images.results.map((r) => [
    r.dataset,
    String(r.buckets),
    r.recordsPerSecond.toFixed(0),
    `${r.vsWithout.toFixed(2)}x`,
    r.cpuMsPerPass.toFixed(0),
  ]),
)}
`
}

/**
 * One in-order pass over the dataset in a folder, in a fresh process, then that process's
 * peak RSS: `--rss-pass=<folder>` (the child side of `rssFigures`).
 */
if (option('rss-pass') !== undefined) {
  const ds = await Dataset.openRef('vectors', { backend: await openStore(option('rss-pass')!) })
  let rows = 0
  // Sampled at every batch as well: getrusage's maxRSS survives exec on Linux, so a child
  // started by a large parent reports the parent's size; /proc's VmHWM is this image's own.
  let sampled = process.memoryUsage.rss()
  for await (const batch of ds.iterArrowBatches({ batchSize: 4096, fields: ['embedding', 'label'] })) {
    rows += batch.numRows
    sampled = Math.max(sampled, process.memoryUsage.rss())
  }
  const status = await readFile('/proc/self/status', 'utf8').catch(() => '')
  const hwm = /VmHWM:\s+(\d+) kB/.exec(status)
  const peakRssMb = hwm === null ? sampled / 2 ** 20 : Number(hwm[1]) / 1024
  console.log(JSON.stringify({ rows, peakRssMb }))
  process.exit(0)
}

/** Peak RSS of an in-order pass over 128-d datasets of each size in RSS_SIZES, each pass a fresh process. */
async function rssFigures() {
  return await withFolder(async (root) => {
    for (const records of RSS_SIZES) {
      const dir = join(root, String(records))
      await mkdir(dir)
      const ds = await Dataset.create('vectors', {
        backend: await openStore(dir),
        schema: {
          fields: [
            { name: 'embedding', family: 'embedding', dim: 128 },
            { name: 'label', family: 'scalar', kind: 'categorical' },
          ],
        },
      })
      await ingest(ds, records, (id) => ({ embedding: vector(id, 128), label: LABELS[id % 100] }), 32_768)
    }
    const samples = RSS_SIZES.map(() => [] as number[])
    // The sizes take turns; the child runs this file again (same loader) in its --rss-pass mode.
    for (let round = 0; round < 3; round++) {
      for (const [i, records] of RSS_SIZES.entries()) {
        const out = execFileSync(
          process.execPath,
          [...process.execArgv, fileURLToPath(import.meta.url), `--rss-pass=${join(root, String(records))}`],
          { encoding: 'utf8' },
        )
        const { rows, peakRssMb } = JSON.parse(out.trim().split('\n').pop()!) as {
          rows: number
          peakRssMb: number
        }
        if (rows !== records) throw new Error(`read ${rows} of ${records} records`)
        samples[i]!.push(peakRssMb)
      }
    }
    return RSS_SIZES.map((records, i) => ({ records, peakRssMb: median(samples[i]!) }))
  })
}

if (option('only') === 'images') {
  const images = await imageFigures()
  console.log(imageSection(images))
  process.exit(0)
}

const date = new Date()
const machine = machineInfo(date)
// The machines are shared: say how busy this one was around the throughput figures.
const load = { start: loadavg()[0]!, end: 0 }
type Throughput = Awaited<ReturnType<typeof throughputFigures>>
const named = (throughput: Throughput, part: string) =>
  throughput.results.find((r) => r.reader.includes(part))
if (throughputOnly) {
  for (const shape of SHAPES) {
    const throughput = await throughputFigures(shape.records, shape.dim)
    const parquet = named(throughput, 'Parquet uncompressed')!
    console.log(
      markdownTable(
        ['reader', 'records/s', 'vs Parquet uncompressed', 'CPU ms per pass'],
        throughput.results.map((r) => [
          r.reader,
          r.recordsPerSecond.toFixed(0),
          `${(r.recordsPerSecond / parquet.recordsPerSecond).toFixed(2)}x`,
          r.cpuMsPerPass.toFixed(0),
        ]),
      ),
    )
    console.log(
      `${throughput.records} x ${throughput.dim}-d; load ${throughput.load.start.toFixed(1)} -> ${throughput.load.end.toFixed(1)}; NODE_OPTIONS=${process.env.NODE_OPTIONS ?? ''}`,
    )
  }
  process.exit(0)
}
console.log('time to first batch ...')
const firstBatch = await firstBatchFigures()
const throughputs: Throughput[] = []
for (const shape of SHAPES) {
  console.log(`throughput against pyarrow and pylance, ${shape.records} x ${shape.dim}-d ...`)
  throughputs.push(await throughputFigures(shape.records, shape.dim))
}
load.end = loadavg()[0]!
console.log('peak RSS of a pass ...')
const rss = await rssFigures()
console.log('bytes read by an embedding-only pass ...')
const projection = await projectionFigures()
console.log('embedding-only passes with and without images ...')
const images = await imageFigures()
console.log('a sweep of prediction layers ...')
const sweep = await sweepFigures()

const mb = (bytes: number) => (bytes / 1e6).toFixed(2)
const shapeName = (t: { records: number; dim: number }) => `${t.records.toLocaleString('en-US')} x ${t.dim}-d`

/** Issue #13's "Done when" read figures: each a ratio (or figure) against its goal. */
function doneWhen(): string[][] {
  const rows: string[][] = []
  const ratio = (a: number, b: number) => a / b
  const add = (
    goal: string,
    scope: string,
    value: number | undefined,
    met: (v: number) => boolean,
    show: (v: number) => string,
    note = '',
  ) =>
    rows.push([
      goal,
      scope,
      value === undefined ? 'not measured' : show(value),
      value === undefined ? '-' : met(value) ? 'yes' : 'no',
      note,
    ])
  const times = (v: number) => `${v.toFixed(2)}x`
  for (const t of throughputs) {
    const dreamdb = named(t, 'DreamDB iterArrowBatches (folder)')!
    const s3 = named(t, 'DreamDB iterArrowBatches (MinIO)')
    const parquetS3 = named(t, 'Parquet from MinIO')
    const lanceS3 = t.results.find((r) => r.reader.startsWith('pylance') && r.reader.includes('MinIO'))
    const cpuNote = (ours: { cpuMsPerPass: number }, theirs: { cpuMsPerPass: number } | undefined) =>
      theirs === undefined ? '' : `by CPU ${(theirs.cpuMsPerPass / ours.cpuMsPerPass).toFixed(2)}x`
    // The same passes from MinIO with recycled read buffers (absent from results written before it).
    const s3Recycled = named(t, 'MinIO, recycleBuffers')
    const withRecycled = (theirs: { recordsPerSecond: number } | undefined) =>
      s3Recycled === undefined || theirs === undefined
        ? ''
        : `; with recycleBuffers ${times(ratio(s3Recycled.recordsPerSecond, theirs.recordsPerSecond))}`
    add(
      'from MinIO >= 1.0x pyarrow Parquet (S3FileSystem)',
      shapeName(t),
      s3 && parquetS3 && ratio(s3.recordsPerSecond, parquetS3.recordsPerSecond),
      (v) => v >= 1.0,
      times,
      s3 ? `${cpuNote(s3, parquetS3)}${withRecycled(parquetS3)}` : '',
    )
    add(
      'from MinIO >= 0.7x pylance',
      shapeName(t),
      s3 && lanceS3 && ratio(s3.recordsPerSecond, lanceS3.recordsPerSecond),
      (v) => v >= 0.7,
      times,
      s3 ? `${cpuNote(s3, lanceS3)}${withRecycled(lanceS3)}` : '',
    )
    const uncompressed = named(t, 'Parquet uncompressed')!
    add(
      'from a folder >= 1.0x pyarrow uncompressed Parquet',
      shapeName(t),
      ratio(dreamdb.recordsPerSecond, uncompressed.recordsPerSecond),
      (v) => v >= 1.0,
      times,
      `${cpuNote(dreamdb, uncompressed)}; with recycleBuffers ${times(
        ratio(named(t, 'recycleBuffers')!.recordsPerSecond, uncompressed.recordsPerSecond),
      )}`,
    )
    const shuffled = named(t, 'shuffled')!
    // Shuffled with recycled buffers against in order with them (absent from results written before it).
    const shuffledRecycled = named(t, 'shuffled with recycleBuffers')
    add(
      'shuffled >= 0.8x in order',
      shapeName(t),
      ratio(shuffled.recordsPerSecond, dreamdb.recordsPerSecond),
      (v) => v >= 0.8,
      times,
      `${cpuNote(shuffled, dreamdb)}${
        shuffledRecycled === undefined
          ? ''
          : `; with recycleBuffers ${times(
              ratio(shuffledRecycled.recordsPerSecond, named(t, 'recycleBuffers')!.recordsPerSecond),
            )}`
      }`,
    )
  }
  const withImages = images.results[1]!
  add(
    'embedding-only with images >= 0.9x without',
    `${images.records.toLocaleString('en-US')} x ${images.dim}-d`,
    withImages.vsWithout,
    (v) => v >= 0.9,
    times,
    `by CPU ${(images.results[0]!.cpuMsPerPass / withImages.cpuMsPerPass).toFixed(2)}x`,
  )
  const [small, large] = [rss[0]!, rss[rss.length - 1]!]
  add(
    `peak RSS flat from ${small.records.toLocaleString('en-US')} to ${large.records.toLocaleString('en-US')} records (within 1.25x; about 150 MB before)`,
    '128-d, in order',
    large.peakRssMb / small.peakRssMb,
    (v) => v <= 1.25,
    (v) => `${small.peakRssMb.toFixed(0)} -> ${large.peakRssMb.toFixed(0)} MB (${v.toFixed(2)}x)`,
  )
  const [first, last] = [firstBatch[0]!, firstBatch[firstBatch.length - 1]!]
  add(
    'time to first batch flat (within 1.5x) and under 100 ms',
    `${first.records.toLocaleString('en-US')} -> ${last.records.toLocaleString('en-US')} records`,
    last.medianMs / first.medianMs,
    (v) => v <= 1.5 && Math.max(first.medianMs, last.medianMs) < 100,
    (v) => `${first.medianMs.toFixed(1)} -> ${last.medianMs.toFixed(1)} ms (${v.toFixed(2)}x)`,
  )
  return rows
}

function throughputSection(t: Throughput): string {
  const parquetRecordsPerSecond = t.results.find((r) => r.reader.startsWith('pyarrow'))!.recordsPerSecond
  const dreamdbOnMinio = named(t, 'DreamDB iterArrowBatches (MinIO)')
  const parquetOnMinio = named(t, 'Parquet from MinIO')
  const s3Sentence =
    dreamdbOnMinio === undefined || parquetOnMinio === undefined
      ? ''
      : ` Against Parquet from MinIO, DreamDB from MinIO reads at ${(
          dreamdbOnMinio.recordsPerSecond / parquetOnMinio.recordsPerSecond
        ).toFixed(2)}x.`
  return `**${shapeName(t)}** (load average ${t.load.start.toFixed(1)} before, ${t.load.end.toFixed(1)} after).${s3Sentence}

${markdownTable(
  ['reader', 'records/s', 'MB/s', 'vs Parquet', 'CPU ms per pass'],
  t.results.map((r) => [
    r.reader,
    r.recordsPerSecond.toFixed(0),
    r.megabytesPerSecond.toFixed(0),
    `${(r.recordsPerSecond / parquetRecordsPerSecond).toFixed(2)}x`,
    r.cpuMsPerPass.toFixed(0),
  ]),
)}
`
}

const section = `## dataset: first batch, throughput, projection, sweep

${date.toISOString().slice(0, 10)}, ${describeMachine(machine)}${quick ? ' (--quick: smaller sizes)' : ''}.
Load average ${load.start.toFixed(1)} before the first-batch figures, ${load.end.toFixed(1)} after the throughput figures.

**Issue #13, "Done when" (read side)**: every figure below comes from this one run; ratios
are of medians of alternating reads (records/s), with CPU per pass beside them (on a shared
machine the CPU ratio moves less with the load than the wall ratio).

${markdownTable(['goal', 'shape', 'measured', 'met', 'note'], doneWhen())}

**Time to first batch** (open the dataset in a fresh store handle, then the first shuffled
batch of 256 embeddings and labels; folder backend; the sizes take turns, median of
${FIRST_BATCH_ROUNDS} each). Goal: the two
within 1.5x, and under 100 ms.

${markdownTable(
  ['records', 'first batch ms'],
  firstBatch.map((f) => [f.records.toLocaleString('en-US'), f.medianMs.toFixed(1)]),
)}

Ratio: ${(firstBatch[firstBatch.length - 1]!.medianMs / firstBatch[0]!.medianMs).toFixed(2)}x.

**Peak RSS** of one in-order pass (embeddings and labels, batches of 4 096) over 128-d
datasets, each pass in a fresh process (median of 3; the process's own baseline of loaded
modules included):
${rss.map((r) => `${r.records.toLocaleString('en-US')} records ${r.peakRssMb.toFixed(0)} MB`).join(', ')}.

**Throughput**: records of a float32 embedding and a categorical label, appended 32 768 at
a time so the default bucket sizing decides the buckets, all batches of 4 096 read in
order with every object verified by its SHA-256, every column touched, from the page cache.
The embeddings are distinct pseudo-random float32 values (a seeded 32-bit PRNG per record), so
no format can dictionary-encode them. The peers read the very same records, exported by DreamDB
and written as Parquet (row groups of 16 384; snappy, pyarrow's default and the "vs Parquet"
reference, and uncompressed) and as a Lance dataset. DreamDB and the peers take ${CYCLES} turns of ${ROUNDS} reads each
in the same run; each figure is the median of its ${CYCLES * ROUNDS} reads. The first row is the
default: objects of 1 MiB and more are read and hashed on worker threads, one per core; the
second is the first reusing the buffers of consumed windows (\`recycleBuffers: true\`: the
caller is done with a batch when it asks for the next); the third reads and hashes on the
main thread (\`openStore(root, { readThreads: false })\`); the fourth is the first with a
global shuffle (the peers read in order; a window's embedding rows are put in its order by
the read thread that hashed them), and the fifth that shuffle with recycled buffers. The last three rows, where present, read the same
records from a MinIO server on this machine (started by the benchmark): DreamDB its own
objects, pyarrow the Parquet file through its S3FileSystem, pylance the Lance dataset
through its object store; "vs Parquet" stays relative to the local file.

${throughputs.map(throughputSection).join('\n')}
"CPU ms per pass" is the median CPU time of the reading process over a pass, every thread
of it (DreamDB's read threads, pyarrow's and Lance's pools), not the server's: on a shared
machine it moves less with the load than the rates do.

**Projection**: iterating only \`embedding\` over ${projection.records.toLocaleString('en-US')} records that also hold
20 kB images read ${mb(projection.bytesRead)} MB; the embedding objects hold ${mb(projection.embeddingBytes)} MB
(${((projection.bytesRead / projection.embeddingBytes - 1) * 100).toFixed(1)}% over; metadata included) and the images
${mb(projection.imageBytes)} MB, none of which was read. Goal: within 10%.

${imageSection(images)}
**Sweep**: ${sweep.branches} branches of a ${sweep.records.toLocaleString('en-US')}-record dataset (base objects
${mb(sweep.baseBytes)} MB), each adding a categorical prediction layer for every record, wrote ${mb(sweep.addedBytes)} MB:
${(sweep.addedBytes / sweep.rawBytes).toFixed(2)}x the raw samples as given (${mb(sweep.rawBytes)} MB: a uint64 anchor and
the label's UTF-8 bytes per record), ${(sweep.addedBytes / sweep.minimalBytes).toFixed(2)}x a bare int32 class index per
record (${mb(sweep.minimalBytes)} MB). No base object was copied. Goal: at most 1.2x the raw predictions.
`
console.log(section)
if (!quick)
  await writeResults(
    'dataset',
    date,
    { machine, load, firstBatch, throughputs, rss, projection, images, sweep },
    section,
  )
