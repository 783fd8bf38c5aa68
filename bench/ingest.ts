/**
 * Ingest: records/s and MB/s of `dreamdb ingest` reading Hugging Face-style parquet shards
 * into a folder and into MinIO, next to a plain copy of the same shard files (copyFile +
 * fsync to a folder; PutObject to the same MinIO) in the same run.
 *
 * The shards have the seed's layout (an `image` struct {bytes, path}, a ClassLabel `label`,
 * a 512-d float32 `embedding` list column) and real-sized images: 20-50 kB each, of
 * incompressible bytes like a JPEG's (ingest stores image bytes as they are; with an
 * embedding column it never decodes them). The ingest is `@dreamdb/ingest`'s `ingest()` (what the CLI calls), with its
 * defaults (1024 rows per commit, 2 chunks at once), run in this process, so Node's start
 * is not counted.
 *
 * Then the scale-out (design/0006): one `dreamdb ingest` process against two at once on the
 * same shards and dataset (the built CLI, `apps/cli/dist`; each process's start counted on
 * both sides), alternating, each pass into a new store.
 *
 * CPU time (user + system, every thread of the process) is printed beside every wall time:
 * on a shared machine the wall ratios are noisy, and whether two processes can run 1.6x as
 * fast as one depends on a free core for each, which CPU per record shows.
 *
 *   pnpm bench ingest [--quick] [--records N]
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { copyFile, cp, mkdir, mkdtemp, open, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3'
import { openStore } from '@dreamdb/cas'
import { type IngestResult, ingest } from '@dreamdb/ingest'
import { imageColumn, shardFileName, writeHfShard } from '@dreamdb/ingest/testing'
import { Repository } from '@dreamdb/manifest'
import { Field, Float32, Int64, List, vectorFromArray } from 'apache-arrow'
import {
  alternate,
  BENCH_DIR,
  baselineS3Client,
  describeMachine,
  machineInfo,
  mapConcurrently,
  markdownTable,
  median,
  quantile,
  type RoundPolicy,
  timePass,
  writeResults,
} from './_harness.js'

const argv = process.argv.slice(2)
const quick = argv.includes('--quick')
const recordsArg = argv.indexOf('--records')
// 12 shards: enough for two processes to split evenly shard by shard (claims are per shard).
const RECORDS = recordsArg !== -1 ? Number(argv[recordsArg + 1]) : quick ? 600 : 6000
const SHARD_ROWS = 500
const ROW_GROUP = 100
const DIM = 512
const CLASSES = 100
const IMAGE_MIN = 20_000
const IMAGE_MAX = 50_000
/** Shards uploaded at once by the plain copy to MinIO (what `aws s3 cp --recursive` would do, roughly). */
const COPY_CONCURRENCY = 4
const POLICY: RoundPolicy = quick
  ? { minRounds: 1, maxRounds: 1, budgetSeconds: 0 }
  : { minRounds: 5, maxRounds: 9, budgetSeconds: 90 }

/** A deterministic generator, so every run ingests the same sizes and vectors. */
function lcg(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    return state / 2 ** 32
  }
}

interface Shards {
  root: string
  files: string[]
  shardBytes: number
  imageBytes: number
}

/** `RECORDS` rows in shards of `SHARD_ROWS`, the layout `datasets` writes. */
async function writeShards(root: string): Promise<Shards> {
  const dir = join(root, 'data')
  const random = lcg(7)
  const names = Array.from({ length: CLASSES }, (_, c) => `n${String(1_440_000 + c * 37).padStart(8, '0')}`)
  const count = Math.ceil(RECORDS / SHARD_ROWS)
  const files: string[] = []
  let imageBytes = 0
  for (let s = 0; s < count; s++) {
    const rows = Math.min(SHARD_ROWS, RECORDS - s * SHARD_ROWS)
    const images = Array.from({ length: rows }, () => {
      const size = IMAGE_MIN + Math.floor(random() * (IMAGE_MAX - IMAGE_MIN))
      const bytes = randomBytes(size)
      bytes.set([0xff, 0xd8, 0xff, 0xe0], 0) // JPEG SOI + APP0
      bytes.set([0xff, 0xd9], size - 2) // EOI
      imageBytes += size
      return new Uint8Array(bytes.buffer, bytes.byteOffset, size)
    })
    const path = join(dir, shardFileName('train', s, count))
    await writeHfShard(
      path,
      {
        image: imageColumn(
          images,
          images.map((_, r) => `train/${s}/${r}.JPEG`),
        ),
        label: vectorFromArray(
          Array.from({ length: rows }, () => BigInt(Math.floor(random() * CLASSES))),
          new Int64(),
        ),
        embedding: vectorFromArray(
          Array.from({ length: rows }, () => Float32Array.from({ length: DIM }, () => random() - 0.5)),
          new List(new Field('item', new Float32(), true)),
        ),
      },
      { labelNames: names, rowGroup: ROW_GROUP },
    )
    files.push(path)
  }
  let shardBytes = 0
  for (const f of files) shardBytes += (await stat(f)).size
  return { root, files, shardBytes, imageBytes }
}

/** CPU seconds (user + system, all threads) of this process since `from`. */
const cpuSince = (from: NodeJS.CpuUsage) => {
  const used = process.cpuUsage(from)
  return (used.user + used.system) / 1e6
}

async function runIngest(
  backend: string,
  shards: Shards,
): Promise<{ seconds: number; cpuSeconds: number; checkSeconds: number; result: IngestResult }> {
  const store = await openStore(backend)
  let result: IngestResult | undefined
  let started = 0
  let planned = 0
  let cpuSeconds = 0
  try {
    const seconds = await timePass(async () => {
      const cpu = process.cpuUsage()
      started = performance.now()
      result = await ingest(new Repository(store), {
        root: shards.root,
        dataset: 'imagenet-bench',
        splits: ['train'],
        embedding: { kind: 'column', column: 'embedding' },
        cwd: shards.root,
        // 'planned' comes when every check before the first write is done.
        onProgress: (event) => {
          if (event.kind === 'planned') planned = performance.now()
        },
      })
      cpuSeconds = cpuSince(cpu)
    })
    if (result!.records.ingested !== RECORDS) {
      throw new Error(`ingested ${result!.records.ingested} records, expected ${RECORDS}`)
    }
    return { seconds, cpuSeconds, checkSeconds: (planned - started) / 1000, result: result! }
  } finally {
    await store.close()
  }
}

interface Case {
  backend: string
  baseline: string
  rounds: number
  copySeconds: number[]
  ingestSeconds: number[]
  /** CPU seconds of each measured pass (the warm-up's dropped), copy and ingest. */
  copyCpu: number[]
  ingestCpu: number[]
  /** Per ingest pass (warm-up included): seconds before the first write (footers, every vector checked). */
  checkSeconds: number[]
  commits: number
}

async function fsyncPath(path: string, flags = 'r'): Promise<void> {
  const handle = await open(path, flags)
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/**
 * `copyFile` is what `cp` does, and the kernel may copy without moving the bytes through
 * the process (copy_file_range, reflinks); `write` reads and writes every byte, as ingest must.
 */
async function folderCase(work: string, shards: Shards, how: 'copyFile' | 'write'): Promise<Case> {
  let pass = 0
  let commits = 0
  const checks: number[] = []
  const copyCpu: number[] = []
  const ingestCpu: number[] = []
  const samples = await alternate(
    POLICY,
    async () => {
      const dest = join(work, `copy-${pass++}`)
      await mkdir(dest)
      const seconds = await timePass(async () => {
        const cpu = process.cpuUsage()
        for (const file of shards.files) {
          const to = join(dest, file.slice(file.lastIndexOf('/') + 1))
          if (how === 'copyFile') await copyFile(file, to)
          else await writeFile(to, await readFile(file))
          await fsyncPath(to)
        }
        await fsyncPath(dest)
        copyCpu.push(cpuSince(cpu))
      })
      await rm(dest, { recursive: true, force: true })
      return seconds
    },
    async () => {
      const dest = join(work, `store-${pass++}`)
      const { seconds, cpuSeconds, checkSeconds, result } = await runIngest(dest, shards)
      commits = result.commits
      checks.push(checkSeconds)
      ingestCpu.push(cpuSeconds)
      await rm(dest, { recursive: true, force: true })
      return seconds
    },
  )
  return {
    backend: 'folder',
    baseline:
      how === 'copyFile' ? 'fs.copyFile + fsync of each shard' : 'readFile + writeFile + fsync of each shard',
    rounds: samples.raw.length,
    copySeconds: samples.raw,
    ingestSeconds: samples.subject,
    copyCpu: copyCpu.slice(1),
    ingestCpu: ingestCpu.slice(1),
    checkSeconds: checks,
    commits,
  }
}

async function minioCase(endpoint: string, shards: Shards): Promise<Case> {
  const client = baselineS3Client(endpoint)
  const Bucket = `dreamdb-bench-ingest-${randomBytes(4).toString('hex')}`
  await client.send(new CreateBucketCommand({ Bucket }))
  let pass = 0
  let commits = 0
  const checks: number[] = []
  const copyCpu: number[] = []
  const ingestCpu: number[] = []
  try {
    const samples = await alternate(
      POLICY,
      async () => {
        const prefix = `copy-${pass++}`
        return await timePass(async () => {
          const cpu = process.cpuUsage()
          await mapConcurrently(shards.files, COPY_CONCURRENCY, async (file) => {
            const Body = await readFile(file)
            await client.send(
              new PutObjectCommand({
                Bucket,
                Key: `${prefix}/data/${file.slice(file.lastIndexOf('/') + 1)}`,
                Body,
                ContentLength: Body.byteLength,
              }),
            )
          })
          copyCpu.push(cpuSince(cpu))
        })
      },
      async () => {
        const { seconds, cpuSeconds, checkSeconds, result } = await runIngest(
          `${endpoint}/${Bucket}/store-${pass++}`,
          shards,
        )
        commits = result.commits
        checks.push(checkSeconds)
        ingestCpu.push(cpuSeconds)
        return seconds
      },
    )
    return {
      backend: 'S3 (MinIO)',
      baseline: `readFile + PutObjectCommand per shard, ${COPY_CONCURRENCY} at once`,
      rounds: samples.raw.length,
      copySeconds: samples.raw,
      ingestSeconds: samples.subject,
      copyCpu: copyCpu.slice(1),
      ingestCpu: ingestCpu.slice(1),
      checkSeconds: checks,
      commits,
    }
  } finally {
    client.destroy()
  }
}

const CLI_DIR = join(BENCH_DIR, '..', 'apps', 'cli')
const CLI = join(CLI_DIR, 'dist', 'index.js')
/** The copy of the built CLI the processes run (`privateCli`). */
let cliCopy = CLI

/**
 * The built CLI, copied into `work` at the start: a rebuild of apps/cli/dist while the bench
 * runs (the checkout is shared) would otherwise take the file from under the processes. Its
 * dependencies resolve through a link to apps/cli/node_modules.
 */
async function privateCli(work: string): Promise<string> {
  const dir = join(work, 'cli')
  await cp(join(CLI_DIR, 'dist'), join(dir, 'dist'), { recursive: true })
  // Its package.json too: the CLI reads its version there, and Node its module type.
  await copyFile(join(CLI_DIR, 'package.json'), join(dir, 'package.json'))
  await symlink(join(CLI_DIR, 'node_modules'), join(dir, 'node_modules'))
  return join(dir, 'dist', 'index.js')
}

/**
 * Loaded into each ingest process: at exit it writes its own CPU time (every thread) to
 * stderr, which the bench reads back (a parent cannot ask for one child's usage).
 */
const REPORT_CPU = `data:text/javascript,${encodeURIComponent(
  "import { writeSync } from 'node:fs'; process.on('exit', () => { const u = process.cpuUsage(); writeSync(2, '\\ndreamdb-bench-cpu ' + (u.user + u.system) / 1e6 + '\\n') })",
)}`

/** `dreamdb ingest` of the shards into `backend`, as a process; its JSON summary and CPU seconds. */
function ingestProcess(backend: string, shards: Shards): Promise<{ result: IngestResult; cpu: number }> {
  const args = [
    '--import',
    REPORT_CPU,
    cliCopy,
    'ingest',
    '--root',
    shards.root,
    '--dataset-name',
    'imagenet-bench',
    '--splits',
    'train',
    '--embedding-column',
    'embedding',
    '--backend',
    backend,
    '--json',
    '--no-progress',
  ]
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d))
    child.on('error', reject)
    child.on('close', (code) => {
      const cpu = /dreamdb-bench-cpu ([0-9.e+-]+)/.exec(err)
      if (code !== 0 || cpu === null) reject(new Error(`ingest exit ${code}: ${err}`))
      else resolve({ result: JSON.parse(out) as IngestResult, cpu: Number(cpu[1]) })
    })
  })
}

interface ScaleCase {
  backend: string
  rounds: number
  oneSeconds: number[]
  twoSeconds: number[]
  /** Records each of the two processes appended, per pass. */
  split: [number, number][]
  /** CPU seconds per measured pass: the one process's, and each of the two's. */
  oneCpu: number[]
  twoCpu: [number, number][]
}

/** One ingest process against two at once, alternating; every pass into a new store. */
async function scaleCase(
  name: string,
  target: (pass: number) => Promise<string>,
  shards: Shards,
): Promise<ScaleCase> {
  let pass = 0
  const split: [number, number][] = []
  const oneCpu: number[] = []
  const twoCpu: [number, number][] = []
  const samples = await alternate(
    POLICY,
    async () => {
      const backend = await target(pass++)
      let run: { result: IngestResult; cpu: number } | undefined
      const seconds = await timePass(async () => {
        run = await ingestProcess(backend, shards)
      })
      if (run!.result.records.ingested !== RECORDS)
        throw new Error(`one process ingested ${run!.result.records.ingested}`)
      oneCpu.push(run!.cpu)
      return seconds
    },
    async () => {
      const backend = await target(pass++)
      let runs: { result: IngestResult; cpu: number }[] = []
      const seconds = await timePass(async () => {
        runs = await Promise.all([ingestProcess(backend, shards), ingestProcess(backend, shards)])
      })
      const [a, b] = runs.map((r) => r.result.records.ingested) as [number, number]
      if (a + b !== RECORDS || runs.some((r) => r.result.records.total !== RECORDS)) {
        throw new Error(`two processes ingested ${a} + ${b} of ${RECORDS}`)
      }
      split.push([a, b])
      twoCpu.push([runs[0]!.cpu, runs[1]!.cpu])
      return seconds
    },
  )
  return {
    backend: name,
    rounds: samples.raw.length,
    oneSeconds: samples.raw,
    twoSeconds: samples.subject,
    split: split.slice(1),
    oneCpu: oneCpu.slice(1),
    twoCpu: twoCpu.slice(1),
  }
}

const mb = (bytes: number) => bytes / 1e6
const fixed = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2))

async function main(): Promise<void> {
  const date = new Date()
  const machine = machineInfo(date)
  // The machines are shared: say how busy this one was.
  const load = { start: loadavg()[0]!, end: 0 }
  const work = await mkdtemp(join(tmpdir(), 'dreamdb-bench-ingest-'))
  try {
    process.stderr.write(`ingest: writing ${RECORDS} records as parquet shards...\n`)
    const shards = await writeShards(join(work, 'hf'))
    process.stderr.write(
      `ingest: ${shards.files.length} shards, ${fixed(mb(shards.shardBytes))} MB (${fixed(mb(shards.imageBytes))} MB of images)\n`,
    )
    if (existsSync(CLI)) cliCopy = await privateCli(work)
    const cases: Case[] = []
    process.stderr.write('ingest: folder...\n')
    cases.push(await folderCase(work, shards, 'copyFile'))
    cases.push(await folderCase(work, shards, 'write'))
    const endpoint = process.env.DREAMDB_TEST_S3_ENDPOINT
    if (endpoint) {
      process.stderr.write('ingest: MinIO...\n')
      cases.push(await minioCase(endpoint, shards))
    } else {
      process.stderr.write('ingest: SKIPPED MinIO (no DREAMDB_TEST_S3_ENDPOINT; run through pnpm bench)\n')
    }
    const scale: ScaleCase[] = []
    if (existsSync(cliCopy)) {
      process.stderr.write('ingest: one process against two, folder...\n')
      scale.push(await scaleCase('folder', async (pass) => join(work, `scale-${pass}`), shards))
      if (endpoint) {
        const client = baselineS3Client(endpoint)
        const Bucket = `dreamdb-bench-scale-${randomBytes(4).toString('hex')}`
        await client.send(new CreateBucketCommand({ Bucket }))
        client.destroy()
        process.stderr.write('ingest: one process against two, MinIO...\n')
        scale.push(
          await scaleCase('S3 (MinIO)', async (pass) => `${endpoint}/${Bucket}/scale-${pass}`, shards),
        )
      }
    } else {
      process.stderr.write(`ingest: SKIPPED one process against two (no ${CLI}; pnpm build first)\n`)
    }
    load.end = loadavg()[0]!
    const rows = cases.map((c) => {
      const copy = median(c.copySeconds)
      const ing = median(c.ingestSeconds)
      const ratios = c.copySeconds.map((s, i) => s / c.ingestSeconds[i]!)
      return {
        ...c,
        copyMedian: copy,
        ingestMedian: ing,
        copyMBps: mb(shards.shardBytes) / copy,
        ingestMBps: mb(shards.shardBytes) / ing,
        ingestRecordsPerSecond: RECORDS / ing,
        copyRecordsPerSecond: RECORDS / copy,
        ratio: copy / ing,
        copyCpuMedian: median(c.copyCpu),
        ingestCpuMedian: median(c.ingestCpu),
        checkShare: median(c.checkSeconds) / ing,
        ratioQuartiles: [quantile(ratios, 0.25), quantile(ratios, 0.75)] as [number, number],
      }
    })
    const table = markdownTable(
      [
        'backend',
        'plain copy (baseline)',
        'rounds',
        'copy MB/s',
        'copy records/s',
        'ingest MB/s',
        'ingest records/s',
        'ingest/copy',
        'middle half of rounds',
        'CPU s per pass, copy / ingest',
        'checks before writing',
      ],
      rows.map((r) => [
        r.backend,
        r.baseline,
        String(r.rounds),
        fixed(r.copyMBps),
        fixed(r.copyRecordsPerSecond),
        fixed(r.ingestMBps),
        fixed(r.ingestRecordsPerSecond),
        `${r.ratio.toFixed(2)}x`,
        `${r.ratioQuartiles[0].toFixed(2)}–${r.ratioQuartiles[1].toFixed(2)}`,
        `${fixed(r.copyCpuMedian)} / ${fixed(r.ingestCpuMedian)}`,
        `${Math.round(r.checkShare * 100)}% of the time`,
      ]),
    )
    const scaleRows = scale.map((c) => {
      const speedups = c.oneSeconds.map((s, i) => s / c.twoSeconds[i]!)
      const oneCpu = median(c.oneCpu)
      // With a free core each, two processes take as long as the busier one's CPU (when
      // CPU-bound): the speed-up the CPU figures support, whatever the load was.
      const busier = median(c.twoCpu.map(([a, b]) => Math.max(a, b)))
      return {
        ...c,
        oneMedian: median(c.oneSeconds),
        twoMedian: median(c.twoSeconds),
        speedup: median(c.oneSeconds) / median(c.twoSeconds),
        speedupQuartiles: [quantile(speedups, 0.25), quantile(speedups, 0.75)] as [number, number],
        oneCpuMedian: oneCpu,
        twoCpuMedian: median(c.twoCpu.map(([a, b]) => a + b)),
        busierCpuMedian: busier,
        cpuSpeedup: oneCpu / busier,
        // Cores one process keeps busy (its CPU over its wall time), and the CPU two spend
        // beyond one's (each process's start-up, parquet-wasm's compile and first decodes,
        // every pending vector checked by both, claims and history reads).
        oneCores: median(c.oneCpu.map((cpu, i) => cpu / c.oneSeconds[i]!)),
        extraCpu: median(c.twoCpu.map(([a, b]) => a + b)) - oneCpu,
      }
    })
    const scaleTable = markdownTable(
      [
        'backend',
        'rounds',
        '1 process (s)',
        '2 processes (s)',
        'speed-up',
        'middle half of rounds',
        'CPU µs per record, 1 / 2 processes',
        'speed-up by CPU',
        'records per process',
      ],
      scaleRows.map((r) => [
        r.backend,
        String(r.rounds),
        fixed(r.oneMedian),
        fixed(r.twoMedian),
        `${r.speedup.toFixed(2)}x`,
        `${r.speedupQuartiles[0].toFixed(2)}–${r.speedupQuartiles[1].toFixed(2)}`,
        `${fixed((r.oneCpuMedian / RECORDS) * 1e6)} / ${fixed((r.twoCpuMedian / RECORDS) * 1e6)}`,
        `${r.cpuSpeedup.toFixed(2)}x`,
        r.split.map(([a, b]) => `${a}+${b}`).join(', '),
      ]),
    )
    // Two processes on `cores` cores take at least their CPU over the cores; one takes its
    // CPU over the cores it keeps busy: the best speed-up the machine allows.
    const capOf = (r: (typeof scaleRows)[number]) =>
      Math.min(machine.cores, 2) / (r.oneCores * ((r.oneCpuMedian + r.extraCpu) / r.oneCpuMedian))
    const folderWrite = rows.find((r) => r.backend === 'folder' && r.baseline.startsWith('readFile'))
    const goal = (value: number | undefined, target: number) =>
      value === undefined ? 'not measured' : `${value.toFixed(2)}x (${value >= target ? 'met' : 'missed'})`
    const doneWhen = [
      `- Ingest >= 0.5x a read+write+fsync copy: folder ${goal(folderWrite?.ratio, 0.5)}${rows.some((r) => r.backend === 'S3 (MinIO)') ? `, MinIO ${goal(rows.find((r) => r.backend === 'S3 (MinIO)')?.ratio, 0.5)}` : ''}.`,
      ...scaleRows.map(
        (r) =>
          `- 2 ingest processes >= 1.6x one, ${r.backend}: ${goal(r.speedup, 1.6)} by wall time; ${r.cpuSpeedup.toFixed(2)}x by CPU (one process's CPU over the busier of the two's: the speed-up with a free core each). One process keeps ${r.oneCores.toFixed(2)} cores busy and two spend ${fixed(r.extraCpu)} s of CPU more than one (${Math.round((r.extraCpu / r.oneCpuMedian) * 100)}%), so on ${machine.cores} cores two can be at most ${capOf(r).toFixed(2)}x as fast as one.`,
      ),
      `- Load average ${load.start.toFixed(1)} at the start, ${load.end.toFixed(1)} at the end, on ${machine.cores} cores.`,
    ].join('\n')
    const stamp = date
      .toISOString()
      .replace(/\.\d{3}Z$/, 'Z')
      .replaceAll(':', '-')
    const section = `## ingest: Hugging Face parquet shards into a dataset, next to a plain copy

Run \`pnpm bench ingest${quick ? ' --quick' : ''}\` on ${date.toISOString().slice(0, 10)} (${date.toISOString()}).
Machine: ${describeMachine(machine)}; load average ${load.start.toFixed(1)} at the start, ${load.end.toFixed(1)} at the end.

Done when (issue #13), this run:

${doneWhen}

${RECORDS.toLocaleString('en-US')} records in ${shards.files.length} shards of ${SHARD_ROWS} rows (row groups of ${ROW_GROUP}, snappy), ${fixed(mb(shards.shardBytes))} MB of
parquet: images of ${IMAGE_MIN / 1000}-${IMAGE_MAX / 1000} kB (${fixed(mb(shards.imageBytes))} MB), a ${DIM}-d float32 embedding column, a ClassLabel of
${CLASSES} classes. \`dreamdb ingest\`'s defaults: ${rows[0]?.commits ?? '?'} commits of up to 1024 rows, 2 chunks at once.

${table}

- MB/s and records/s are the shards' bytes and records over the median time of a pass; MB is
  10^6 bytes. \`ingest/copy\` is the ingest's throughput over the plain copy's (1.00x would be
  as fast as copying the files); "middle half of rounds" is the 25th to 75th percentile of
  the per-round ratios. Passes alternate which side goes first, after one warm-up pass each.
- Two plain copies to a folder: \`copyFile\` (what \`cp\` does; the kernel may copy without
  the bytes passing through the process) and \`readFile\` + \`writeFile\`, which moves every
  byte through memory as ingest must. Both fsync each file and the folder, as the store does.
- "CPU s per pass" is this process's CPU time (user + system, every thread: the decode thread
  included) over a pass, median; MinIO's own CPU is not in it.
- "checks before writing" is the part of an ingest pass spent before its first write:
  finding the shards, reading every footer and fingerprint and the dataset's history, and
  reading and checking every pending row's vector (the embedding column alone), so that bad
  input fails with nothing written (median over passes).
- The copy moves the shard files as they are. Ingest does everything a dataset needs on top:
  reads every footer, decodes the parquet (parquet-wasm, on a thread of its own), checks every
  vector, re-encodes the columns as Arrow, hashes every byte into content-addressed objects
  (sha2-256; image bytes twice: each image's own digest, for reading one record, and its
  fragment's), writes them (fsynced on a folder, like the copy), reserves the plan's anchors,
  and commits one manifest per chunk with its metadata for resuming, each shard under its
  claim (design/0006); a chunk's objects are written while the chunk before it commits.
  Every source column is kept (\`image_path\`, \`source_shard\`, \`source_row\` besides
  image, embedding, label and split).
- Each ingest pass writes into a new, empty store (a folder, or a new prefix of one bucket),
  so nothing is deduplicated against an earlier pass. Shards are read from the page cache on
  both sides. Node's start-up is not counted (\`@dreamdb/ingest\`'s \`ingest()\`, which the CLI
  calls, runs in the bench process).

One \`dreamdb ingest\` process against two at once on the same shards into the same dataset
(design/0006: each claims shards and writes their rows; both commit to one branch), the
built CLI with its defaults, each pass into a new store (a folder, or a new prefix of one
bucket), alternating; a process's start (about 0.3 s) is in both sides' time. Speed-up is
the one process's median time over the two's. CPU is each process's own (user + system, every
thread, from inside it); "speed-up by CPU" is the one process's CPU over the busier of the two's
(medians): what two processes would gain with a core each, when the machine has none to spare.

${scaleTable || '(skipped: no built CLI)'}

- The most two processes can gain on this machine (the "at most" above): two take at least
  their CPU (one's, plus what two spend beyond it) over the cores, and one takes its CPU over
  the cores it keeps busy (its CPU over its wall time, median; the decode thread, hashing,
  writes and V8's own threads run beside its main thread). A process that keeps more than
  1.25 of 2 cores busy leaves too little for a second to reach 1.6x, even with no CPU spent
  twice.

- Every sample: \`bench/results/ingest-${stamp}.json\`.
`
    const paths = await writeResults(
      'ingest',
      date,
      {
        machine,
        loadAverage: load,
        settings: {
          records: RECORDS,
          shards: shards.files.length,
          shardRows: SHARD_ROWS,
          rowGroup: ROW_GROUP,
          dim: DIM,
          classes: CLASSES,
          imageBytes: [IMAGE_MIN, IMAGE_MAX],
          shardBytes: shards.shardBytes,
          totalImageBytes: shards.imageBytes,
          batchRecords: 1024,
          concurrency: 2,
          copyConcurrencyS3: COPY_CONCURRENCY,
          policy: POLICY,
        },
        cases: rows,
        scale: scaleRows,
      },
      section,
    )
    process.stdout.write(`${section}\nwrote ${paths.json}, ${paths.markdown}\n`)
  } finally {
    await rm(work, { recursive: true, force: true })
  }
}

await main()
