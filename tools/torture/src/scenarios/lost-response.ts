/**
 * Writers commit through `startFaultProxy` in front of MinIO, which forwards every request
 * and, for a random share of them, lets the server apply it and then resets the client's
 * connection instead of passing the answer on (ref writes, object puts, the anchor counter,
 * reads). A writer that cannot tell whether its commit landed must find out; it must never
 * append twice nor report a commit that is not there.
 */

import { join } from 'node:path'
import { startFaultProxy } from '@dreamdb/cas-tests'
import {
  countWorkerErrors,
  ErrorLog,
  exitWithin,
  type Result,
  startWorker,
  type Target,
  zero,
} from '../lib.js'
import { acknowledged, judgeAppends, judgeCounter, readAppended, setUpWriters } from './writers.js'

export interface LostResponseOptions {
  processes: number
  commits: number
  /** Share of PUT answers dropped (reads: a quarter of it). */
  drop: number
  random: () => number
}

export async function lostResponses(
  target: Target,
  logDir: string,
  options: LostResponseOptions,
): Promise<Result> {
  const started = Date.now()
  const counts = zero()
  const errors = new ErrorLog(counts)
  const endpoint = target.s3!.endpoint
  const dataset = await setUpWriters(target, 'append')
  const counter = await setUpWriters(target, 'cas')
  const proxy = await startFaultProxy({
    target: endpoint,
    dropResponseOf: (r) => {
      if (!r.path.includes(`/${target.s3!.bucket}`)) return false
      const share =
        r.method === 'PUT' || r.method === 'POST' || r.method === 'DELETE' ? options.drop : options.drop / 4
      return options.random() < share
    },
  })
  const url = `${proxy.url}/${target.s3!.bucket}`
  const logs: string[] = []
  const counterLogs: string[] = []
  const notes: string[] = []
  try {
    const runs = Array.from({ length: options.processes }, (_, i) => {
      const mode = i === 0 ? 'cas' : 'append'
      const writer = `p${i}`
      const log = join(logDir, `lost-response-${writer}.log`)
      ;(mode === 'cas' ? counterLogs : logs).push(log)
      const worker = startWorker(
        [
          mode,
          url,
          mode === 'cas' ? counter : dataset,
          writer,
          String(options.commits * (mode === 'cas' ? 2 : 1)),
          log,
        ],
        {
          env: { TORTURE_OP_DEADLINE_MS: '120000' },
        },
      )
      return (async () => {
        const end = await exitWithin(worker, 300_000, counts)
        countWorkerErrors(worker, errors, writer)
        if (!end.hung && end.code !== 0)
          errors.addCode(undefined, `${writer} exited ${end.code}: ${worker.stderr.slice(-300)}`)
      })()
    })
    await Promise.all(runs)
  } finally {
    await proxy.close()
  }
  const byStatus = new Map<string, number>()
  for (const d of proxy.dropped)
    byStatus.set(`${d.method} ${d.status}`, (byStatus.get(`${d.method} ${d.status}`) ?? 0) + 1)
  notes.push(
    `${proxy.dropped.length} of ${proxy.forwarded} answers dropped after the server applied the request (${[
      ...byStatus,
    ]
      .map(([k, n]) => `${k} x${n}`)
      .join(', ')})`,
  )
  notes.push(...judgeAppends(counts, await acknowledged(logs), await readAppended(target.url, dataset)))
  notes.push(...(await judgeCounter(counts, target.url, counter, await acknowledged(counterLogs))))
  notes.push(...errors.notes())
  return {
    scenario: 'lost-response',
    backend: target.backend,
    counts,
    seconds: (Date.now() - started) / 1000,
    notes,
  }
}
