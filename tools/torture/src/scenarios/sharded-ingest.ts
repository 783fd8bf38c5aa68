/**
 * Several `dreamdb ingest` processes (the built CLI) of the same shards into one dataset at
 * once (design/0006: each writes the shards it claims), one of them SIGKILLed at random
 * moments and started again in its place, until every process has exited on its own. Every
 * chunk an ingest reported as committed must be in the dataset; at the end every row of the
 * shards is in exactly once (by its image bytes) under unique anchors, every survivor exited
 * 0, and a last run finds nothing left to do.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ErrorLog, exitWithin, type Result, sleep, startCli, type Target, type Worker, zero } from '../lib.js'
import { ackCommitted, countExit, ingestArgs, readIngested, tally, writeShards } from './ingest.js'

export interface ShardedIngestOptions {
  /** Ingests running at once. */
  processes: number
  shards: number
  rows: number
  batch: number
  /** SIGKILLs in all, each of a random running ingest, each replaced by a new one. */
  kills: number
  random: () => number
}

export async function shardedIngestKills(
  target: Target,
  _logDir: string,
  options: ShardedIngestOptions,
): Promise<Result> {
  const started = Date.now()
  const counts = zero()
  const errors = new ErrorLog(counts)
  const notes: string[] = []
  const root = await mkdtemp(join(tmpdir(), 'dreamdb-torture-sharded-'))
  try {
    const where = await writeShards(root, options.shards, options.rows)
    const args = ingestArgs(root, 'torture-sharded', target, options.batch)
    const acked = new Set<string>()
    const running = new Set<Worker>()
    const all: Worker[] = []
    const start = () => {
      const worker = startCli(args)
      running.add(worker)
      all.push(worker)
      void worker.exited.then(() => running.delete(worker))
    }
    for (let p = 0; p < options.processes; p++) start()
    let killed = 0
    for (let k = 0; k < options.kills && running.size > 0; k++) {
      // A random running ingest, once it has committed something, at a random moment after.
      const victim = [...running][Math.floor(options.random() * running.size)]!
      const first = await victim.waitFor(/\(committed /)
      if (first === undefined) continue
      await sleep(options.random() * 800)
      if (!running.has(victim)) continue
      victim.kill('SIGKILL')
      killed++
      await victim.exited
      start()
    }
    let survivors = 0
    for (const worker of all) {
      const end = await exitWithin(worker, 240_000, counts)
      ackCommitted(worker.lines, acked)
      if (end.signal === 'SIGKILL') continue
      survivors++
      if (end.code !== 0) countExit(errors, worker, end.code, 'ingest')
    }
    // Every ingest that exited 0 returned with everything in: a last run has nothing to do.
    const last = startCli([...args, '--json', '--no-progress'])
    const end = await exitWithin(last, 240_000, counts)
    let leftForLast = 0
    if (end.code === 0) {
      const text = last.lines.map((l) => l.text).join('\n')
      leftForLast = (JSON.parse(text.slice(text.indexOf('{'))) as { records: { ingested: number } }).records
        .ingested
    } else {
      errors.addCode(undefined, `final ingest exit ${end.code}: ${last.stderr.slice(-300)}`)
    }
    const state = await readIngested(target.url, 'torture-sharded', where)
    const { seen, duplicated, expected, missing: never } = tally(state, where)
    const missingBeforeLast = leftForLast
    counts.acknowledged = acked.size
    counts.lost = [...acked].filter((r) => !seen.has(r)).length
    counts.duplicated = duplicated
    const missing = never.length
    notes.unshift(
      `${options.processes} ingests at once, ${killed} SIGKILLed and replaced, ${survivors} exited on their own; ${acked.size} acknowledged rows; ${state.rows.length} records for ${expected.length} rows`,
    )
    if (missingBeforeLast > 0)
      errors.addCode(undefined, `the ingests that exited 0 left ${missingBeforeLast} rows for a last run`)
    if (missing > 0) errors.addCode(undefined, `${missing} rows never ingested`)
    notes.push(...errors.notes())
  } finally {
    await rm(root, { recursive: true, force: true })
  }
  return {
    scenario: 'sharded-ingest',
    backend: target.backend,
    counts,
    seconds: (Date.now() - started) / 1000,
    notes,
  }
}
