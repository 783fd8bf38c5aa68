/**
 * Lock owners in separate PID namespaces on one folder store: every writer runs under
 * `unshare --pid --fork --mount-proc --kill-child`, so each is pid 1 of its own namespace on
 * the same host, the case where judging a lock by host name and pid liveness broke (issue
 * 11, item 2). Writers increment one counter by compare-and-swap; some are SIGKILLed while
 * they work (so a lock of theirs can be left behind, to be taken over by its lease only).
 * Needs root (or the right to create PID namespaces); otherwise the scenario is skipped
 * with the reason.
 */
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import {
  countWorkerErrors,
  ErrorLog,
  exitWithin,
  type Result,
  sleep,
  startWorker,
  type Target,
  type Worker,
  zero,
} from '../lib.js'
import { acknowledged, judgeCounter, setUpWriters } from './writers.js'

const UNSHARE = ['unshare', '--pid', '--fork', '--mount-proc', '--kill-child']

/** Why PID namespaces cannot be made here, or undefined when they can. */
export function pidNamespacesUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `PID namespaces are Linux only (this is ${process.platform})`
  if (process.getuid?.() !== 0) return 'not running as root: unshare --pid needs CAP_SYS_ADMIN'
  const probe = spawnSync(UNSHARE[0]!, [...UNSHARE.slice(1), 'true'], { encoding: 'utf8' })
  if (probe.error) return `unshare is not available (${probe.error.message})`
  if (probe.status !== 0) return `unshare --pid failed here: ${probe.stderr.trim() || `exit ${probe.status}`}`
  return undefined
}

export interface PidNamespaceOptions {
  processes: number
  commits: number
  kills: number
  random: () => number
}

export async function pidNamespaces(
  target: Target,
  logDir: string,
  options: PidNamespaceOptions,
): Promise<Result> {
  const started = Date.now()
  const counts = zero()
  const unavailable = pidNamespacesUnavailable()
  if (unavailable !== undefined) {
    return {
      scenario: 'pid-namespaces',
      backend: target.backend,
      counts,
      seconds: 0,
      skipped: unavailable,
      notes: [],
    }
  }
  const errors = new ErrorLog(counts)
  const ref = await setUpWriters(target, 'cas')
  const logs: string[] = []
  const identities = new Set<string>()
  const namespaces = new Set<string>()
  const start = (writer: string, commits: number): Worker => {
    const log = join(logDir, `pid-namespaces-${writer}.log`)
    logs.push(log)
    return startWorker(['cas', target.url, ref, writer, String(commits), log], { prefix: UNSHARE })
  }
  const note = (worker: Worker) => {
    const ready = worker.lines.find((l) => l.text.startsWith('ready '))
    const m = ready && /pid=(\d+) pidns=(\S+)/.exec(ready.text)
    if (m) {
      identities.add(m[1]!)
      namespaces.add(m[2]!)
    }
  }
  let killed = 0
  const steady = Array.from({ length: options.processes }, async (_, i) => {
    const worker = start(`n${i}`, options.commits)
    const end = await exitWithin(worker, 240_000, counts)
    note(worker)
    countWorkerErrors(worker, errors, `n${i}`)
    if (!end.hung && end.code !== 0)
      errors.addCode(undefined, `n${i} exited ${end.code}: ${worker.stderr.slice(-300)}`)
  })
  const victims = (async () => {
    for (let k = 0; k < options.kills; k++) {
      const worker = start(`k${k}`, 100_000)
      if (await worker.waitFor(/^ready/)) {
        // Killed while it increments: often while it holds the counter's lock.
        await sleep(300 + options.random() * 1500)
        worker.kill('SIGKILL')
        killed++
      }
      await exitWithin(worker, 60_000, counts)
      note(worker)
      countWorkerErrors(worker, errors, `k${k}`)
    }
  })()
  await Promise.all([...steady, victims])
  const notes = await judgeCounter(counts, target.url, ref, await acknowledged(logs))
  notes.push(
    `${namespaces.size} PID namespaces, writer pids seen: ${[...identities].join(', ')} (the same pid in every namespace); ${killed} writers SIGKILLed`,
  )
  notes.push(...errors.notes())
  return {
    scenario: 'pid-namespaces',
    backend: target.backend,
    counts,
    seconds: (Date.now() - started) / 1000,
    notes,
  }
}
