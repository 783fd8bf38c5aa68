/**
 * Merges under writers: appending writer processes on a dataset's branch and on its side
 * branch, while merger processes merge the side branch into the branch again and again and
 * are SIGKILLed at random moments (a merge's commit may be cut anywhere). When all have
 * stopped, one last merge brings in what is left; then every record acknowledged on either
 * branch must be on the branch exactly once (its id once, every anchor once).
 */
import { Dataset } from '@dreamdb/dataset'
import {
  countWorkerErrors,
  ErrorLog,
  exitWithin,
  type Result,
  sleep,
  startWorker,
  type Target,
  withDeadline,
  zero,
} from '../lib.js'
import { APPEND_SCHEMA, acknowledged, judgeAppends, readAppended } from './writers.js'

export interface MergeUnderWritersOptions {
  /** Appending writers on each of the two branches. */
  writers: number
  /** One-record appends each writer makes. */
  commits: number
  /** Merger processes, one after another, each SIGKILLed up to `killWindowMs` after it is ready. */
  mergers: number
  killWindowMs: number
  random: () => number
  workerDeadlineMs: number
}

export async function mergeUnderWriters(
  target: Target,
  logDir: string,
  options: MergeUnderWritersOptions,
): Promise<Result> {
  const started = Date.now()
  const counts = zero()
  const errors = new ErrorLog(counts)
  const main = await Dataset.create('torture', { backend: target.url, schema: APPEND_SCHEMA })
  await main.branch('torture-side')
  await main.repository.store.close()
  const logs: string[] = []
  let killed = 0
  const run = async (
    mode: 'append' | 'merge',
    name: string,
    who: string,
    commits: number,
    killAfterMs?: number,
  ) => {
    const log = `${logDir}/merge-${target.backend}-${who}.log`
    if (mode === 'append') logs.push(log)
    const worker = startWorker([mode, target.url, name, who, String(commits), log], {
      env: { TORTURE_PAUSE_MS: mode === 'merge' ? '20' : '5' },
    })
    if (killAfterMs !== undefined && (await worker.waitFor(/^ready/)) !== undefined) {
      await sleep(killAfterMs)
      worker.kill('SIGKILL')
      killed++
    }
    const end = await exitWithin(worker, options.workerDeadlineMs, counts)
    countWorkerErrors(worker, errors, who)
    const expected = killAfterMs === undefined ? 0 : null
    if (!end.hung && end.code !== expected && end.signal !== 'SIGKILL')
      errors.addCode(undefined, `${who} exited ${end.code ?? end.signal}: ${worker.stderr.slice(-300)}`)
  }
  const writers = ['torture', 'torture-side'].flatMap((name) =>
    Array.from({ length: options.writers }, (_, i) =>
      run('append', name, `${name === 'torture' ? 'main' : 'side'}${i}`, options.commits),
    ),
  )
  const mergers = (async () => {
    for (let g = 0; g < options.mergers; g++)
      await run('merge', 'torture', `merger${g}`, 1000, options.random() * options.killWindowMs)
  })()
  await Promise.all([...writers, mergers])
  // What is left on the side branch, merged once more (refused only by a typed conflict).
  let landed = false
  for (let attempt = 0; attempt < 5 && !landed; attempt++) {
    const ds = await Dataset.openRef('torture', { backend: target.url })
    try {
      await withDeadline('final merge', 120_000, () => ds.merge('torture-side'))
      landed = true
    } catch (error) {
      errors.add(error, 'final merge')
    } finally {
      await ds.repository.store.close()
    }
  }
  const notes = judgeAppends(
    counts,
    await acknowledged(logs),
    await withDeadline('final read', 120_000, () => readAppended(target.url, 'torture')),
  )
  if (!landed) {
    counts.lost = Math.max(counts.lost, 1)
    notes.push('the final merge never landed')
  }
  notes.push(`${options.writers} writers on each branch, ${killed} mergers SIGKILLed`, ...errors.notes())
  return {
    scenario: 'merge-under-writers',
    backend: target.backend,
    counts,
    seconds: (Date.now() - started) / 1000,
    notes,
  }
}
