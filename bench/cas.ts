/**
 * Object get and put throughput of @dreamdb/cas on each backend, next to a raw baseline
 * measured in the same run.
 *
 * - folder: `store.get`/`store.put` against `fs.promises.readFile`/`writeFile` of the same
 *   bytes, both in one temporary folder (so on the same disk);
 * - S3: a store on a fresh bucket of the MinIO started by `pnpm bench` against plain
 *   `GetObjectCommand`/`PutObjectCommand` on the same server, with the same client settings;
 * - memory: against a `Map` that copies in and out, as the memory backend does.
 *
 * Small objects (4 KiB) go through many at a time with the same concurrency on both sides;
 * large ones (64 MiB) one at a time. Every get is verified by the store (that is the
 * product), so verification is part of the cas figure. Puts use fresh random bytes on both
 * sides every time, because the store writes nothing for bytes it already holds.
 *
 *   pnpm bench cas            full run, writes bench/results/ and bench/RESULTS.md
 *   pnpm bench cas --quick    a smoke run with tiny sizes that writes nothing
 */
import { randomBytes, randomFillSync } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  PutObjectCommand,
} from '@aws-sdk/client-s3'
import { openStore, type Store } from '@dreamdb/cas'
import {
  alternate,
  baselineS3Client,
  describeMachine,
  type MachineInfo,
  machineInfo,
  mapConcurrently,
  markdownTable,
  median,
  quantile,
  type RoundPolicy,
  resultsStamp,
  timePass,
  writeResults,
} from './_harness.js'

/** The store's CID type, without a direct dependency on multiformats. */
type CID = Awaited<ReturnType<Store['put']>>

/** The goal for reads, verification included. */
const GET_TARGET_RATIO = 0.8

interface SizeClass {
  label: string
  objectBytes: number
  /** Objects per pass. */
  objects: number
  /** Requests in flight, the same on both sides. */
  concurrency: number
  /** Measured rounds of each side, after one warm-up round. */
  rounds: RoundPolicy
}

/** Measured seconds (both sides together) after which a case stops adding rounds. */
const BUDGET_SECONDS = 5

const FULL_SIZES: SizeClass[] = [
  {
    label: '4 KiB',
    objectBytes: 4 << 10,
    objects: 2000,
    concurrency: 16,
    rounds: { minRounds: 5, maxRounds: 21, budgetSeconds: BUDGET_SECONDS },
  },
  {
    label: '64 MiB',
    objectBytes: 64 << 20,
    objects: 1,
    concurrency: 1,
    rounds: { minRounds: 5, maxRounds: 21, budgetSeconds: BUDGET_SECONDS },
  },
]

const QUICK_SIZES: SizeClass[] = [
  {
    label: '4 KiB',
    objectBytes: 4 << 10,
    objects: 64,
    concurrency: 16,
    rounds: { minRounds: 2, maxRounds: 2, budgetSeconds: 0 },
  },
  {
    label: '1 MiB',
    objectBytes: 1 << 20,
    objects: 1,
    concurrency: 1,
    rounds: { minRounds: 2, maxRounds: 2, budgetSeconds: 0 },
  },
]

/** One way of storing bytes and reading them back. */
interface Side<Key> {
  /** The calls measured, for the report. */
  calls: { get: string; put: string }
  put(bytes: Uint8Array): Promise<Key>
  get(key: Key): Promise<Uint8Array>
  /** Remove what `put` wrote, outside the timing, so disk and memory use stay bounded. */
  discard(keys: readonly Key[]): Promise<void>
}

/** A backend under test: the store and its raw baseline on the same medium. */
interface Contest {
  backend: string
  raw: Side<string>
  cas: Side<CID>
  close(): Promise<void>
}

interface SideStats {
  calls: string
  samplesSeconds: number[]
  medianSeconds: number
  mbPerSecond: number
  opsPerSecond: number
}

interface CaseResult {
  backend: string
  operation: 'get' | 'put'
  size: string
  objectBytes: number
  objects: number
  concurrency: number
  rounds: number
  raw: SideStats
  cas: SideStats
  /** cas median throughput / raw median throughput. */
  ratio: number
  /** cas/raw throughput of each round, pairing the two passes that ran back to back. */
  pairedRatios: number[]
  /** The middle half of `pairedRatios` (25th and 75th percentiles): how steady the ratio was. */
  pairedRatioQuartiles: [number, number]
}

/** The key under which a store keeps an object (design/0002-object-store.md). */
function objectKey(cid: CID): string {
  const hex = Buffer.from(cid.multihash.digest).toString('hex')
  return `objects/sha2-256/${hex.slice(0, 2)}/${hex}`
}

/**
 * Plain Uint8Arrays, the API's type. Not Buffers: the memory backend copies with `slice`,
 * which on a Buffer returns a view, so Buffers would let it skip its copies.
 */
function freshObjects(size: SizeClass): Uint8Array[] {
  return Array.from({ length: size.objects }, () => randomFillSync(new Uint8Array(size.objectBytes)))
}

/** A real copy whatever the subclass (`Buffer#slice` returns a view). */
function copyOf(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes)
}

function stats(calls: string, samplesSeconds: number[], size: SizeClass): SideStats {
  const medianSeconds = median(samplesSeconds)
  return {
    calls,
    samplesSeconds,
    medianSeconds,
    mbPerSecond: (size.objects * size.objectBytes) / medianSeconds / 1e6,
    opsPerSecond: size.objects / medianSeconds,
  }
}

function caseResult(
  contest: Contest,
  operation: 'get' | 'put',
  size: SizeClass,
  samples: { raw: number[]; subject: number[] },
): CaseResult {
  const raw = stats(contest.raw.calls[operation], samples.raw, size)
  const cas = stats(contest.cas.calls[operation], samples.subject, size)
  // A throughput ratio is the inverse of the time ratio.
  const pairedRatios = samples.raw.map((rawSeconds, round) => rawSeconds / samples.subject[round]!)
  return {
    backend: contest.backend,
    operation,
    size: size.label,
    objectBytes: size.objectBytes,
    objects: size.objects,
    concurrency: size.concurrency,
    rounds: samples.raw.length,
    raw,
    cas,
    ratio: cas.mbPerSecond / raw.mbPerSecond,
    pairedRatios,
    pairedRatioQuartiles: [quantile(pairedRatios, 0.25), quantile(pairedRatios, 0.75)],
  }
}

/** Both sides read the same bytes: each object is put once through each side, then read back. */
async function measureGets(contest: Contest, size: SizeClass): Promise<CaseResult> {
  const objects = freshObjects(size)
  const rawKeys = await mapConcurrently(objects, size.concurrency, (bytes) => contest.raw.put(bytes))
  const casKeys = await mapConcurrently(objects, size.concurrency, (bytes) => contest.cas.put(bytes))
  const first = [await contest.raw.get(rawKeys[0]!), await contest.cas.get(casKeys[0]!)]
  if (!Buffer.from(first[0]!).equals(first[1]!)) {
    throw new Error(`${contest.backend}: raw and cas reads returned different bytes`)
  }
  const getAll =
    <Key>(side: Side<Key>, keys: readonly Key[]) =>
    () =>
      timePass(async () => {
        await mapConcurrently(keys, size.concurrency, async (key) => {
          const bytes = await side.get(key)
          if (bytes.byteLength !== size.objectBytes) throw new Error(`short read: ${bytes.byteLength} bytes`)
        })
      })
  const samples = await alternate(size.rounds, getAll(contest.raw, rawKeys), getAll(contest.cas, casKeys))
  await contest.raw.discard(rawKeys)
  await contest.cas.discard(casKeys)
  return caseResult(contest, 'get', size, samples)
}

/** Each pass puts bytes nobody has stored yet, so the store cannot skip the write. */
async function measurePuts(contest: Contest, size: SizeClass): Promise<CaseResult> {
  const putAll =
    <Key>(side: Side<Key>) =>
    async () => {
      const objects = freshObjects(size)
      let keys: Key[] = []
      const seconds = await timePass(async () => {
        keys = await mapConcurrently(objects, size.concurrency, (bytes) => side.put(bytes))
      })
      await side.discard(keys)
      return seconds
    }
  const samples = await alternate(size.rounds, putAll(contest.raw), putAll(contest.cas))
  return caseResult(contest, 'put', size, samples)
}

async function folderContest(workDir: string): Promise<Contest> {
  const rawDir = join(workDir, 'raw')
  const casRoot = join(workDir, 'cas')
  await mkdir(rawDir, { recursive: true })
  const store = await openStore(casRoot)
  let written = 0
  return {
    backend: 'folder',
    raw: {
      calls: { get: 'fs.promises.readFile', put: 'fs.promises.writeFile' },
      put: async (bytes) => {
        const path = join(rawDir, `object-${written++}`)
        await writeFile(path, bytes)
        return path
      },
      get: (path) => readFile(path),
      discard: async (paths) => {
        await mapConcurrently(paths, 16, (path) => unlink(path))
      },
    },
    cas: {
      calls: { get: 'store.get', put: 'store.put' },
      put: (bytes) => store.put(bytes),
      get: (cid) => store.get(cid),
      // The store has no delete (garbage collection will own that), so remove the files.
      discard: async (cids) => {
        await mapConcurrently(cids, 16, (cid) => rm(join(casRoot, objectKey(cid)), { force: true }))
      },
    },
    close: () => store.close(),
  }
}

async function s3Contest(endpoint: string): Promise<Contest> {
  // Bucket housekeeping goes through its own client, so the baseline's sockets serve only
  // the measured calls.
  const admin = baselineS3Client(endpoint)
  const baseline = baselineS3Client(endpoint)
  const Bucket = `dreamdb-bench-${randomBytes(6).toString('hex')}`
  await admin.send(new CreateBucketCommand({ Bucket }))
  const store = await openStore(`${endpoint}/${Bucket}`)
  const deleteKeys = async (keys: readonly string[]): Promise<void> => {
    // DeleteObjects takes at most 1000 keys per request.
    for (let start = 0; start < keys.length; start += 1000) {
      const Objects = keys.slice(start, start + 1000).map((Key) => ({ Key }))
      const response = await admin.send(
        new DeleteObjectsCommand({ Bucket, Delete: { Objects, Quiet: true } }),
      )
      const failed = response.Errors?.[0]
      if (failed !== undefined)
        throw new Error(`deleting ${failed.Key} failed: ${failed.Code} ${failed.Message}`)
    }
  }
  let written = 0
  return {
    backend: 'S3 (MinIO)',
    raw: {
      calls: { get: 'GetObjectCommand + transformToByteArray', put: 'PutObjectCommand' },
      put: async (bytes) => {
        const Key = `raw/object-${written++}`
        await baseline.send(
          new PutObjectCommand({ Bucket, Key, Body: bytes, ContentLength: bytes.byteLength }),
        )
        return Key
      },
      get: async (Key) => {
        const response = await baseline.send(new GetObjectCommand({ Bucket, Key }))
        if (response.Body === undefined) throw new Error(`GetObject ${Key} returned no body`)
        return await response.Body.transformToByteArray()
      },
      discard: deleteKeys,
    },
    cas: {
      calls: { get: 'store.get', put: 'store.put' },
      put: (bytes) => store.put(bytes),
      get: (cid) => store.get(cid),
      discard: (cids) => deleteKeys(cids.map(objectKey)),
    },
    close: async () => {
      await store.close()
      await admin.send(new DeleteBucketCommand({ Bucket })).catch(() => {})
      admin.destroy()
      baseline.destroy()
    },
  }
}

async function memoryContest(): Promise<Contest> {
  // An unnamed memory store is private to itself: discarding replaces it with an empty one.
  // That is safe because the benchmark never holds two batches of objects at once.
  let store: Store = await openStore('memory://')
  const map = new Map<string, Uint8Array>()
  let written = 0
  return {
    backend: 'memory',
    raw: {
      // The memory backend copies bytes in and out so callers cannot change stored
      // content; a baseline without the copies would measure a pointer move.
      calls: { get: 'Map.get + copy', put: 'copy + Map.set' },
      put: async (bytes) => {
        const key = `object-${written++}`
        map.set(key, copyOf(bytes))
        return key
      },
      get: async (key) => {
        const bytes = map.get(key)
        if (bytes === undefined) throw new Error(`${key} is missing`)
        return copyOf(bytes)
      },
      discard: async (keys) => {
        for (const key of keys) map.delete(key)
      },
    },
    cas: {
      calls: { get: 'store.get', put: 'store.put' },
      put: (bytes) => store.put(bytes),
      get: (cid) => store.get(cid),
      discard: async () => {
        await store.close()
        store = await openStore('memory://')
      },
    },
    close: () => store.close(),
  }
}

function formatRate(value: number): string {
  return value >= 100 ? value.toFixed(0) : value.toPrecision(3)
}

function formatRatio(value: number): string {
  return value >= 0.1 ? value.toFixed(2) : value.toPrecision(2)
}

function resultRows(results: readonly CaseResult[]): string[][] {
  return results.map((result) => {
    const [low, high] = result.pairedRatioQuartiles
    const target = result.operation === 'get' ? (result.ratio >= GET_TARGET_RATIO ? 'met' : 'missed') : 'n/a'
    return [
      result.backend,
      result.operation,
      `${result.objects} × ${result.size}`,
      String(result.rounds),
      result.raw.calls,
      formatRate(result.raw.mbPerSecond),
      formatRate(result.raw.opsPerSecond),
      formatRate(result.cas.mbPerSecond),
      formatRate(result.cas.opsPerSecond),
      `${formatRatio(result.ratio)}x`,
      `${formatRatio(low)}–${formatRatio(high)}`,
      target,
    ]
  })
}

const TABLE_HEADERS = [
  'backend',
  'op',
  'objects per pass',
  'rounds',
  'raw baseline',
  'raw MB/s',
  'raw ops/s',
  'cas MB/s',
  'cas ops/s',
  'cas/raw',
  'middle half of rounds',
  `get ≥ ${GET_TARGET_RATIO}x`,
]

function markdownSection(
  machine: MachineInfo,
  results: readonly CaseResult[],
  skipped: readonly string[],
  jsonName: string,
): string {
  const lines = [
    '## cas: object get and put throughput',
    '',
    `Run \`pnpm bench cas\` on ${machine.date.slice(0, 10)} (${machine.date}).`,
    `Machine: ${describeMachine(machine)}.`,
    '',
    markdownTable(TABLE_HEADERS, resultRows(results)),
    '',
    '- `cas/raw` is the cas median throughput over the raw median throughput. Each round pairs a',
    '  raw and a cas pass run back to back; "middle half of rounds" is the 25th to 75th',
    '  percentile of those per-round ratios, a measure of how steady the ratio was. MB is 10^6 bytes.',
    `- Each figure is the median of its rounds, after one warm-up round per side: at least 5`,
    `  rounds, and cheap cases keep adding rounds until ${BUDGET_SECONDS} s of measured time or 21 rounds.`,
    '  Raw and cas passes alternate which goes first. 4 KiB objects run 16 requests in flight on',
    '  both sides, 64 MiB objects one at a time.',
    '- cas gets hash every byte and check it against the CID: the figure includes verification.',
    '- Puts write fresh random bytes on both sides every pass (the store skips bytes it holds).',
    '  A folder-store put also fsyncs the object and its folder before returning (crash safety);',
    '  the `writeFile` baseline does not.',
    '- Folder reads come from the page cache on both sides (the objects were just written).',
    `- Every sample: \`bench/results/${jsonName}\`.`,
  ]
  for (const reason of skipped) lines.push(`- Skipped: ${reason}`)
  return lines.join('\n')
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick')
  const sizes = quick ? QUICK_SIZES : FULL_SIZES
  const date = new Date()
  const machine = machineInfo(date)
  const workDir = await mkdtemp(join(tmpdir(), 'dreamdb-bench-cas-'))
  const results: CaseResult[] = []
  const skipped: string[] = []
  const started = performance.now()

  const contests: (() => Promise<Contest>)[] = [() => folderContest(workDir)]
  const endpoint = process.env.DREAMDB_TEST_S3_ENDPOINT
  if (endpoint === undefined || endpoint === '') {
    skipped.push('S3: DREAMDB_TEST_S3_ENDPOINT is not set (MinIO was not started)')
  } else {
    contests.push(() => s3Contest(endpoint))
  }
  contests.push(memoryContest)

  try {
    for (const open of contests) {
      const contest = await open()
      try {
        for (const size of sizes) {
          for (const measure of [measureGets, measurePuts]) {
            const result = await measure(contest, size)
            results.push(result)
            process.stderr.write(
              `  ${result.backend} ${result.operation} ${result.size}: cas/raw ${formatRatio(result.ratio)}x\n`,
            )
          }
        }
      } finally {
        await contest.close()
      }
    }
  } finally {
    await rm(workDir, { recursive: true, force: true })
  }

  const elapsed = (performance.now() - started) / 1000
  console.log(`\ncas get/put throughput, median of each case's rounds (${elapsed.toFixed(0)} s)`)
  console.log(`machine: ${describeMachine(machine)}`)
  console.log(`work folder: ${workDir} (removed)\n`)
  console.log(markdownTable(TABLE_HEADERS, resultRows(results)))
  for (const reason of skipped) console.log(`skipped: ${reason}`)

  if (quick) {
    console.log('\n--quick: nothing written')
    return
  }
  const written = await writeResults(
    'cas',
    date,
    {
      benchmark: 'cas',
      machine,
      workFolder: workDir,
      elapsedSeconds: elapsed,
      getTargetRatio: GET_TARGET_RATIO,
      sizes,
      results,
      skipped,
    },
    markdownSection(machine, results, skipped, `cas-${resultsStamp(date)}.json`),
  )
  console.log(`\nwrote ${written.json}, ${written.latest} and ${written.markdown}`)
}

await main()
