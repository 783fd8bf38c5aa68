/**
 * `dreamdb ingest` (the built CLI) SIGKILLed at random moments after its first commit, and
 * run again each time; a last run finishes the job. Every chunk an ingest reported as
 * committed must be in the dataset after its kill, and at the end every row of the shards
 * exactly once (by its image bytes) under unique anchors.
 */
import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Dataset } from '@dreamdb/dataset'
import { imageColumn, shardFileName, writeHfShard } from '@dreamdb/ingest/testing'
import { Field, Float32, Int64, List, vectorFromArray } from 'apache-arrow'
import {
  ErrorLog,
  exitWithin,
  type Line,
  type Result,
  sleep,
  startCli,
  type Target,
  type Worker,
  zero,
} from '../lib.js'

const NAMES = ['zero', 'one', 'two', 'three']
const key = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

/** One split of parquet shards in the Hugging Face layout; returns `shard#row` by image digest. */
export async function writeShards(root: string, shards: number, rows: number): Promise<Map<string, string>> {
  const where = new Map<string, string>()
  for (let s = 0; s < shards; s++) {
    const name = shardFileName('train', s, shards)
    // The image bytes are unique per row; without --model ingest stores them as they are.
    const images = Array.from({ length: rows }, (_, r) => {
      const bytes = new Uint8Array(64)
      bytes.set([0x89, 0x50, 0x4e, 0x47])
      new DataView(bytes.buffer).setUint32(8, s * 100_000 + r)
      for (let i = 12; i < 64; i++) bytes[i] = (s * 31 + r * 7 + i) % 251
      where.set(key(bytes), `data/${name}#${r}`)
      return bytes
    })
    await writeHfShard(
      join(root, 'data', name),
      {
        image: imageColumn(
          images,
          images.map((_, r) => `${s}/${r}.png`),
        ),
        label: vectorFromArray(
          images.map((_, r) => BigInt(r % NAMES.length)),
          new Int64(),
        ),
        embedding: vectorFromArray(
          images.map((_, r) => [1, s, r % 5, (r * 3) % 7]),
          new List(new Field('item', new Float32(), true)),
        ),
      },
      { labelNames: NAMES, rowGroup: 8 },
    )
  }
  return where
}

/** The CLI's arguments for an ingest of the `train` split under `root` into `dataset` at `target`. */
export function ingestArgs(root: string, dataset: string, target: Target, batch: number): string[] {
  return [
    'ingest',
    '--root',
    root,
    '--dataset-name',
    dataset,
    '--splits',
    'train',
    '--backend',
    target.url,
    '--batch-records',
    String(batch),
  ]
}

const COMMITTED = /\(committed (\S+) (\S+) rows (\d+)-(\d+)\)/

/** Add the rows (`shard#row`) an ingest printed as committed to `acked`. */
export function ackCommitted(lines: readonly Line[], acked: Set<string>): void {
  for (const line of lines) {
    const m = COMMITTED.exec(line.text)
    if (m) for (let r = Number(m[3]); r < Number(m[4]); r++) acked.add(`${m[2]}#${r}`)
  }
}

/** An ingest that exited non-zero: typed by the `ERR_*` code it printed, untyped on exit 70 (a bug). */
export function countExit(errors: ErrorLog, worker: Worker, code: number | null, what: string): void {
  const line = /dreamdb: (ERR_[A-Z_]+)/.exec(worker.stderr)
  errors.addCode(code === 70 ? undefined : line?.[1], `${what} exit ${code}: ${worker.stderr.slice(-300)}`)
}

/**
 * The dataset's records as `shard#row` (by their image bytes) and their anchors; empty when
 * the dataset does not exist yet.
 */
export async function readIngested(url: string, dataset: string, where: Map<string, string>) {
  const rows: string[] = []
  const anchors: string[] = []
  let ds: Dataset
  try {
    ds = await Dataset.openRef(dataset, { backend: url })
  } catch (error) {
    if ((error as { code?: string }).code === 'ERR_MANIFEST_REF_NOT_FOUND') return { rows, anchors }
    throw error
  }
  try {
    for await (const batch of ds.iterArrowBatches({ fields: ['image'], batchSize: 1024 })) {
      const image = batch.getChild('image')!
      const anchor = batch.getChild('_anchor')!
      for (let i = 0; i < batch.numRows; i++) {
        rows.push(where.get(key(image.get(i) as Uint8Array)) ?? 'unknown')
        anchors.push(String(anchor.get(i)))
      }
    }
  } finally {
    await ds.repository.store.close()
  }
  return { rows, anchors }
}

/**
 * The final state judged against the shards: rows seen (with how often), duplicates (a row
 * twice, an anchor twice) and the shards' rows never ingested.
 */
export function tally(state: { rows: string[]; anchors: string[] }, where: Map<string, string>) {
  const seen = new Map<string, number>()
  for (const row of state.rows) seen.set(row, (seen.get(row) ?? 0) + 1)
  let duplicated = state.anchors.length - new Set(state.anchors).size
  for (const n of seen.values()) duplicated += n - 1
  const expected = [...where.values()]
  return { seen, duplicated, expected, missing: expected.filter((row) => !seen.has(row)) }
}

export interface IngestOptions {
  shards: number
  rows: number
  batch: number
  kills: number
  random: () => number
}

export async function ingestKills(target: Target, _logDir: string, options: IngestOptions): Promise<Result> {
  const started = Date.now()
  const counts = zero()
  const errors = new ErrorLog(counts)
  const notes: string[] = []
  const root = await mkdtemp(join(tmpdir(), 'dreamdb-torture-shards-'))
  try {
    const where = await writeShards(root, options.shards, options.rows)
    const args = ingestArgs(root, 'torture', target, options.batch)
    const acked = new Set<string>()
    let killed = 0
    let finishedEarly = 0
    const check = async (when: string) => {
      const state = await readIngested(target.url, 'torture', where)
      const present = new Set(state.rows)
      const missing = [...acked].filter((row) => !present.has(row))
      if (missing.length > 0) notes.push(`LOST ${when}: ${missing.slice(0, 5).join(', ')}`)
      return { state, missing }
    }
    let lostSoFar = new Set<string>()
    for (let k = 0; k < options.kills; k++) {
      const cli = startCli(args)
      const first = await cli.waitFor(/\(committed /)
      if (first !== undefined) {
        await sleep(options.random() * 1000)
        cli.kill('SIGKILL')
      }
      const end = await exitWithin(cli, 240_000, counts)
      ackCommitted(cli.lines, acked)
      if (end.signal !== 'SIGKILL') {
        finishedEarly++
        if (end.code !== 0) countExit(errors, cli, end.code, 'ingest')
      } else killed++
      const { missing } = await check(`after kill ${k + 1}`)
      lostSoFar = new Set([...lostSoFar, ...missing])
      if (end.signal !== 'SIGKILL' && end.code === 0) break
    }
    // The last run finishes the job.
    const last = startCli([...args, '--json', '--no-progress'])
    const end = await exitWithin(last, 240_000, counts)
    if (end.code !== 0) countExit(errors, last, end.code, 'final ingest')
    const { state } = await check('at the end')
    const { seen, duplicated, expected, missing: missingAtEnd } = tally(state, where)
    counts.acknowledged = acked.size
    counts.lost = new Set([...lostSoFar, ...[...acked].filter((r) => !seen.has(r))]).size
    counts.duplicated = duplicated
    notes.unshift(
      `${killed} ingests SIGKILLed${finishedEarly > 0 ? `, ${finishedEarly} ended before their kill` : ''}; ${acked.size} acknowledged rows; ${state.rows.length} records at the end for ${expected.length} rows${missingAtEnd.length > 0 ? `, ${missingAtEnd.length} never ingested` : ''}`,
    )
    if (missingAtEnd.length > 0)
      errors.addCode(undefined, `the last ingest left ${missingAtEnd.length} rows out`)
    notes.push(...errors.notes())
  } finally {
    await rm(root, { recursive: true, force: true })
  }
  return {
    scenario: 'sigkill-ingest',
    backend: target.backend,
    counts,
    seconds: (Date.now() - started) / 1000,
    notes,
  }
}
