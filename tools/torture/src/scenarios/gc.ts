/**
 * GC under writers (design/0008), the long form of the dataset suite's GC race
 * (packages/dataset/test/lifecycle.test.ts): the same test, run with more rounds and more
 * writes per round (DREAMDB_GC_RACE). Each round leaves old garbage, fixes the GC's cutoff,
 * then runs GCs back to back against two appenders, a layer writer (half its branches
 * deleted again) and appends aborted by the store after some puts and retried. After each
 * round fsck must find nothing missing or corrupt, every acknowledged record and kept layer
 * must read back, and exactly the old garbage must have been swept. What is old is fixed
 * before the race, so the outcome never depends on the machine's pace.
 */
import { type Result, runVitest, type Target, zero } from '../lib.js'

export interface GcUnderWritersOptions {
  rounds: number
  /** Appends of 3 records per appender per round (two appenders). */
  appends: number
  /** Layer branches per round (every other one deleted again). */
  layers: number
  /** Aborted appends per round, each retried at once (besides the round's old garbage). */
  aborts: number
}

const SUMMARY =
  /\[gc-race\] \S+: (\d+) rounds, (\d+) GC runs, (\d+) objects deleted, (\d+) kept as freshened, (\d+) records acknowledged, (\d+) appends aborted, (\d+) retried, (\d+) layers kept/

export async function gcUnderWriters(target: Target, options: GcUnderWritersOptions): Promise<Result> {
  const started = Date.now()
  const counts = zero()
  const backend = target.backend === 'minio' ? 'MinIO' : 'folder'
  const { code, output } = await runVitest(
    'dataset',
    ['test/lifecycle.test.ts', '-t', `lifecycle on ${backend} GC racing`],
    { DREAMDB_GC_RACE: JSON.stringify(options) },
  )
  const notes: string[] = []
  const summary = SUMMARY.exec(output)
  if (summary) {
    counts.acknowledged = Number(summary[5]) + Number(summary[8])
    notes.push(summary[0].slice('[gc-race] '.length))
  }
  if (code !== 0 || !summary) {
    // Every check of the test is of something lost (fsck's missing objects, a record or layer
    // that does not read back, garbage swept that was not old); anything else failed untyped.
    if (/AssertionError/.test(output)) counts.lost = Math.max(counts.lost, 1)
    else counts.untyped = Math.max(counts.untyped, 1)
    notes.push(`vitest exited ${code}: ${output.slice(-1500)}`)
  }
  return {
    scenario: 'gc-under-writers',
    backend: target.backend,
    counts,
    seconds: (Date.now() - started) / 1000,
    notes,
  }
}
