/**
 * Python and PyTorch: TypeScript-native iterArrowBatches, Python iter_arrow_batches through
 * the bridge, DataLoader over DreamDBDataset (0 and 2 workers), a plain pyarrow-Parquet
 * IterableDataset and Lance's LanceDataset, all reading the same 1M x 128-d records in one
 * run, plus the bridge's cold start and every worker's peak RSS.
 *
 * The dataset (a DreamDB folder store, the same records as Parquet and Lance) is built once
 * into the cache folder outside the repository and reused by later runs. `--quick` reads
 * 100 000 records; `--batch-size N` (default 1024), `--rounds N` (default 5); `--prepare` only
 * builds the dataset.
 */
import { execFileSync, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { homedir, loadavg } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { openStore } from '@dreamdb/cas'
import { Dataset } from '@dreamdb/dataset'
import { type RecordBatch, Table, tableToIPC } from 'apache-arrow'
import { BENCH_DIR, describeMachine, machineInfo, markdownTable, median, writeResults } from './_harness.js'

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(name)
  return at === -1 ? fallback : Number(process.argv[at + 1])
}
const quick = process.argv.includes('--quick')
const RECORDS = quick ? 100_000 : 1_000_000
const DIM = 128
const BATCH = option('--batch-size', 1024)
const ROUNDS = option('--rounds', quick ? 2 : 5)
const COLD_STARTS = quick ? 5 : 11
const REPO_ROOT = join(BENCH_DIR, '..')
const CACHE =
  process.env.DREAMDB_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'dreamdb')
const WORK = join(CACHE, 'bench', `python-${RECORDS}x${DIM}`)
const STORE = join(WORK, 'dreamdb')
const LABELS = Array.from({ length: 100 }, (_, i) => `n0${1440764 + i * 7919}`)
const FIELDS = ['embedding', 'label']

/** Distinct pseudo-random vectors: each record's own generator, seeded by its id. */
function vector(id: number): Float32Array {
  const out = new Float32Array(DIM)
  let state = (Math.imul(id + 1, 2654435761) ^ 0x9e3779b9) >>> 0
  for (let d = 0; d < DIM; d++) {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    state >>>= 0
    out[d] = state / 2 ** 32 - 0.5
  }
  return out
}

const python = execFileSync(join(REPO_ROOT, 'tools', 'python-env.sh'), { encoding: 'utf8' }).trim()
const pythonEnv = {
  ...process.env,
  PYTHONPATH: [join(REPO_ROOT, 'packages', 'python'), process.env.PYTHONPATH].filter(Boolean).join(':'),
}
const loaders = join(BENCH_DIR, 'peers', 'python_loaders.py')

/** Build the records once: DreamDB's folder store, then the same records as Parquet and Lance. */
async function ensureDataset(): Promise<void> {
  const stamp = join(WORK, 'ready.json')
  const want = {
    records: RECORDS,
    dim: DIM,
    labels: LABELS.length,
    generator: 'xorshift32/v1',
    appends: 32_768,
  }
  if (existsSync(stamp) && JSON.stringify(JSON.parse(await readFile(stamp, 'utf8'))) === JSON.stringify(want))
    return
  console.log(`building ${RECORDS} records into ${WORK} (once) ...`)
  await rm(WORK, { recursive: true, force: true })
  await mkdir(WORK, { recursive: true })
  const ds = await Dataset.create('vectors', {
    backend: await openStore(STORE),
    schema: {
      fields: [
        { name: 'embedding', family: 'embedding', dim: DIM },
        { name: 'label', family: 'scalar', kind: 'categorical' },
      ],
    },
  })
  // Appends of 32 768 records, so the default bucket sizing decides the buckets (as bench/dataset.ts).
  const chunk = 32_768
  for (let start = 0; start < RECORDS; start += chunk) {
    const records = Array.from({ length: Math.min(chunk, RECORDS - start) }, (_, i) => ({
      embedding: vector(start + i),
      label: LABELS[(start + i) % LABELS.length],
    }))
    await ds.appendMany(records)
  }
  // The peers get exactly what DreamDB returns, as an Arrow IPC stream.
  const ipcPath = join(WORK, 'export.arrows')
  const batches: RecordBatch[] = []
  for await (const batch of ds.iterArrowBatches({ batchSize: 65_536, fields: FIELDS })) batches.push(batch)
  await writeFile(ipcPath, tableToIPC(new Table(batches), 'stream'))
  execFileSync(python, [loaders, 'prepare', ipcPath, WORK], { stdio: 'inherit', env: pythonEnv })
  await rm(ipcPath)
  await writeFile(stamp, JSON.stringify(want))
}

/** One TypeScript-native pass, as the Python readers do it: open, stream, touch the data. */
async function nativePass(): Promise<{ rows: number; seconds: number; cpuSeconds: number }> {
  const cpu = process.cpuUsage()
  const start = performance.now()
  const ds = await Dataset.openRef('vectors', { backend: await openStore(STORE) })
  let rows = 0
  let sum = 0
  for await (const batch of ds.iterArrowBatches({ batchSize: BATCH, fields: FIELDS })) {
    const values = batch.getChild('embedding')!.data[0]!.children[0]!.values as Float32Array
    sum += values[values.length - 1]!
    rows += batch.numRows
  }
  if (Number.isNaN(sum)) throw new Error('NaN')
  const used = process.cpuUsage(cpu)
  return { rows, seconds: (performance.now() - start) / 1000, cpuSeconds: (used.user + used.system) / 1e6 }
}

/** The long-lived Python process: one JSON request a line, one JSON answer a line. */
function startServer() {
  const child = spawn(python, [loaders, 'serve', WORK, STORE, String(BATCH)], {
    env: pythonEnv,
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]()
  return {
    async ask<T>(request: unknown): Promise<T> {
      child.stdin!.write(`${JSON.stringify(request)}\n`)
      const line = await lines.next()
      if (line.done) throw new Error('the Python side exited')
      const answer = JSON.parse(line.value) as T & { error?: string }
      if (answer.error !== undefined) throw new Error(answer.error)
      return answer
    },
    close() {
      child.stdin!.end()
    },
  }
}

const READERS = [
  'native',
  'python_iter',
  'dreamdb_dl0',
  'dreamdb_dl2',
  'parquet_none_dl0',
  'parquet_none_dl2',
  'parquet_snappy_dl0',
  'parquet_snappy_dl2',
  'lance_dl0',
  'lance_dl2',
] as const
type Reader = (typeof READERS)[number]

const date = new Date()
const machine = machineInfo(date)
console.log('building the bridge bundle ...')
execFileSync('pnpm', ['--filter', '@dreamdb/python', 'build'], {
  cwd: REPO_ROOT,
  stdio: ['ignore', 'ignore', 'inherit'],
})
await ensureDataset()
if (process.argv.includes('--prepare')) process.exit(0)
const load = { start: loadavg()[0]!, end: 0 }
const server = startServer()

console.log(`bridge cold starts (${COLD_STARTS}) ...`)
const cold = await server.ask<{ seconds: number[]; findNodeSeconds: number[] }>({ coldstarts: COLD_STARTS })

const cpuSamples = Object.fromEntries(READERS.map((r) => [r, [] as number[]])) as Record<Reader, number[]>
type Roles = { main: number; workers: number; bridges: number }
const roleSamples = Object.fromEntries(READERS.map((r) => [r, [] as Roles[]])) as Record<Reader, Roles[]>
const pass = async (reader: Reader, measured = true): Promise<number> => {
  const result =
    reader === 'native'
      ? await nativePass()
      : await server.ask<{ rows: number; seconds: number; cpuSeconds: number; cpuByRole: Roles }>({ reader })
  if (result.rows !== RECORDS) throw new Error(`${reader} read ${result.rows} of ${RECORDS} records`)
  if (measured) {
    cpuSamples[reader].push(result.cpuSeconds)
    if ('cpuByRole' in result) roleSamples[reader].push(result.cpuByRole as Roles)
  }
  return result.seconds
}
console.log('warm-up pass of every reader (starts the persistent workers) ...')
for (const reader of READERS) console.log(`  ${reader}: ${(await pass(reader, false)).toFixed(2)} s`)
const samples = Object.fromEntries(READERS.map((r) => [r, [] as number[]])) as Record<Reader, number[]>
const loads: number[] = []
for (let round = 0; round < ROUNDS; round++) {
  // Every round a different reader goes first, and every other round the order reverses.
  const rotated = READERS.map((_, i) => READERS[(i + round) % READERS.length]!)
  const order = round % 2 === 0 ? rotated : rotated.reverse()
  for (const reader of order) samples[reader].push(await pass(reader))
  loads.push(loadavg()[0]!)
  console.log(
    `  round ${round + 1}/${ROUNDS}: ${READERS.map((r) => `${r} ${samples[r].at(-1)!.toFixed(2)}`).join(', ')}`,
  )
}
load.end = loadavg()[0]!
server.close()

console.log('peak RSS, one fresh process per loader ...')
interface Process {
  pid: number
  ppid: number
  role: string
  program: string
  hwmKiB: number
}
const rssReaders = [
  'python_iter',
  'dreamdb_dl0',
  'dreamdb_dl2',
  'parquet_none_dl2',
  'parquet_snappy_dl2',
  'lance_dl2',
]
const rss: { reader: string; mainRssBeforeKiB: number; processes: Process[] }[] = []
for (const reader of rssReaders) {
  const output = execFileSync(python, [loaders, 'rss', reader, WORK, STORE, String(BATCH)], {
    encoding: 'utf8',
    env: pythonEnv,
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  rss.push(JSON.parse(output.trim().split('\n').at(-1)!))
}

// -- figures ---------------------------------------------------------------------------------

const recordsPerSecond = (reader: Reader) => RECORDS / median(samples[reader])
/** Throughput of `subject` over `baseline`, per round (the two ran in the same round). */
function ratio(subject: Reader, baseline: Reader) {
  const perRound = samples[subject].map((seconds, i) => samples[baseline][i]! / seconds)
  return { median: median(perRound), min: Math.min(...perRound), max: Math.max(...perRound), perRound }
}
const GOALS = [
  { subject: 'python_iter', baseline: 'native', goal: 0.8 },
  { subject: 'dreamdb_dl2', baseline: 'parquet_none_dl2', goal: 1.0 },
  { subject: 'dreamdb_dl2', baseline: 'parquet_snappy_dl2', goal: 1.0 },
  { subject: 'dreamdb_dl2', baseline: 'lance_dl2', goal: 0.7 },
  { subject: 'dreamdb_dl0', baseline: 'parquet_none_dl0', goal: undefined },
  { subject: 'dreamdb_dl0', baseline: 'parquet_snappy_dl0', goal: undefined },
  { subject: 'dreamdb_dl0', baseline: 'lance_dl0', goal: undefined },
  { subject: 'dreamdb_dl2', baseline: 'dreamdb_dl0', goal: undefined },
  { subject: 'dreamdb_dl0', baseline: 'python_iter', goal: undefined },
] as const
const ratios = GOALS.map((g) => ({
  ...g,
  ...ratio(g.subject, g.baseline),
  /** The same ratio from CPU time: what a quiet machine with these 2 cores would show. */
  cpu: median(cpuSamples[g.baseline]) / median(cpuSamples[g.subject]),
}))
const coldMs = cold.seconds.map((s) => s * 1000)
const cpu = (r: Reader) => median(cpuSamples[r]).toFixed(2)
const role = (r: Reader, name: keyof Roles) => median(roleSamples[r].map((x) => x[name])).toFixed(2)
const findNodeMs = cold.findNodeSeconds.map((s) => s * 1000)

const LABEL: Record<Reader, string> = {
  native: 'TypeScript `iterArrowBatches` (Node.js, no bridge)',
  python_iter: 'Python `iter_arrow_batches` + numpy (bridge)',
  dreamdb_dl0: 'DataLoader(DreamDBDataset), num_workers=0',
  dreamdb_dl2: 'DataLoader(DreamDBDataset), num_workers=2',
  parquet_none_dl0: 'DataLoader(Parquet IterableDataset, uncompressed), 0 workers',
  parquet_none_dl2: 'DataLoader(Parquet IterableDataset, uncompressed), 2 workers',
  parquet_snappy_dl0: 'DataLoader(Parquet IterableDataset, snappy), 0 workers',
  parquet_snappy_dl2: 'DataLoader(Parquet IterableDataset, snappy), 2 workers',
  lance_dl0: 'DataLoader(lance.torch.data.LanceDataset), 0 workers',
  lance_dl2: 'DataLoader(lance.torch.data.LanceDataset), 2 workers',
}
const mb = (records: number) => (records * (DIM * 4 + 4)) / 1e6
const mib = (kib: number) => (kib / 1024).toFixed(0)
const fmt = (r: { median: number; min: number; max: number }) =>
  `${r.median.toFixed(2)}x (${r.min.toFixed(2)}-${r.max.toFixed(2)})`
const rssRows = rss.flatMap((run) =>
  run.processes
    .filter((p) => p.role !== 'main' || !run.reader.endsWith('_dl2'))
    .map((p) => [LABEL[run.reader as Reader] ?? run.reader, p.role, p.program, mib(p.hwmKiB)]),
)

const section = `## python: the Python client and PyTorch loaders against pyarrow-Parquet and Lance

${date.toISOString().slice(0, 10)} (${date.toISOString()}), ${describeMachine(machine)}, Python
${execFileSync(python, ['-c', 'import sys, torch, pyarrow, lance; print(sys.version.split()[0], "torch", torch.__version__, "pyarrow", pyarrow.__version__, "pylance", lance.__version__)'], { encoding: 'utf8' }).trim()}.
Load average (1 min) ${load.start.toFixed(1)} before the timed rounds, ${loads.map((l) => l.toFixed(1)).join(', ')} after each round${quick ? ' (--quick: smaller sizes)' : ''}.

${RECORDS.toLocaleString('en-US')} records of a ${DIM}-d float32 embedding (distinct pseudo-random vectors) and a
categorical label (100 values), ${mb(RECORDS).toFixed(0)} MB of values, read in full in batches of ${BATCH}: DreamDB from a
folder store (every object verified by its SHA-256), the peers from the very same records
exported by DreamDB and written as Parquet (row groups of 65 536, uncompressed and snappy)
and as Lance (fragments of 131 072 rows), all from the page cache. Every Python reader
yields the same thing, \`dreamdb_dataset.torch.batch_to_numpy\` of each Arrow batch
(embedding as an (n, ${DIM}) float32 array, label as str; DreamDB adds \`_anchor\`), which
DataLoader turns into tensors; the Parquet IterableDataset splits row groups across workers
in \`__iter__\` and reads them with \`ParquetFile(path, memory_map=True).iter_batches\` (memory
mapping is pyarrow's documented option for local files and the cheapest configuration found
for this file: 0.61-0.67 CPU s a pass in one process against 0.80-0.86 without it;
\`pre_buffer\` and \`use_threads=False\` changed nothing measurable); LanceDataset is used as its
docs show (\`batch_size\`, \`columns\`, its default fragment sharding across workers and
\`batch_readahead=16\`, our \`to_tensor_fn\` since its default cannot convert a dictionary
label). Every DataLoader has \`batch_size=None\` and \`persistent_workers=True\` with workers
(started in the warm-up pass, so the bridge start is not in the epoch times; see below).
One warm-up pass of every reader, then ${ROUNDS} rounds in which every reader reads once, the
order rotating and reversing from round to round; each figure is the median of its ${ROUNDS}
passes, each ratio the median (and range) of the per-round ratios. Raw samples:
\`bench/results/python-*.json\`.

${markdownTable(
  ['reader', 'records/s', 'MB/s', 'median s', 'range s', 'CPU s', 'main / workers / bridges'],
  READERS.map((r) => [
    LABEL[r],
    recordsPerSecond(r).toFixed(0),
    (mb(RECORDS) / median(samples[r])).toFixed(0),
    median(samples[r]).toFixed(2),
    `${Math.min(...samples[r]).toFixed(2)}-${Math.max(...samples[r]).toFixed(2)}`,
    median(cpuSamples[r]).toFixed(2),
    r === 'native'
      ? '-'
      : (['main', 'workers', 'bridges'] as const)
          .map((role) => median(roleSamples[r].map((x) => x[role])).toFixed(2))
          .join(' / '),
  ]),
)}

"CPU s" is the median CPU time (user + system, all threads) that a pass cost every process
involved: the Node.js process for the first row; the Python process, its DataLoader
workers and every bridge for the others, split in the last column (medians of each, so
they need not add up exactly). Unlike the wall-clock figures, it hardly depends on how busy
the shared machine was; with both cores taken by neighbours, wall-clock ratios follow it.
"by CPU s" below is the baseline's CPU s over the subject's: a check on a wall-clock ratio
that a burst of load on one side of a round has bent. The goal is judged on the wall clock.

${markdownTable(
  ['throughput of', 'over', 'ratio (range)', 'by CPU s', 'goal'],
  ratios.map((r) => [
    LABEL[r.subject],
    LABEL[r.baseline],
    fmt(r),
    `${r.cpu.toFixed(2)}x`,
    r.goal === undefined
      ? '-'
      : `>= ${r.goal}x: ${r.median >= r.goal ? 'met' : 'missed'}${(r.cpu >= r.goal) === (r.median >= r.goal) ? '' : ` (by CPU s: ${r.cpu >= r.goal ? 'met' : 'missed'})`}`,
  ]),
)}

**Where the time goes** (CPU s per pass, from the table). Through the bridge, Python's
\`iter_arrow_batches\` costs ${cpu('python_iter')} CPU s against ${cpu('native')} for the TypeScript-native pass:
the bridge ${role('python_iter', 'bridges')} (the same iteration, plus one IPC stream written per batch, its schema and
dictionary bytes encoded once per pass, and the pipe), Python ${role('python_iter', 'main')} (reading the pipe, the IPC
decode, the numpy view). DataLoader with 2 workers costs ${cpu('dreamdb_dl2')} for DreamDB (bridges ${role('dreamdb_dl2', 'bridges')},
workers ${role('dreamdb_dl2', 'workers')}, main ${role('dreamdb_dl2', 'main')}) against ${cpu('parquet_none_dl2')} for uncompressed Parquet (workers ${role('parquet_none_dl2', 'workers')},
main ${role('parquet_none_dl2', 'main')}) and ${cpu('lance_dl2')} for Lance. A worker's bridge writes each batch into a memory
file (memfd) that the worker handed it with the credit, and the worker's tensors are views of
it, so DataLoader sends the training process one file descriptor per batch; the peers'
workers pay DataLoader's copy of every tensor into new shared memory. A worker also asks its
bridge for up to 8 batches as one (the same records in the same order) and cuts them without
a copy, one memory file each: the bridge's, the iterator's and the stream's work per batch
(building the Arrow batch, its IPC message, a frame, opening and mapping a memory file) was
most of what a batch of 1 024 cost (design/0007). A memory file goes back to its worker's
pool once the bridge has filled it, and a later transfer reuses it once no process maps it any
more (a write lease on the worker's own open of it is granted only then), so the bridge
writes into pages that exist instead of new ones the kernel must allocate and zero, and the
training process no longer frees every batch's pages (the peers pay both in DataLoader's
copy into new shared memory). What is left in a bridge is mostly per byte: reading each
object into memory, verifying its SHA-256, and writing the batches into the memory files.
The workers' bridges hash on their own thread (no read threads) and run V8's garbage
collector on one thread (\`--single-threaded-gc\`, design/0007). The workers' own CPU is mostly
DataLoader's: pickling each batch and handing its file descriptor to the training process
(a connection to the worker's resource sharer per batch), as for the peers.

**Bridge start** (from the first call, with no bridge running, to the answer of its
\`hello\`: finding \`node\`, spawning it on the bundle, loading the bundle, one round trip),
median of ${COLD_STARTS} cold starts: ${median(coldMs).toFixed(0)} ms (${Math.min(...coldMs).toFixed(0)}-${Math.max(...coldMs).toFixed(0)}),
of which finding \`node\` (\`node --version\` when it is on PATH) ${median(findNodeMs).toFixed(0)} ms. Goal: under 300 ms: ${median(coldMs) < 300 ? 'met' : 'missed'}.

**Peak RSS** (VmHWM from \`/proc/<pid>/status\`, sampled every 20 ms and at the end of one pass
in a fresh Python process per loader; a forked worker's figure includes the pages it shares
with its parent, whose RSS was ${rss.map((r) => mib(r.mainRssBeforeKiB)).join('/')} MiB before the pass in these
processes, in the order of the table's loaders):

${markdownTable(['loader', 'process', 'program', 'peak RSS MiB'], rssRows)}
`
console.log(section)
const result = {
  machine,
  records: RECORDS,
  dim: DIM,
  batchSize: BATCH,
  rounds: ROUNDS,
  load: { ...load, afterRounds: loads },
  samples,
  cpuSamples,
  cpuByRole: roleSamples,
  ratios,
  bridgeStart: { ms: coldMs, findNodeMs, medianMs: median(coldMs) },
  rss,
}
if (!quick) await writeResults('python', date, result, section)
