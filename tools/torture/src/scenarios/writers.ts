/**
 * Writer processes on one store: appending one-record commits to one branch, or
 * compare-and-swap increments of one counter ref; left alone, or SIGKILLed at random and
 * restarted. Then the final state is read directly and every acknowledged write looked for.
 */

import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { openStore } from '@dreamdb/cas'
import { Dataset } from '@dreamdb/dataset'
import {
  type Counts,
  countWorkerErrors,
  ErrorLog,
  exitWithin,
  type Result,
  sleep,
  startWorker,
  type Target,
  type Worker,
  withDeadline,
  zero,
} from '../lib.js'

export const APPEND_SCHEMA = {
  fields: [
    { name: 'id', family: 'scalar' as const, kind: 'string' as const },
    { name: 'n', family: 'scalar' as const, kind: 'int' as const },
  ],
}

export interface WritersOptions {
  mode: 'append' | 'cas'
  /** Writer processes at once. */
  processes: number
  /** Commits each writer makes when it is not killed. */
  commits: number
  /**
   * Killed mode: each of the `processes` slots starts this many writers one after another,
   * each SIGKILLed at a random moment up to `killWindowMs` after it is ready.
   */
  kills?: { generations: number; killWindowMs: number }
  /** Wrap each writer's command (e.g. `unshare --pid --fork --mount-proc`). */
  prefix?: string[]
  /** Extra environment for the writers. */
  env?: NodeJS.ProcessEnv
  random: () => number
  /** How long one writer may live before it counts as hung. */
  workerDeadlineMs: number
}

/** Acknowledged ids from the writers' fsynced logs. */
export async function acknowledged(logs: string[]): Promise<string[]> {
  const out: string[] = []
  for (const path of logs) {
    const text = await readFile(path, 'utf8').catch(() => '')
    for (const line of text.split('\n'))
      if (line.startsWith('committed ')) out.push(line.slice('committed '.length))
  }
  return out
}

/** Every id and anchor on the branch, read from the store directly. */
export async function readAppended(
  url: string,
  dataset: string,
): Promise<{ ids: string[]; anchors: bigint[] }> {
  const ds = await Dataset.openRef(dataset, { backend: url })
  const ids: string[] = []
  const anchors: bigint[] = []
  try {
    for await (const batch of ds.iterArrowBatches({ fields: ['id'], batchSize: 4096 })) {
      const id = batch.getChild('id')!
      const anchor = batch.getChild('_anchor')!
      for (let i = 0; i < batch.numRows; i++) {
        ids.push(id.get(i) as string)
        anchors.push(anchor.get(i) as bigint)
      }
    }
  } finally {
    await ds.repository.store.close()
  }
  return { ids, anchors }
}

/** Lost: acknowledged but absent; duplicated: an id or an anchor more than once. */
export function judgeAppends(
  counts: Counts,
  acked: string[],
  found: { ids: string[]; anchors: bigint[] },
): string[] {
  const seen = new Map<string, number>()
  for (const id of found.ids) seen.set(id, (seen.get(id) ?? 0) + 1)
  counts.acknowledged += acked.length
  const missing = acked.filter((id) => !seen.has(id))
  counts.lost += missing.length
  let duplicates = 0
  for (const n of seen.values()) duplicates += n - 1
  const anchors = new Set(found.anchors.map(String))
  duplicates += found.anchors.length - anchors.size
  counts.duplicated += duplicates
  const notes = [`${found.ids.length} records on the branch, ${acked.length} acknowledged`]
  if (missing.length > 0) notes.push(`LOST: ${missing.slice(0, 5).join(', ')}`)
  const twice = [...seen].filter(([, n]) => n > 1).map(([id, n]) => `${id} x${n}`)
  if (twice.length > 0) notes.push(`DUPLICATED: ${twice.slice(0, 5).join(', ')}`)
  return notes
}

interface CounterValue {
  total: number
  by: Record<string, number>
}

/** Lost: a writer's acknowledged increments above its entry; duplicated: a total above the sum. */
export async function judgeCounter(
  counts: Counts,
  url: string,
  ref: string,
  acked: string[],
): Promise<string[]> {
  const store = await openStore(url)
  try {
    const entry = await store.readRef(ref)
    const value = JSON.parse(new TextDecoder().decode(entry!.value)) as CounterValue
    const last = new Map<string, number>()
    for (const line of acked) {
      const [writer, n] = line.split(' ')
      last.set(writer!, Math.max(last.get(writer!) ?? 0, Number(n)))
    }
    let lost = 0
    for (const [writer, n] of last) lost += Math.max(0, n - (value.by[writer] ?? 0))
    const sum = Object.values(value.by).reduce((a, b) => a + b, 0)
    counts.acknowledged += acked.length
    counts.lost += lost
    counts.duplicated += Math.max(0, value.total - sum)
    if (value.total < sum) counts.lost += sum - value.total
    return [
      `counter at ${value.total} (generation ${entry!.generation}), ${acked.length} increments acknowledged`,
    ]
  } finally {
    await store.close()
  }
}

export async function setUpWriters(target: Target, mode: 'append' | 'cas'): Promise<string> {
  if (mode === 'append') {
    const ds = await Dataset.create('torture', { backend: target.url, schema: APPEND_SCHEMA })
    await ds.repository.store.close()
    return 'torture'
  }
  const store = await openStore(target.url)
  await store.createRef('torture/counter', new TextEncoder().encode(JSON.stringify({ total: 0, by: {} })))
  await store.close()
  return 'torture/counter'
}

export async function writers(
  scenario: string,
  target: Target,
  logDir: string,
  options: WritersOptions,
): Promise<Result> {
  const started = Date.now()
  const counts = zero()
  const errors = new ErrorLog(counts)
  const name = await setUpWriters(target, options.mode)
  const logs: string[] = []
  let killed = 0
  let exitedBadly = 0
  const runSlot = async (slot: number): Promise<void> => {
    const generations = options.kills?.generations ?? 1
    for (let g = 0; g < generations; g++) {
      const writer = `s${slot}g${g}`
      const log = join(logDir, `${scenario}-${target.backend}-${writer}.log`)
      logs.push(log)
      const commits = options.kills ? 100_000 : options.commits
      const worker: Worker = startWorker([options.mode, target.url, name, writer, String(commits), log], {
        ...(options.prefix ? { prefix: options.prefix } : {}),
        ...(options.env ? { env: options.env } : {}),
      })
      if (options.kills) {
        const ready = await worker.waitFor(/^ready/)
        if (ready !== undefined) {
          await sleep(options.random() * options.kills.killWindowMs)
          worker.kill('SIGKILL')
          killed++
        }
      }
      const end = await exitWithin(worker, options.workerDeadlineMs, counts)
      countWorkerErrors(worker, errors, writer)
      if (!options.kills && !end.hung && end.code !== 0) {
        exitedBadly++
        errors.addCode(undefined, `${writer} exited ${end.code ?? end.signal}: ${worker.stderr.slice(-300)}`)
      }
      if (options.kills && end.signal !== 'SIGKILL' && !end.hung) {
        exitedBadly++
        errors.addCode(
          undefined,
          `${writer} ended before its kill (${end.code}): ${worker.stderr.slice(-300)}`,
        )
      }
    }
  }
  await Promise.all(Array.from({ length: options.processes }, (_, slot) => runSlot(slot)))
  const acked = await acknowledged(logs)
  const notes =
    options.mode === 'append'
      ? judgeAppends(
          counts,
          acked,
          await withDeadline('final read', 120_000, () => readAppended(target.url, name)),
        )
      : await judgeCounter(counts, target.url, name, acked)
  if (options.kills) notes.push(`${killed} writers SIGKILLed`)
  if (exitedBadly > 0) notes.push(`${exitedBadly} writers ended unexpectedly`)
  notes.push(...errors.notes())
  return { scenario, backend: target.backend, counts, seconds: (Date.now() - started) / 1000, notes }
}
