/** Run the CLI (in this process, or as a child process), and prepare a folder backend with @dreamdb/dataset. */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { Dataset } from '@dreamdb/dataset'
import { main } from '../src/main.js'

export const CLI_ROOT = fileURLToPath(new URL('..', import.meta.url))
const TSX = join(CLI_ROOT, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs')
export const SOURCE_ENTRY = join(CLI_ROOT, 'src', 'index.ts')
export const DIST_ENTRY = join(CLI_ROOT, 'dist', 'index.js')
/** The sources through tsx (tsconfig paths point at the packages' sources): `node ...SOURCE_ARGV ...args`. */
export const SOURCE_ARGV = ['--import', TSX, SOURCE_ENTRY]

/** The newest modification time of any file under `dir` (0 for none). */
function newestUnder(dir: string): number {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true }))
    if (entry.isFile()) newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs)
  return newest
}

const mtime = (path: string): number => (existsSync(path) ? statSync(path).mtimeMs : 0)

/**
 * Whether the built binary runs the current sources: the CLI's bundle (which holds the
 * packages' code) and each package's dist/ are newer than every file of their src/. The test task
 * builds them first (turbo.json: the CLI's test depends on its build), so in CI it is.
 */
function distIsCurrent(): boolean {
  const packages = join(CLI_ROOT, '..', '..', 'packages')
  const pairs: [string, string][] = [[DIST_ENTRY, join(CLI_ROOT, 'src')]]
  // The bundle holds the packages' code too (tsup.config.ts): it must be newer than their sources.
  for (const name of ['cas', 'manifest', 'arrow', 'vector', 'dataset', 'ingest'])
    pairs.push(
      [join(packages, name, 'dist', 'index.js'), join(packages, name, 'src')],
      [DIST_ENTRY, join(packages, name, 'src')],
    )
  return pairs.every(([built, src]) => mtime(built) > newestUnder(src))
}

/**
 * How a test starts the CLI as a process (`node ...PROCESS_ARGV ...args`): the built binary
 * when it is current, otherwise the sources through tsx. The same code either way; a start
 * through tsx costs 2-3 s on two loaded cores, the binary's under 1 s.
 */
export const PROCESS_ARGV: readonly string[] = distIsCurrent() ? [DIST_ENTRY] : SOURCE_ARGV
console.log(
  `cli tests: processes run ${PROCESS_ARGV.length === 1 ? 'the built binary (current)' : 'the sources through tsx (a dist/ is older than its src/)'}`,
)

export interface CliResult {
  code: number
  stdout: string
  stderr: string
}

export interface CliOptions {
  cwd: string
  env?: Record<string, string | undefined>
  /** Run the built binary instead of the sources (a child process). */
  dist?: boolean
  /**
   * Run the CLI in a child process (PROCESS_ARGV: the binary when current, else the sources)
   * instead of in this one: for what only a process shows (signals, exit, its own
   * environment variables read by the S3 client).
   */
  spawn?: boolean
}

/** Environment without anything that would change colour or the backend behind a test's back. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env }
  for (const key of ['DREAMDB_BACKEND', 'NO_COLOR', 'FORCE_COLOR', 'DREAMDB_DEBUG', 'CI']) delete env[key]
  for (const [key, value] of Object.entries(extra)) {
    if (value === undefined) delete env[key]
    else env[key] = value
  }
  return env
}

/** Collects what the CLI writes, as the bytes a pipe would have carried. */
class Capture extends Writable {
  readonly #chunks: Buffer[] = []
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#chunks.push(chunk)
    callback()
  }
  text(): string {
    return Buffer.concat(this.#chunks).toString('utf8')
  }
}

/**
 * `dreamdb ...args` in `cwd`. By default in this process, through the same entry as the
 * binary (`main`: the program and its one error boundary) with captured streams; with
 * `dist` or `spawn`, as a child process.
 */
export async function cli(args: string[], options: CliOptions): Promise<CliResult> {
  if (options.dist || options.spawn) return cliProcess(args, options)
  const stdout = new Capture()
  const stderr = new Capture()
  const io = { stdout, stderr, env: cleanEnv(options.env), cwd: options.cwd }
  const { exitCode } = await main(args, io, new AbortController().signal)
  return { code: exitCode, stdout: stdout.text(), stderr: stderr.text() }
}

function processArgv(args: string[], options: CliOptions): string[] {
  if (options.dist) return [DIST_ENTRY, ...args]
  return [...PROCESS_ARGV, ...args]
}

/** `dreamdb ...args` as a child process (see `processArgv`). */
function cliProcess(args: string[], options: CliOptions): Promise<CliResult> {
  const argv = processArgv(args, options)
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, {
      cwd: options.cwd,
      env: cleanEnv({ TSX_TSCONFIG_PATH: join(CLI_ROOT, 'tsconfig.json'), ...options.env }),
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }))
  })
}

/** `dreamdb ...args` as a running process, for tests that signal it mid-way. */
export function spawnCli(args: string[], options: CliOptions): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, processArgv(args, options), {
    cwd: options.cwd,
    env: cleanEnv({ TSX_TSCONFIG_PATH: join(CLI_ROOT, 'tsconfig.json'), ...options.env }),
    stdio: ['pipe', 'pipe', 'pipe'],
  })
}

export const hasDist = (): boolean => existsSync(DIST_ENTRY)

export async function tempDir(): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), 'dreamdb-cli-'))
  return { path, remove: () => rm(path, { recursive: true, force: true }) }
}

export const LABELS = ['cat', 'dog', 'bird', 'fish']
export const SWEEP = ['sweep/lp-lr0.001-bs128', 'sweep/lp-lr0.01-bs128', 'sweep/lp-lr0.1-bs128']

export const SCHEMA = {
  fields: [
    { name: 'image', family: 'binary' as const, media: 'image' as const },
    { name: 'embedding', family: 'embedding' as const, dim: 4 },
    { name: 'label', family: 'scalar' as const, kind: 'categorical' as const },
    { name: 'split', family: 'scalar' as const, kind: 'categorical' as const },
  ],
}

/** Record i: an image of 10+i bytes, a label, train for i % 4 != 3 else validation. */
export function record(i: number) {
  return {
    image: new Uint8Array(10 + i).fill(i % 256),
    embedding: [i, i % 7, 1, -1],
    label: LABELS[i % LABELS.length]!,
    split: i % 4 === 3 ? 'validation' : 'train',
  }
}

/**
 * The seed's workflow on a folder backend: `corpus` with 120 records in buckets of 50, the
 * snapshot `prep-v1`, three sweep branches with a `prediction` layer each (run k gets every
 * (k+2)th record wrong), the winner tagged `prod-1`, and 30 more records on `corpus`.
 */
export async function prepareStore(dir: string): Promise<{ backend: string }> {
  const backend = join(dir, '.dreamdb')
  const ds = await Dataset.create('corpus', { backend, schema: SCHEMA })
  await ds.appendMany(
    Array.from({ length: 120 }, (_, i) => record(i)),
    { bucketRecords: 50, message: 'first 120' },
  )
  await ds.snapshot('prep-v1')
  const anchors: bigint[] = []
  for await (const batch of ds.iterArrowBatches({ fields: ['label'], batchSize: 1000 })) {
    const column = batch.getChild('_anchor')!
    for (let i = 0; i < batch.numRows; i++) anchors.push(column.get(i) as bigint)
  }
  for (const [k, name] of SWEEP.entries()) {
    const run = await ds.branch(name)
    await run.addScalarLayer(
      'prediction',
      'embedding',
      'categorical',
      anchors.map((anchor, i) => [anchor, i % (k + 2) === 0 ? 'wrong' : LABELS[i % LABELS.length]!] as const),
    )
    if (k === SWEEP.length - 1) await run.snapshot('prod-1')
  }
  await ds.appendMany(Array.from({ length: 30 }, (_, i) => record(120 + i)))
  await ds.repository.store.close()
  return { backend }
}
