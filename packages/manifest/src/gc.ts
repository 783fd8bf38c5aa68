/**
 * Garbage collection (design/0008): mark from every ref with the one walker, list the
 * store, mark again from the refs as they are now, then sweep what no ref reaches and what
 * is older than the grace period, checking each object's age again right before deleting
 * it. A dry run by default.
 */
import type { AbortOptions, Store } from '@dreamdb/cas'
import type { CID } from 'multiformats/cid'
import { GcRefusedError, InvalidGcOptionError } from './errors.js'
import { digestKey, type Reached, type WalkResult, walkReachable } from './walk.js'

/** The grace period when none is given: a week. */
export const DEFAULT_GRACE_MS = 7 * 86_400_000
/**
 * The least grace period that can be configured (tests aside): an hour. A writer's commit
 * must land within `grace - 10 min` of putting its objects (design/0008).
 */
export const MIN_GRACE_MS = 3_600_000

export interface GcOptions extends AbortOptions {
  /** Objects (and leftovers) younger than this are kept even when unreachable. @default 7 days; at least 1 hour */
  graceMs?: number
  /** Delete; without it nothing is deleted and the report says what would be. @default false */
  apply?: boolean
  /**
   * Tests only: allow a grace period under `MIN_GRACE_MS` (down to 0). Not offered by the
   * CLI; with writers running, a grace shorter than their commits can delete their objects.
   */
  unsafeAllowShortGrace?: boolean
  /** The clock, ms since the epoch (tests). @default Date.now */
  now?: () => number
  /** Requests in flight while marking. @default 16 */
  concurrency?: number
  /** Called between phases (the CLI draws it). */
  onPhase?: (phase: 'mark' | 'list' | 'remark' | 'sweep' | 'leftovers') => void
}

export interface GcReport {
  dryRun: boolean
  graceMs: number
  /** Objects last modified before this (ms since the epoch) may go. */
  cutoff: number
  refs: { user: number; hidden: number }
  /** Reached from the refs (after the re-mark). */
  reachable: { objects: number; bytes: number }
  stored: { objects: number; bytes: number }
  /** Reached by no ref but younger than the grace period: kept. */
  young: { objects: number; bytes: number }
  /** Unreachable and old: deleted (or, in a dry run, would be). */
  sweep: { objects: number; bytes: number; cids: string[] }
  /** Apply only: how many of them were deleted, and how many a writer freshened meanwhile (kept). */
  deleted: { objects: number; bytes: number }
  keptFresh: number
  /** Objects the re-mark found reachable that the first mark had not (refs moved meanwhile). */
  remarked: number
  leftovers: { found: number; old: number; bytes: number; deleted: number }
  /** Objects read while marking (manifests and tree nodes). */
  objectsRead: number
  durationMs: number
}

function refuseIfDamaged(walk: WalkResult): void {
  if (walk.unreadableRefs.length > 0 || walk.problems.length > 0)
    throw new GcRefusedError(
      walk.unreadableRefs.map((r) => r.name),
      walk.problems.map((p) => `${p.cid} (${p.problem} ${p.kind})`),
    )
}

/** Check a grace period against the floor; returns it. */
export function checkGrace(graceMs: number, allowShort = false): number {
  if (!Number.isFinite(graceMs) || graceMs < 0)
    throw new InvalidGcOptionError('grace period', graceMs, 'it must be a number of milliseconds >= 0')
  if (graceMs < MIN_GRACE_MS && !allowShort)
    throw new InvalidGcOptionError(
      'grace period',
      graceMs,
      `it must be at least ${MIN_GRACE_MS} ms (1 hour): writers' objects are unreachable until their commit lands`,
    )
  return graceMs
}

/**
 * Collect garbage. Refuses (GcRefusedError, nothing deleted) when any ref is unreadable or
 * any object the refs reach is missing or damaged.
 */
export async function collectGarbage(store: Store, options: GcOptions = {}): Promise<GcReport> {
  const started = Date.now()
  const { signal, apply = false, now = Date.now, concurrency, onPhase } = options
  const graceMs = checkGrace(options.graceMs ?? DEFAULT_GRACE_MS, options.unsafeAllowShortGrace === true)
  const cutoff = now() - graceMs
  const walkOptions = { ...(signal ? { signal } : {}), ...(concurrency ? { concurrency } : {}) }

  onPhase?.('mark')
  const first = await walkReachable(store, walkOptions)
  refuseIfDamaged(first)
  const live: Map<string, Reached> = first.reached

  onPhase?.('list')
  const candidates: { key: string; cid: CID; size: number }[] = []
  let stored = 0
  let storedBytes = 0
  const young = { objects: 0, bytes: 0 }
  const sizes = new Map<string, number>()
  for await (const object of store.list(walkOptions)) {
    stored++
    storedBytes += object.size
    const key = digestKey(object.cid)
    sizes.set(key, object.size)
    if (live.has(key)) continue
    if (object.mtime >= cutoff) {
      young.objects++
      young.bytes += object.size
      continue
    }
    candidates.push({ key, cid: object.cid, size: object.size })
  }

  // Refs may have moved while we listed: what they reach now is live too. Only what the first
  // mark did not reach is read.
  onPhase?.('remark')
  const second = await walkReachable(store, { ...walkOptions, visited: live })
  refuseIfDamaged(second)
  for (const [key, reached] of second.reached) live.set(key, reached)
  const doomed = candidates.filter((c) => !live.has(c.key))
  let reachableBytes = 0
  for (const key of live.keys()) reachableBytes += sizes.get(key) ?? 0

  const deleted = { objects: 0, bytes: 0 }
  let keptFresh = 0
  if (apply && doomed.length > 0) {
    onPhase?.('sweep')
    const size = new Map(doomed.map((d) => [d.key, d.size]))
    for await (const result of store.deleteObjects(
      doomed.map((d) => d.cid),
      { modifiedBefore: cutoff, ...(signal ? { signal } : {}) },
    )) {
      if (result.deleted) {
        deleted.objects++
        deleted.bytes += size.get(digestKey(result.cid)) ?? 0
      } else if (result.skipped === 'fresh') keptFresh++
    }
  }

  onPhase?.('leftovers')
  const leftovers = { found: 0, old: 0, bytes: 0, deleted: 0 }
  const old: string[] = []
  for await (const leftover of store.listLeftovers(walkOptions)) {
    leftovers.found++
    if (leftover.mtime >= cutoff) continue
    leftovers.old++
    leftovers.bytes += leftover.size
    old.push(leftover.id)
  }
  if (apply) {
    for (const id of old) {
      if (await store.deleteLeftover(id, { modifiedBefore: cutoff, ...(signal ? { signal } : {}) }))
        leftovers.deleted++
    }
  }

  const sweepBytes = doomed.reduce((sum, d) => sum + d.size, 0)
  return {
    dryRun: !apply,
    graceMs,
    cutoff,
    refs: {
      user: second.refs.filter((r) => !r.hidden).length,
      hidden: second.refs.filter((r) => r.hidden).length,
    },
    reachable: { objects: live.size, bytes: reachableBytes },
    stored: { objects: stored, bytes: storedBytes },
    young,
    sweep: { objects: doomed.length, bytes: sweepBytes, cids: doomed.map((d) => d.cid.toString()) },
    deleted,
    keptFresh,
    remarked: second.reached.size,
    leftovers,
    objectsRead: first.objectsRead + second.objectsRead,
    durationMs: Date.now() - started,
  }
}
