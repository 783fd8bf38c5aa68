/**
 * `dreamdb ingest` as a user runs it (in process; the interrupted runs as processes) reading
 * parquet shards written in the test (Hugging Face layout, real MNIST digits as PNG) into a
 * folder backend: progress on stderr, the JSON and human summaries, an interrupted run
 * (SIGKILL, SIGINT) finished by a re-run without a duplicate, two ingests at once of which
 * one is SIGKILLed and the other finishes its shards (on a folder and MinIO), flags refused, and ingest's
 * typed errors as one line with their exit codes. What ingest itself does (columns,
 * anchors, resume, every refusal) is tested in @dreamdb/ingest.
 */
import { createHash } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Dataset } from '@dreamdb/dataset'
import type { IngestResult } from '@dreamdb/ingest'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freshBucket } from '../../../packages/cas-tests/src/minio.js'
import { type CliResult, cli, spawnCli, tempDir } from './helpers.js'
import { type FixtureRecord, writeSplit } from './shards.js'

let dir: { path: string; remove: () => Promise<void> }
let root: string
let fixtures: FixtureRecord[]
const run = (args: string[], cwd = dir.path, spawn = false) => cli(args, { cwd, spawn })
const key = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

/** The only line on stderr is the error; nothing on stdout. */
function expectError(result: CliResult, exitCode: number, code: string): string {
  expect(result.stdout).toBe('')
  const lines = result.stderr.trimEnd().split('\n')
  expect(lines).toHaveLength(1)
  expect(lines[0]).toMatch(new RegExp(`^dreamdb: ${code}: .+`))
  expect(result.code).toBe(exitCode)
  return lines[0]!
}

function parse(result: CliResult): IngestResult {
  expect(result.code, result.stderr).toBe(0)
  return JSON.parse(result.stdout) as IngestResult
}

/** Every record of a dataset, by image digest. */
async function readBack(backend: string, name: string) {
  const ds = await Dataset.openRef(name, { backend })
  const records = new Map<
    string,
    { label: string; split: string; embedding: number[]; image: Uint8Array }[]
  >()
  try {
    for await (const batch of ds.iterArrowBatches({ fields: ['image', 'embedding', 'label', 'split'] })) {
      for (let i = 0; i < batch.numRows; i++) {
        const image = batch.getChild('image')!.get(i) as Uint8Array
        const entry = {
          image: Uint8Array.from(image),
          label: batch.getChild('label')!.get(i) as string,
          split: batch.getChild('split')!.get(i) as string,
          embedding: Array.from(
            (batch.getChild('embedding')!.get(i) as { toArray(): Float32Array }).toArray(),
          ),
        }
        records.set(key(image), [...(records.get(key(image)) ?? []), entry])
      }
    }
    return { records, manifest: ds.currentManifest(), schema: ds.manifest.schema.fields }
  } finally {
    await ds.repository.store.close()
  }
}

/** Each fixture record is in the dataset exactly once, byte for byte, with its label, split and vector. */
async function expectExactlyOnce(backend: string, name: string, expected: FixtureRecord[]) {
  const { records } = await readBack(backend, name)
  expect([...records.values()].reduce((n, list) => n + list.length, 0)).toBe(expected.length)
  for (const record of expected) {
    const found = records.get(key(record.image))
    expect(found, `${record.shard} row ${record.row}`).toHaveLength(1)
    const [got] = found!
    expect(Buffer.compare(Buffer.from(got!.image), Buffer.from(record.image))).toBe(0)
    expect(got!.label).toBe(record.label)
    expect(got!.split).toBe(record.split)
    got!.embedding.forEach((x, d) => {
      expect(x).toBeCloseTo(record.embedding[d]!, 6)
    })
  }
}

beforeAll(async () => {
  dir = await tempDir()
  root = join(dir.path, 'mnist-hf')
  fixtures = [
    ...(await writeSplit(root, { split: 'train', shards: 3, rows: 40, first: 0 })),
    ...(await writeSplit(root, { split: 'validation', shards: 1, rows: 30, first: 120 })),
  ]
  // The test relies on telling records apart by their bytes.
  expect(new Set(fixtures.map((r) => key(r.image))).size).toBe(fixtures.length)
})
afterAll(async () => dir?.remove())

describe('ingest', () => {
  it('reads the shards into image, embedding, label and split, byte for byte, and indexes them', async () => {
    const backend = join(dir.path, 'store-main')
    const result = await run([
      'ingest',
      '--root',
      root,
      '--dataset-name',
      'mnist',
      '--splits',
      'train,validation',
      '--backend',
      backend,
      '--batch-records',
      '16',
      '--ivf',
      '--rabitq',
      '--json',
    ])
    const out = parse(result)
    expect(out).toMatchObject({
      format: 'dreamdb.ingest/1',
      dataset: 'mnist',
      created: true,
      embedding: { source: 'column', column: 'embedding', dim: 49 },
      splits: {
        train: { shards: 3, records: 120, ingested: 120, skipped: 0 },
        validation: { shards: 1, records: 30, ingested: 30, skipped: 0 },
      },
      records: { ingested: 150, skipped: 0, total: 150 },
      // 40 rows in chunks of 16: 3 commits per train shard; 30 rows: 2.
      commits: 11,
      index: { algorithm: 'dreamdb.ivf-cosine', bits: 1, trained: true },
    })
    expect(out.bytes).toBe(fixtures.reduce((n, r) => n + r.image.byteLength, 0))
    // Progress went to stderr as plain lines (not a terminal), ending at 100%.
    expect(result.stderr).toMatch(/^ingest mnist: +0% 0\/150 records/m)
    expect(result.stderr).toMatch(/^ingest mnist: 100% 150\/150 records/m)
    expect(result.stderr).toContain('training and applying dreamdb.ivf-cosine')
    expect(result.stderr).not.toContain('\u001b')
    await expectExactlyOnce(backend, 'mnist', fixtures)
    const { schema } = await readBack(backend, 'mnist')
    expect(schema).toMatchObject([
      { name: 'image', family: 'binary', media: 'image' },
      { name: 'embedding', family: 'embedding', dim: 49, metric: 'cosine', algorithm: 'dreamdb.ivf-cosine' },
      { name: 'label', family: 'scalar', kind: 'categorical' },
      { name: 'split', family: 'scalar', kind: 'categorical' },
      { name: 'image_path', family: 'scalar', kind: 'string' },
      { name: 'source_shard', family: 'scalar', kind: 'categorical' },
      { name: 'source_row', family: 'scalar', kind: 'int' },
    ])

    // Each commit names its shard rows: `dreamdb log` shows what came from where.
    const log = await run(['log', 'mnist', '--backend', backend])
    expect(log.stdout).toMatch(
      /ingest validation data\/validation-00000-of-00001\.parquet rows 16-30 of 30 \[[0-9a-f]{16}\]/,
    )

    // Run again: nothing appended, nothing retrained, the same manifest.
    const again = parse(
      await run([
        'ingest',
        '--root',
        root,
        '--dataset-name',
        'mnist',
        '--splits',
        'train,validation',
        '--backend',
        backend,
        '--ivf',
        '--rabitq',
        '--json',
        '--no-progress',
      ]),
    )
    expect(again).toMatchObject({
      created: false,
      records: { ingested: 0, skipped: 150, total: 150 },
      commits: 0,
      index: { trained: false },
      manifest: out.manifest,
    })

    // Search and migrate on what was ingested.
    const anchorOfFirst = await firstAnchor(backend, 'mnist')
    const search = await run([
      'search',
      '--ref-name',
      'mnist',
      '--field',
      'embedding',
      '--like-anchor',
      String(anchorOfFirst.anchor),
      '-k',
      '5',
      '--backend',
      backend,
      '--json',
    ])
    expect(search.code, search.stderr).toBe(0)
    const hits = JSON.parse(search.stdout) as {
      format: string
      hits: { rank: number; anchor: string; distance: number; values: { label: string; split: string } }[]
    }
    expect(hits.format).toBe('dreamdb.search/1')
    expect(hits.hits).toHaveLength(5)
    expect(hits.hits[0]).toMatchObject({ rank: 1, anchor: String(anchorOfFirst.anchor) })
    expect(hits.hits[0]!.distance).toBeCloseTo(0, 4)
    expect(hits.hits[0]!.values.label).toBe(anchorOfFirst.label)
    // Digits look like digits of their own kind: most of the nearest share the label.
    expect(hits.hits.filter((h) => h.values.label === anchorOfFirst.label).length).toBeGreaterThanOrEqual(3)
  })

  it('finishes a run killed mid-way (SIGKILL) without duplicating a record', async () => {
    const backend = join(dir.path, 'store-kill')
    const args = [
      'ingest',
      '--root',
      root,
      '--dataset-name',
      'mnist',
      '--splits',
      'train,validation',
      '--backend',
      backend,
      '--batch-records',
      '3',
    ]
    const killed = await runUntilFirstCommit(args, 'SIGKILL')
    expect(killed.signal).toBe('SIGKILL')
    // Some chunks are in, not all of them: a real interruption.
    const partial = await readBack(backend, 'mnist')
    const count = [...partial.records.values()].reduce((n, l) => n + l.length, 0)
    expect(count).toBeGreaterThan(0)
    expect(count).toBeLessThan(fixtures.length)

    // Another chunk size than the killed run's; 25 records a commit, not 3 (fewer commits to wait for).
    const rerun = parse(await run([...args, '--batch-records', '25', '--json', '--no-progress']))
    expect(rerun.created).toBe(false)
    expect(rerun.records.skipped).toBe(count)
    expect(rerun.records.ingested).toBe(fixtures.length - count)
    await expectExactlyOnce(backend, 'mnist', fixtures)
  }, 60_000) // processes, signalled mid-way

  it('stops on Ctrl-C (SIGINT) with exit 130, and a re-run finishes the job', async () => {
    const backend = join(dir.path, 'store-int')
    const args = [
      'ingest',
      '--root',
      root,
      '--dataset-name',
      'mnist',
      '--splits',
      'validation,train',
      '--backend',
      backend,
      '--batch-records',
      '3',
    ]
    const stopped = await runUntilFirstCommit(args, 'SIGINT')
    expect(stopped.code).toBe(130)
    expect(stopped.stderr).toMatch(/^dreamdb: ERR_CLI_INTERRUPTED: interrupted$/m)
    // The last --batch-records counts: 50 records a commit, not the stopped run's 3 (~50 commits).
    const rerun = parse(await run([...args, '--batch-records', '50', '--json', '--no-progress']))
    expect(rerun.records.skipped).toBeGreaterThan(0)
    expect(rerun.records.skipped + rerun.records.ingested).toBe(fixtures.length)
    await expectExactlyOnce(backend, 'mnist', fixtures)
  }, 60_000) // processes, signalled mid-way

  it('prints a summary for people', async () => {
    const backend = join(dir.path, 'store-text')
    const result = await run([
      'ingest',
      '--root',
      root,
      '--dataset-name',
      'digits',
      '--splits',
      'validation',
      '--backend',
      backend,
      '--no-progress',
    ])
    expect(result.code, result.stderr).toBe(0)
    expect(result.stderr).toBe('')
    expect(result.stdout).toMatch(/^ingested 30 records \(.+ of images\) into 'digits' \(created\) in /)
    expect(result.stdout).toMatch(/^ {2}validation {2}1 shard {2}30 records {2}30 new$/m)
    expect(result.stdout).toMatch(/^embedding {2}column 'embedding', dim 49$/m)
    expect(result.stdout).toMatch(
      /^columns {4}image, embedding, label, split, image_path, source_shard, source_row$/m,
    )
    // --columns core: the four fields only, and the JSON summary says so.
    const core = parse(
      await run([
        'ingest',
        '--root',
        root,
        '--dataset-name',
        'digits-core',
        '--splits',
        'validation',
        '--backend',
        backend,
        '--columns',
        'core',
        '--no-progress',
        '--json',
      ]),
    )
    expect(core.columns).toEqual({
      mode: 'core',
      fields: ['image', 'embedding', 'label', 'split'],
      kept: [],
      skipped: [],
    })
  })
})

/**
 * Two `dreamdb ingest` processes of the same shards into one dataset (design/0006): the
 * first is SIGKILLed after its first commit, holding a shard claim; the second takes that
 * shard over (its holder's pid is gone on this host) and finishes everything. Every record
 * is in once.
 */
function twoProcessesOneKilled(backend: () => Promise<string>) {
  it('two at once, one SIGKILLed mid-way: the other takes its shard over and every record lands once', async () => {
    const where = await backend()
    const args = [
      'ingest',
      '--root',
      root,
      '--dataset-name',
      'mnist',
      '--splits',
      'train,validation',
      '--backend',
      where,
      '--batch-records',
      '15',
    ]
    // The one to kill commits in chunks of 5 rows, so its first commit leaves it several more
    // to do: with chunks of 15 its shard could end at its second commit, pipelined right after
    // the first, and on a loaded machine it exited before the kill reached it.
    // The survivor starts once the other has planned, so the other claims a shard first: had
    // the survivor claimed every shard before it, it would exit without one, never killed.
    let planned!: () => void
    const hasPlanned = new Promise<void>((resolve) => {
      planned = resolve
    })
    const killed = runUntilFirstCommit([...args.slice(0, -1), '5'], 'SIGKILL', planned)
    await Promise.race([hasPlanned, killed])
    const survivor = run([...args, '--json', '--no-progress'], dir.path, true)
    expect((await killed).signal).toBe('SIGKILL')
    const result = parse(await survivor)
    expect(result.records.total).toBe(fixtures.length)
    // The killed one committed at least its first chunk.
    expect(result.records.ingested).toBeLessThan(fixtures.length)
    await expectExactlyOnce(where, 'mnist', fixtures)
  }, 60_000) // processes, one killed mid-way
}

describe('two ingests at once', () => {
  twoProcessesOneKilled(async () => join(dir.path, 'store-two'))
  const endpoint = process.env.DREAMDB_TEST_S3_ENDPOINT
  if (endpoint) twoProcessesOneKilled(async () => `${endpoint}/${await freshBucket(endpoint)}`)
})

describe('bad input: a one-line typed error and nothing written', () => {
  const ingestArgs = (backend: string, ...extra: string[]) => [
    'ingest',
    '--dataset-name',
    'bad',
    '--splits',
    'train',
    '--backend',
    backend,
    '--no-progress',
    ...extra,
  ]
  /** The store holds no ref at all: the failed ingest created nothing. */
  async function expectNothingWritten(backend: string) {
    const refs = await run(['refs', '--json', '--backend', backend])
    if (refs.code === 3) return // not even the store folder
    expect(JSON.parse(refs.stdout).refs).toEqual([])
  }

  it('flags: missing --root, contradictions', async () => {
    const backend = join(dir.path, 'bad-flags')
    expectError(await run(ingestArgs(backend)), 2, 'ERR_CLI_USAGE')
    expectError(
      await run(ingestArgs(backend, '--root', root, '--embedding-column', 'embedding', '--model', 'm.onnx')),
      2,
      'ERR_CLI_USAGE',
    )
    expectError(await run(ingestArgs(backend, '--root', root, '--ivf')), 2, 'ERR_CLI_USAGE')
    expectError(await run(ingestArgs(backend, '--root', root, '--bits', '4')), 2, 'ERR_CLI_USAGE')
    expectError(await run(ingestArgs(backend, '--root', root, '--model-output', 'x')), 2, 'ERR_CLI_USAGE')
    expectError(await run(ingestArgs(backend, '--root', root, '--batch-records', '0')), 2, 'ERR_CLI_USAGE')
    expectError(await run(ingestArgs(backend, '--root', root, '--columns', 'some')), 2, 'ERR_CLI_USAGE')
    await expectNothingWritten(backend)
  })

  it("ingest's typed errors: one line with the hint, and their exit codes", async () => {
    const backend = join(dir.path, 'bad-codes')
    const missing = expectError(
      await run(ingestArgs(backend, '--root', join(dir.path, 'nowhere'))),
      3,
      'ERR_INGEST_FILE_NOT_FOUND',
    )
    expect(missing).toContain('nowhere')
    const noSplit = expectError(
      await run([...ingestArgs(backend, '--root', root), '--splits', 'train,test']),
      3,
      'ERR_INGEST_NO_SHARDS',
    )
    expect(noSplit).toContain("(hint: the shards there are for 'validation'")
    const noLabel = join(dir.path, 'no-label')
    await writeSplit(noLabel, { split: 'train', shards: 1, rows: 4, first: 0, drop: 'label' })
    const line = expectError(await run(ingestArgs(backend, '--root', noLabel)), 1, 'ERR_INGEST_BAD_SHARD')
    expect(line).toContain("data/train-00000-of-00001.parquet: has no column 'label'")
    const junk = join(dir.path, 'junk.onnx')
    await writeFile(junk, 'this is not a model')
    expectError(await run(ingestArgs(backend, '--root', root, '--model', junk)), 1, 'ERR_INGEST_BAD_MODEL')
    await expectNothingWritten(backend)

    const schema = join(dir.path, 'bad-schema')
    const init = await run([
      'init',
      'bad',
      '--schema',
      '[{"name":"embedding","family":"embedding","dim":49},{"name":"label","family":"scalar","kind":"string"}]',
      '--backend',
      schema,
      '--json',
    ])
    expect(init.code, init.stderr).toBe(0)
    const mismatch = expectError(
      await run(ingestArgs(schema, '--root', root)),
      4,
      'ERR_INGEST_SCHEMA_MISMATCH',
    )
    expect(mismatch).toContain("Dataset 'bad' exists with other fields")
  })
})

/** The anchor and label of some record (the first in append order). */
async function firstAnchor(backend: string, name: string) {
  const ds = await Dataset.openRef(name, { backend })
  try {
    for await (const batch of ds.iterArrowBatches({ fields: ['label'], batchSize: 1 })) {
      return {
        anchor: batch.getChild('_anchor')!.get(0) as bigint,
        label: batch.getChild('label')!.get(0) as string,
      }
    }
    throw new Error('empty')
  } finally {
    await ds.repository.store.close()
  }
}

/** Start an ingest and send `signal` as soon as it reports its first commit on stderr. */
function runUntilFirstCommit(
  args: string[],
  signal: NodeJS.Signals,
  onPlanned?: () => void,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawnCli(args, { cwd: dir.path })
    let stderr = ''
    let sent = false
    child.stdout.resume()
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk
      if (/ chunks from \d+ shards/.test(stderr)) onPlanned?.()
      if (!sent && /committed /.test(stderr)) {
        sent = true
        child.kill(signal)
      }
    })
    child.on('error', reject)
    child.on('close', (code, sig) => resolve({ code, signal: sig, stderr }))
  })
}
