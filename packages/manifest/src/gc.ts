/**
 * Garbage collection (design/0008): mark from every ref with the one walker, list the
 * store, mark again from the refs as they are now, then sweep what no ref reaches and what
 * is older than the grace period, checking each object's age again right before deleting
 * it. A dry run by default.
 */
import { randomBytes } from 'node:crypto'
import { setTimeout as delay } from 'node:timers/promises'
import type { AbortOptions, RefEntry, Store } from '@dreamdb/cas'
import type { CID } from 'multiformats/cid'
import { GcBusyError, GcInterruptedError, GcRefusedError, InvalidGcOptionError } from './errors.js'
import { INTERNAL_PREFIX } from './names.js'
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

/**
 * The sweep fence (design/0008): a hidden JSON ref that a GC sets to `sweeping` before it
 * deletes anything and back to `idle` after. A commit reads it before and after freshening
 * the objects it names but did not write; if it changed, or a sweep is on, the commit waits
 * for the sweep to end and checks again, so no delete can land between its check and its
 * ref move unseen.
 */
export const SWEEP_FENCE_REF = `${INTERNAL_PREFIX}gc/sweep`

/** What the fence holds (JSON; no CID in it, so the walker follows nothing from it). */
interface SweepFence {
  state: 'sweeping' | 'idle'
  /** The GC that set it (random). */
  gc: string
  /** When it started sweeping, ms by its clock (for messages). */
  since: number
  /** When the GC last wrote it, ms by its clock (for people; staleness is judged by watching it). */
  beatAt: number
  /** Set by a writer asking the sweep to stop (the GC stops before its next group). */
  yield?: string
}

/** Objects a GC deletes between two writes of the fence (each write: one conditional ref write). */
export const SWEEP_GROUP = 256
/**
 * How long a commit waits for a sweep to end before asking it to yield, and how long a fence
 * may go unwritten (its GC dead, or paused) before a writer or another GC takes it over.
 */
export const SWEEP_WAIT_MS = 30_000
export const SWEEP_STALE_MS = 60_000
/** Tests only: shorter waits (`DREAMDB_TEST_SWEEP_WAIT_MS`; the stale limit is twice it). */
function sweepWaitMs(): number {
  const raw = process.env.DREAMDB_TEST_SWEEP_WAIT_MS
  return raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : SWEEP_WAIT_MS
}
function sweepStaleMs(): number {
  return process.env.DREAMDB_TEST_SWEEP_WAIT_MS !== undefined ? 2 * sweepWaitMs() : SWEEP_STALE_MS
}

const encodeFence = (fence: SweepFence): Uint8Array => new TextEncoder().encode(JSON.stringify(fence))
function decodeFence(entry: RefEntry | undefined): SweepFence | undefined {
  if (entry === undefined) return undefined
  try {
    const value = JSON.parse(new TextDecoder().decode(entry.value)) as SweepFence
    return value.state === 'sweeping' || value.state === 'idle' ? value : undefined
  } catch {
    return undefined
  }
}
const codeOf = (error: unknown): string | undefined => (error as { code?: string } | null)?.code
const lostRace = (error: unknown): boolean =>
  codeOf(error) === 'ERR_CAS_REF_CONFLICT' || codeOf(error) === 'ERR_CAS_REF_NOT_FOUND'

/** A GC's hold on the fence while it deletes. */
class Sweep {
  readonly #store: Store
  readonly #fence: SweepFence
  #entry: RefEntry

  private constructor(store: Store, fence: SweepFence, entry: RefEntry) {
    this.#store = store
    this.#fence = fence
    this.#entry = entry
  }

  /**
   * Set the fence to `sweeping`. Another GC's fence is judged by this process's clock, not by
   * the times written in it (hosts' clocks differ): written again while watched, its GC is
   * alive (GcBusyError); unwritten for SWEEP_STALE_MS, its GC died and it is taken over.
   */
  static async open(store: Store, signal?: AbortSignal): Promise<Sweep> {
    const now = Date.now()
    const fence: SweepFence = {
      state: 'sweeping',
      gc: randomBytes(6).toString('hex'),
      since: now,
      beatAt: now,
    }
    let watched: { version: string; since: number } | undefined
    for (;;) {
      const entry = await store.readRef(SWEEP_FENCE_REF, { signal })
      const held = decodeFence(entry)
      if (entry !== undefined && held?.state === 'sweeping') {
        if (watched !== undefined && watched.version !== entry.version)
          throw new GcBusyError(
            held.gc,
            store.url,
            `since ${new Date(held.since).toISOString()} by its clock; one GC sweeps at a time`,
          )
        watched ??= { version: entry.version, since: Date.now() }
        if (Date.now() - watched.since < sweepStaleMs()) {
          await delay(Math.min(1000, sweepStaleMs() / 10), undefined, signal ? { signal } : {})
          continue
        }
      }
      try {
        const written =
          entry === undefined
            ? await store.createRef(SWEEP_FENCE_REF, encodeFence(fence), { signal })
            : await store.updateRef(SWEEP_FENCE_REF, encodeFence(fence), entry, { signal })
        return new Sweep(store, fence, written)
      } catch (error) {
        if (!lostRace(error) && codeOf(error) !== 'ERR_CAS_REF_EXISTS') throw error
      }
    }
  }

  /** Write the fence again before a group of deletes; `false` when a writer asked the sweep to stop. */
  async beat(signal?: AbortSignal): Promise<boolean> {
    try {
      this.#entry = await this.#store.updateRef(
        SWEEP_FENCE_REF,
        encodeFence({ ...this.#fence, beatAt: Date.now() }),
        this.#entry,
        { signal },
      )
      return true
    } catch (error) {
      if (!lostRace(error)) throw error
      return false
    }
  }

  /**
   * Set the fence back to `idle`, unless another GC has taken it over since. Waiting writers
   * asking the sweep to yield move it meanwhile; after 20 refused writes in a row it is left
   * to go stale (taken over after SWEEP_STALE_MS).
   */
  async close(): Promise<void> {
    for (let tries = 0; tries < 20; tries++) {
      try {
        await this.#store.updateRef(
          SWEEP_FENCE_REF,
          encodeFence({ ...this.#fence, state: 'idle', beatAt: Date.now() }),
          this.#entry,
        )
        return
      } catch (error) {
        if (!lostRace(error)) throw error
        const entry = await this.#store.readRef(SWEEP_FENCE_REF)
        const now = decodeFence(entry)
        // A writer's request to yield is answered by this write; a fence taken over (idle, or
        // another GC's) is left as it is.
        if (entry === undefined || now?.gc !== this.#fence.gc || now.state !== 'sweeping') return
        this.#entry = entry
      }
    }
  }
}

/**
 * Wait until no sweep is on and return the fence's version (`null`: no fence). A sweep that
 * runs longer than SWEEP_WAIT_MS is asked to yield; a fence unwritten for SWEEP_STALE_MS
 * after that (its GC dead or paused) is taken over: set to idle. Both are judged by `clock`
 * (the commit's), watching the fence; the polls between are real waits.
 */
async function settledFence(
  store: Store,
  signal: AbortSignal | undefined,
  clock: () => number,
): Promise<string | null> {
  let waitedSince: number | undefined
  let asked = false
  let lastVersion: string | undefined
  let unchangedSince = 0
  let pause = 10
  for (;;) {
    const entry = await store.readRef(SWEEP_FENCE_REF, { signal })
    const fence = decodeFence(entry)
    if (entry === undefined || fence?.state !== 'sweeping') return entry?.version ?? null
    const now = clock()
    waitedSince ??= now
    if (entry.version !== lastVersion) {
      lastVersion = entry.version
      unchangedSince = now
    }
    try {
      if (!asked && now - waitedSince >= sweepWaitMs()) {
        await store.updateRef(SWEEP_FENCE_REF, encodeFence({ ...fence, yield: 'writer' }), entry, { signal })
        asked = true
        continue
      }
      if (asked && now - unchangedSince >= sweepStaleMs()) {
        await store.updateRef(
          SWEEP_FENCE_REF,
          encodeFence({ ...fence, state: 'idle', yield: 'writer (stale fence taken over)' }),
          entry,
          { signal },
        )
        continue
      }
    } catch (error) {
      if (!lostRace(error)) throw error
      continue
    }
    await delay(pause, undefined, signal ? { signal } : {})
    pause = Math.min(pause * 2, 500)
  }
}

/** Fence rounds a commit's check tries before giving up (each one means a whole sweep passed). */
const FENCE_ROUNDS = 20

/**
 * A commit's check of objects it names but did not write (design/0008): freshen each one
 * (`has` with `freshen`), bracketed by two reads of the sweep fence. When the fence did not
 * move, no sweep was on while the objects were freshened, so any later sweep sees them young
 * and any earlier one had ended (its deletes landed before the check). Otherwise wait for the
 * sweep to end and check again. Returns the objects' indexes that are missing (after a
 * settled round).
 */
export async function checkFenced(
  store: Store,
  objects: readonly { cid: CID }[],
  check: (cid: CID) => Promise<boolean>,
  options: AbortOptions & { now?: () => number } = {},
): Promise<number[]> {
  const { signal, now = Date.now } = options
  for (let round = 0; ; round++) {
    const before = await settledFence(store, signal, now)
    const present = await Promise.all(objects.map((o) => check(o.cid)))
    const missing = present.flatMap((p, i) => (p ? [] : [i]))
    // Missing is missing: refusing is safe whatever the fence says.
    if (missing.length > 0) return missing
    const after = (await store.readRef(SWEEP_FENCE_REF, { signal }))?.version ?? null
    if (after === before) return []
    if (round + 1 >= FENCE_ROUNDS) {
      const fence = decodeFence(await store.readRef(SWEEP_FENCE_REF, { signal }))
      throw new GcBusyError(
        fence?.gc ?? 'unknown',
        store.url,
        `${FENCE_ROUNDS} sweeps began while a commit checked its objects`,
      )
    }
  }
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
    // The fence is up before the first age re-check: a commit that freshened an object
    // before it is seen young here; one that checks after it waits for the fence to drop.
    const sweep = await Sweep.open(store, signal)
    let yielded = false
    try {
      for (let at = 0; at < doomed.length && !yielded; at += SWEEP_GROUP) {
        if (!(await sweep.beat(signal))) {
          yielded = true
          break
        }
        for await (const result of store.deleteObjects(
          doomed.slice(at, at + SWEEP_GROUP).map((d) => d.cid),
          { modifiedBefore: cutoff, ...(signal ? { signal } : {}) },
        )) {
          if (result.deleted) {
            deleted.objects++
            deleted.bytes += size.get(digestKey(result.cid)) ?? 0
          } else if (result.skipped === 'fresh') keptFresh++
        }
      }
    } finally {
      await sweep.close()
    }
    if (yielded) throw new GcInterruptedError(deleted.objects, doomed.length)
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
