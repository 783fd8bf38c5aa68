/**
 * Shared by every benchmark: timing passes, alternating a raw baseline with the code under
 * test, describing the machine, and writing results (bench/results/*.json and a section of
 * bench/RESULTS.md). Files starting with `_` are helpers, not benchmarks (tools/bench.mjs).
 */
import { execFileSync } from 'node:child_process'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { Agent as HttpAgent } from 'node:http'
import { cpus, homedir, platform, release, totalmem } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { S3Client } from '@aws-sdk/client-s3'

export const BENCH_DIR = dirname(fileURLToPath(import.meta.url))
const RESULTS_DIR = join(BENCH_DIR, 'results')
const RESULTS_MD = join(BENCH_DIR, 'RESULTS.md')

const RESULTS_MD_HEADER = `# Benchmark results

Written by \`pnpm bench <name>\` (see \`tools/bench.mjs\`); each benchmark rewrites only its own
section, between its \`<!-- name:start -->\` and \`<!-- name:end -->\` markers. Raw figures of
every run are in \`bench/results/\`.

**Read the ratios, not the absolute numbers.** Every figure is set against a raw baseline
(plain \`fs.promises\`, plain S3 SDK calls, a plain \`Map\`) measured in the same run, on the
same machine, on the same disk or server, with the two sides alternated round by round. The
machines are shared and noisy, so absolute MB/s move from run to run and from machine to
machine; the ratio of the code under test to its baseline is what is comparable.
`

export interface MachineInfo {
  cpuModel: string
  cores: number
  totalMemoryBytes: number
  node: string
  os: string
  /** The first line of `minio --version`, or why it is unknown. */
  minio: string
  date: string
}

export function machineInfo(date: Date): MachineInfo {
  const cpu = cpus()
  return {
    cpuModel: cpu[0]?.model ?? 'unknown',
    cores: cpu.length,
    totalMemoryBytes: totalmem(),
    node: process.version,
    os: `${platform()} ${release()}`,
    minio: minioVersion(),
    date: date.toISOString(),
  }
}

function minioVersion(): string {
  // tools/minio/minio.sh runs this binary; DREAMDB_CACHE is set by tools/env.sh.
  const cache =
    process.env.DREAMDB_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'dreamdb')
  try {
    const output = execFileSync(join(cache, 'bin', 'minio'), ['--version'], { encoding: 'utf8' })
    return output.split('\n')[0]?.trim() || 'unknown'
  } catch {
    return 'unknown (minio binary not found)'
  }
}

export function describeMachine(machine: MachineInfo): string {
  const memoryGiB = (machine.totalMemoryBytes / 1024 ** 3).toFixed(1)
  return `${machine.cpuModel}, ${machine.cores} cores, ${memoryGiB} GiB RAM, ${machine.os}, Node.js ${machine.node}, ${machine.minio}`
}

/** Collect garbage (when run with --expose-gc) so a pass does not pay for the one before it. */
export function collectGarbage(): void {
  ;(globalThis as { gc?: () => void }).gc?.()
}

/** Seconds taken by `run`, starting from a collected heap. */
export async function timePass(run: () => Promise<void>): Promise<number> {
  collectGarbage()
  const start = performance.now()
  await run()
  return (performance.now() - start) / 1000
}

export interface AlternatedSamples {
  /** Seconds per measured round; the warm-up round is not included. */
  raw: number[]
  subject: number[]
}

export interface RoundPolicy {
  /** Rounds always measured, however long they take. */
  minRounds: number
  /** More rounds run while the measured time stays under `budgetSeconds`, up to this many. */
  maxRounds: number
  budgetSeconds: number
}

/**
 * Run one warm-up pass of each side (JIT, sockets, page cache), then measured rounds of
 * both: at least `minRounds`, and more while cheap, so fast cases get enough samples for a
 * steady median without slow ones blowing the run time. The side that goes first alternates
 * each round, so drift on a shared machine (neighbours, thermal limits, garbage left behind)
 * lands on both sides equally.
 */
export async function alternate(
  policy: RoundPolicy,
  rawPass: () => Promise<number>,
  subjectPass: () => Promise<number>,
): Promise<AlternatedSamples> {
  await rawPass()
  await subjectPass()
  const samples: AlternatedSamples = { raw: [], subject: [] }
  let spent = 0
  for (let round = 0; round < policy.maxRounds; round++) {
    if (round >= policy.minRounds && spent >= policy.budgetSeconds) break
    if (round % 2 === 0) {
      samples.raw.push(await rawPass())
      samples.subject.push(await subjectPass())
    } else {
      samples.subject.push(await subjectPass())
      samples.raw.push(await rawPass())
    }
    spent += samples.raw.at(-1)! + samples.subject.at(-1)!
  }
  return samples
}

export function median(values: readonly number[]): number {
  return quantile(values, 0.5)
}

/** The `q` quantile (0..1), interpolating between the two nearest samples. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) throw new RangeError('quantile of no values')
  const sorted = [...values].sort((a, b) => a - b)
  const position = (sorted.length - 1) * q
  const below = Math.floor(position)
  const above = Math.ceil(position)
  return sorted[below]! + (sorted[above]! - sorted[below]!) * (position - below)
}

/** Run `fn` over `items` with at most `concurrency` calls in flight; results in input order. */
export async function mapConcurrently<T, R>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++
      results[index] = await fn(items[index]!)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker))
  return results
}

/** A markdown table with padded columns, readable both on a terminal and rendered. */
export function markdownTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((header, column) =>
    Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)),
  )
  const line = (cells: readonly string[]): string =>
    `| ${cells.map((cell, column) => cell.padEnd(widths[column]!)).join(' | ')} |`
  return [line(headers), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n')
}

/** The run's date in a results file name: ISO 8601 with colons made dashes (not every filesystem allows them). */
export function resultsStamp(date: Date): string {
  return date
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z')
    .replaceAll(':', '-')
}

/**
 * Write `result` to bench/results/<name>-<timestamp>.json and <name>-latest.json, and put
 * `section` between the benchmark's markers in bench/RESULTS.md (creating the file, or
 * appending the section, when missing). Returns the paths written.
 */
export async function writeResults(
  name: string,
  date: Date,
  result: unknown,
  section: string,
): Promise<{ json: string; latest: string; markdown: string }> {
  await mkdir(RESULTS_DIR, { recursive: true })
  const json = join(RESULTS_DIR, `${name}-${resultsStamp(date)}.json`)
  const latest = join(RESULTS_DIR, `${name}-latest.json`)
  const body = `${JSON.stringify(result, null, 2)}\n`
  await writeFile(json, body)
  await writeFile(latest, body)

  const start = `<!-- ${name}:start -->`
  const end = `<!-- ${name}:end -->`
  const block = `${start}\n${section.trim()}\n${end}`
  let markdown: string
  try {
    markdown = await readFile(RESULTS_MD, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
    markdown = RESULTS_MD_HEADER
  }
  const startAt = markdown.indexOf(start)
  const endAt = markdown.indexOf(end)
  if (startAt !== -1 && endAt > startAt) {
    markdown = `${markdown.slice(0, startAt)}${block}${markdown.slice(endAt + end.length)}`
  } else {
    markdown = `${markdown.trimEnd()}\n\n${block}\n`
  }
  await writeFile(RESULTS_MD, markdown)
  return { json, latest, markdown: RESULTS_MD }
}

/**
 * A raw S3 client with the settings `@dreamdb/cas` gives its own (createS3Client), so a
 * baseline of plain GetObject/PutObject calls is a fair one.
 */
export function baselineS3Client(endpoint: string): S3Client {
  return new S3Client({
    endpoint,
    region: process.env.AWS_REGION ?? 'us-east-1',
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: {
      httpAgent: new HttpAgent({ keepAlive: true, maxSockets: 64 }),
      connectionTimeout: 10_000,
    },
  })
}
