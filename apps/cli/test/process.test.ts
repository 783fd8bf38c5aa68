/**
 * The process around the program (issue 14), as real processes receiving real signals: SIGTERM
 * and Ctrl-C on a terminal stop a running `ingest` with one line and exit 143 / 130 (not death
 * by the signal), the ingest lease is released, and running it again finishes the job. The
 * shards are made with the public CLI (`export --format parquet` of a prepared dataset).
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { openStore } from '@dreamdb/cas'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { CLI_ROOT, cleanEnv, cli, PROCESS_ARGV, prepareStore, spawnCli, tempDir } from './helpers.js'

// Processes signalled mid-way: a few seconds each on a loaded machine.
vi.setConfig({ testTimeout: 60_000 })

let dir: { path: string; remove: () => Promise<void> }
let root: string
const RECORDS = 150
const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0

beforeAll(async () => {
  dir = await tempDir()
  await prepareStore(dir.path)
  root = join(dir.path, 'shards')
  await mkdir(join(root, 'data'), { recursive: true })
  const exported = await cli(
    [
      'export',
      'corpus',
      '--format',
      'parquet',
      '--fields',
      'image,embedding,label',
      '--out',
      join(root, 'data', 'train-00000-of-00001.parquet'),
    ],
    { cwd: dir.path },
  )
  expect(exported.code, exported.stderr).toBe(0)
})
afterAll(async () => dir?.remove())

const ingestArgs = (backend: string) => [
  'ingest',
  '--root',
  root,
  '--dataset-name',
  'copy',
  '--splits',
  'train',
  '--backend',
  backend,
  '--batch-records',
  '3',
  '--concurrency',
  '1',
  // The exported file has an _anchor column, which cannot be a field: keep the core columns.
  '--columns',
  'core',
]

/** Leases left in a store (hidden refs under `_dreamdb/leases/`, design/0006). */
async function leases(backend: string): Promise<string[]> {
  const store = await openStore(backend)
  try {
    const names: string[] = []
    for await (const name of store.listRefs('_dreamdb/leases/')) names.push(name)
    return names
  } finally {
    await store.close()
  }
}

/**
 * Run the same ingest to the end; it must skip what the stopped one committed. In chunks of
 * 50 (the last --batch-records counts): resuming does not depend on the chunk size, and 3
 * records a commit made this some 50 commits.
 */
async function finish(backend: string) {
  const rerun = await cli([...ingestArgs(backend), '--batch-records', '50', '--json', '--no-progress'], {
    cwd: dir.path,
  })
  expect(rerun.code, rerun.stderr).toBe(0)
  const summary = JSON.parse(rerun.stdout) as { records: { skipped: number; ingested: number } }
  expect(summary.records.skipped).toBeGreaterThan(0)
  expect(summary.records.skipped + summary.records.ingested).toBe(RECORDS)
}

describe('signals', () => {
  it('SIGTERM stops an ingest: one line, exit 143, lease released, resumable', async () => {
    const backend = join(dir.path, 'term')
    const child = spawnCli(ingestArgs(backend), { cwd: dir.path })
    let stderr = ''
    let sent = false
    child.stdout.resume()
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk
      if (!sent && /committed /.test(stderr)) {
        sent = true
        child.kill('SIGTERM')
      }
    })
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
      child.on('close', (c, s) => resolve([c, s])),
    )
    expect(sent).toBe(true)
    expect({ code, signal }).toEqual({ code: 143, signal: null })
    const errors = stderr.split('\n').filter((l) => l.startsWith('dreamdb: '))
    expect(errors).toEqual(['dreamdb: ERR_CLI_INTERRUPTED: terminated (SIGTERM)'])
    expect(await leases(backend)).toEqual([])
    await finish(backend)
  })

  it.skipIf(!hasScript)(
    'Ctrl-C on a terminal (progress bar drawn by Ink) stops an ingest: exit 130, lease released, resumable',
    async () => {
      const backend = join(dir.path, 'int')
      const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`
      const command = [process.execPath, ...PROCESS_ARGV, ...ingestArgs(backend)].map(quote).join(' ')
      // A pseudo-terminal: Ctrl-C typed into it is the line discipline's SIGINT to the job.
      const child = spawn('script', ['-qec', `stty cols 100 rows 50; ${command}`, '/dev/null'], {
        cwd: dir.path,
        env: cleanEnv({ TERM: 'xterm-256color', TSX_TSCONFIG_PATH: join(CLI_ROOT, 'tsconfig.json') }),
        stdio: ['pipe', 'pipe', 'pipe'],
      })
      let output = ''
      let sent = false
      child.stderr.resume()
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        output += chunk
        if (!sent && /committed /.test(output)) {
          sent = true
          child.stdin.write('\u0003')
        }
      })
      const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)))
      expect(sent).toBe(true)
      expect(code).toBe(130)
      expect(output).toMatch(/dreamdb: ERR_CLI_INTERRUPTED: interrupted/)
      expect(await leases(backend)).toEqual([])
      await finish(backend)
    },
  )
})
