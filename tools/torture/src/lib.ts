/**
 * What every scenario shares: its counts, the backends it runs on, deadlines, the writer
 * processes it starts, and how an error is judged typed (a DreamDB `ERR_*` code) or not.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3'

export const TORTURE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
export const REPO_ROOT = join(TORTURE_ROOT, '..', '..')
export const CLI_DIST = join(REPO_ROOT, 'apps', 'cli', 'dist', 'index.js')
const TSX = join(TORTURE_ROOT, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs')

/** The counts a scenario reports, per backend. */
export interface Counts {
  /** Operations the system said were done (a writer printed "committed X" before anything else happened to it). */
  acknowledged: number
  /** Acknowledged, yet not in the final state. */
  lost: number
  /** The same record, anchor or increment more than once in the final state. */
  duplicated: number
  /** Operations that had not settled when their deadline passed. */
  hangs: number
  /** Failures with a DreamDB error code (`ERR_*`), the expected outcome of a fault. */
  typed: number
  /** Failures without one (a bug: the CLI's exit 70). */
  untyped: number
}

export interface Result {
  scenario: string
  backend: 'folder' | 'minio'
  counts: Counts
  seconds: number
  /** A skipped scenario says why, and has no counts. */
  skipped?: string
  /** What happened on the way (faults injected, error codes seen, the first untyped errors). */
  notes: string[]
}

export const zero = (): Counts => ({
  acknowledged: 0,
  lost: 0,
  duplicated: 0,
  hangs: 0,
  typed: 0,
  untyped: 0,
})

export const failed = (c: Counts): boolean => c.lost + c.duplicated + c.hangs + c.untyped > 0

/** Tallies typed errors by code, and keeps the first few untyped ones verbatim. */
export class ErrorLog {
  readonly codes = new Map<string, number>()
  readonly untypedSamples: string[] = []
  /** The first message of each typed code. */
  readonly typedSamples = new Map<string, string>()
  constructor(readonly counts: Counts) {}

  /** Count an error; returns its code, or undefined when it has none. */
  add(error: unknown, where = ''): string | undefined {
    const code = codeOf(error)
    if (code !== undefined) {
      this.counts.typed++
      this.codes.set(code, (this.codes.get(code) ?? 0) + 1)
      if (!this.typedSamples.has(code)) this.typedSamples.set(code, `${where}${describe(error)}`)
    } else {
      this.counts.untyped++
      if (this.untypedSamples.length < 5) this.untypedSamples.push(`${where}${describe(error)}`)
    }
    return code
  }

  addCode(code: string | undefined, sample: string): void {
    if (code?.startsWith('ERR_')) {
      this.counts.typed++
      this.codes.set(code, (this.codes.get(code) ?? 0) + 1)
      if (!this.typedSamples.has(code)) this.typedSamples.set(code, sample)
    } else {
      this.counts.untyped++
      if (this.untypedSamples.length < 5) this.untypedSamples.push(sample)
    }
  }

  notes(): string[] {
    const out: string[] = []
    if (this.codes.size > 0) {
      out.push(
        `typed: ${[...this.codes.entries()]
          .sort((a, b) => b[1] - a[1])
          .map(([c, n]) => `${c} x${n}`)
          .join(', ')}`,
      )
    }
    if (process.env.TORTURE_VERBOSE) {
      for (const [code, sample] of this.typedSamples) out.push(`first ${code}: ${sample.slice(0, 300)}`)
    }
    for (const sample of this.untypedSamples) out.push(`UNTYPED: ${sample.slice(0, 300)}`)
    return out
  }
}

/** A DreamDB error's code (`ERR_*`), else undefined. Aborts by a deadline are not errors of the system. */
export function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && code.startsWith('ERR_') ? code : undefined
}

export function describe(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`
  return String(error)
}

export class HangError extends Error {
  constructor(
    readonly what: string,
    readonly ms: number,
  ) {
    super(`${what} did not settle within ${ms} ms`)
  }
}

/**
 * `work` with a deadline: rejects with `HangError` if it has not settled after `ms` (the
 * work is left running; the caller counts a hang and goes on).
 */
export async function withDeadline<T>(what: string, ms: number, work: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HangError(what, ms)), ms)
  })
  try {
    return await Promise.race([work(), deadline])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Run `op` under a deadline and count its outcome: success, a typed error, an untyped one,
 * or a hang. Returns whether it succeeded.
 */
export async function judged(
  errors: ErrorLog,
  what: string,
  ms: number,
  op: () => Promise<unknown>,
): Promise<boolean> {
  try {
    await withDeadline(what, ms, op)
    return true
  } catch (error) {
    if (error instanceof HangError) {
      errors.counts.hangs++
      if (errors.untypedSamples.length < 5) errors.untypedSamples.push(`HANG ${what}`)
    } else errors.add(error, `${what}: `)
    return false
  }
}

/** A seeded PRNG (mulberry32), so a run can be repeated with `--seed`. */
export function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Where a scenario's store lives. */
export interface Target {
  backend: 'folder' | 'minio'
  /** The URL to open (a folder path, or `http://host:port/bucket`). */
  url: string
  /** The folder of a folder store. */
  folder?: string
  /** The server and bucket of an S3 store. */
  s3?: { endpoint: string; bucket: string }
  cleanup(): Promise<void>
}

export async function folderTarget(): Promise<Target> {
  const folder = await mkdtemp(join(tmpdir(), 'dreamdb-torture-'))
  return {
    backend: 'folder',
    url: folder,
    folder,
    cleanup: () =>
      process.env.TORTURE_KEEP
        ? Promise.resolve(console.log('kept', folder))
        : rm(folder, { recursive: true, force: true }),
  }
}

export function adminS3(endpoint: string): S3Client {
  return new S3Client({
    endpoint,
    region: process.env.AWS_REGION ?? 'us-east-1',
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  })
}

export async function minioTarget(endpoint: string): Promise<Target> {
  const bucket = `dreamdb-torture-${randomUUID().slice(0, 13)}`
  const client = adminS3(endpoint)
  await client.send(new CreateBucketCommand({ Bucket: bucket }))
  client.destroy()
  // Buckets of the run's MinIO go with its temporary data folder.
  return { backend: 'minio', url: `${endpoint}/${bucket}`, s3: { endpoint, bucket }, cleanup: async () => {} }
}

/** One line a writer process printed, with the time it arrived. */
export interface Line {
  text: string
  at: number
}

export interface Worker {
  child: ChildProcess
  lines: Line[]
  stderr: string
  /** Resolves when the process has exited (code, or the signal that ended it). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** Resolves with the first line matching, or undefined once the process has exited. */
  waitFor(pattern: RegExp): Promise<Line | undefined>
  kill(signal?: NodeJS.Signals): void
}

/** Start `src/worker.ts` (through tsx), optionally behind a command prefix such as `unshare`. */
export function startWorker(
  args: string[],
  options: { prefix?: string[]; env?: NodeJS.ProcessEnv } = {},
): Worker {
  const script = join(TORTURE_ROOT, 'src', 'worker.ts')
  const argv = [...(options.prefix ?? []), process.execPath, '--import', TSX, script, ...args]
  return track(
    spawn(argv[0]!, argv.slice(1), {
      cwd: TORTURE_ROOT,
      // The packages' sources (tsconfig paths), as the runner itself uses: a rebuild of their
      // dist/ by someone else meanwhile cannot break a run.
      env: { ...process.env, TSX_TSCONFIG_PATH: join(TORTURE_ROOT, 'tsconfig.json'), ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  )
}

/** The built CLI as a process. */
export function startCli(args: string[], env: NodeJS.ProcessEnv = {}): Worker {
  const clean: NodeJS.ProcessEnv = { ...process.env, ...env }
  for (const key of ['DREAMDB_BACKEND', 'FORCE_COLOR', 'DREAMDB_DEBUG']) delete clean[key]
  clean.NO_COLOR = '1'
  return track(
    spawn(process.execPath, [CLI_DIST, ...args], {
      cwd: REPO_ROOT,
      env: clean,
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  )
}

function track(child: ChildProcess): Worker {
  const lines: Line[] = []
  const waiters: { pattern: RegExp; resolve: (line: Line | undefined) => void }[] = []
  let stderr = ''
  let buffered = ''
  const take = (text: string) => {
    const line = { text, at: Date.now() }
    lines.push(line)
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i]!.pattern.test(text)) {
        waiters[i]!.resolve(line)
        waiters.splice(i, 1)
      }
    }
  }
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk
    let at = buffered.indexOf('\n')
    while (at !== -1) {
      take(buffered.slice(0, at))
      buffered = buffered.slice(at + 1)
      at = buffered.indexOf('\n')
    }
  })
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk
    for (const text of chunk.split('\n')) if (text !== '') take(`stderr: ${text}`)
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => {
      if (buffered !== '') take(buffered)
      for (const w of waiters.splice(0)) w.resolve(undefined)
      resolve({ code, signal })
    })
  })
  return {
    child,
    lines,
    get stderr() {
      return stderr
    },
    exited,
    waitFor(pattern) {
      const found = lines.find((l) => pattern.test(l.text))
      if (found) return Promise.resolve(found)
      if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(undefined)
      return new Promise((resolve) => waiters.push({ pattern, resolve }))
    },
    kill(signal = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
    },
  }
}

/** Wait for a process to exit, killing it (and counting a hang) past `ms`. */
export async function exitWithin(
  worker: Worker,
  ms: number,
  counts: Counts,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; hung: boolean }> {
  let hung = false
  const timer = setTimeout(() => {
    hung = true
    counts.hangs++
    worker.kill('SIGKILL')
  }, ms)
  const result = await worker.exited
  clearTimeout(timer)
  return { ...result, hung }
}

/** Count the `error <code> <message>` lines a worker printed. */
export function countWorkerErrors(worker: Worker, errors: ErrorLog, who: string): void {
  for (const line of worker.lines) {
    const m = /^error (\S+) (.*)$/.exec(line.text)
    if (m) errors.addCode(m[1] === 'UNTYPED' ? undefined : m[1], `${who}: ${m[2]}`)
    if (/^hang /.test(line.text)) {
      errors.counts.hangs++
      if (errors.untypedSamples.length < 5) errors.untypedSamples.push(`${who}: ${line.text}`)
    }
  }
}

/**
 * Run one test file of a workspace package (`packages/<pkg>`) with its own vitest config: a
 * scenario that is the long form of a suite's test runs that test with larger sizes (env).
 */
export async function runVitest(
  pkg: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; output: string }> {
  const cwd = join(REPO_ROOT, 'packages', pkg)
  const vitest = join(cwd, 'node_modules', 'vitest', 'vitest.mjs')
  return await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [vitest, 'run', ...args, '--reporter=verbose'], {
      cwd,
      env: { ...process.env, ...env, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, output }))
  })
}
