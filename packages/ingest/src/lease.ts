/**
 * The ingest lease: at most one `ingest` writes into a dataset at a time (design/0006).
 *
 * A lease is a ref of the store, `_dreamdb/leases/ingest/<dataset>` (refs starting with `_`
 * are DreamDB's own; `dreamdb refs` never lists them), whose value names its holder (host,
 * pid, a random token, the command) and when it expires. It moves only by the store's
 * compare-and-swap: taken with create-if-absent, renewed and taken over with
 * update-if-unchanged, released with delete-if-unchanged. Two ingests can therefore never
 * both believe they hold it, on a folder or on S3, in one process or on two machines.
 *
 * The holder renews it every `ttl / 4`; a holder that stops renewing (killed, its machine
 * gone) loses it when it expires, and a holder on this host whose process is gone loses it
 * at once. Before each commit the holder checks that its last renewal is recent enough
 * (`ttl / 2`), so that a process paused for longer than that (a laptop lid, a stopped
 * container) stops instead of committing beside the ingest that took its lease over.
 */
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { setTimeout as delay } from 'node:timers/promises'
import type { RefEntry, Store } from '@dreamdb/cas'
import { IngestLeaseLostError, IngestLockedError } from './errors.js'

export const LEASE_PREFIX = '_dreamdb/leases/ingest/'
const FORMAT = 'dreamdb.ingest-lease/1'
/** How long a lease lives without renewal. @default 60 s */
export const DEFAULT_LEASE_TTL_MS = 60_000

/** What a lease says about its holder. */
export interface LeaseHolder {
  host: string
  pid: number
  /** Random per run: the same host and pid in a later run is another holder. */
  token: string
  /** What the holder runs (for the error message of the one that has to wait). */
  command: string
  /** ms since the epoch. */
  acquired: number
  renewed: number
  expires: number
}

export interface LeaseOptions {
  /** @default 60 000 */
  ttlMs?: number
  /** How often the holder renews it. @default ttl / 4 */
  renewMs?: number
  /** How often a waiting taker looks again, at most. @default min(1 s, ttl / 8) */
  pollMs?: number
  /** Wait at most this long for a lease held by someone else; 0 fails at once. @default 0 */
  waitMs?: number
  /** For the holder record. */
  command?: string
  signal?: AbortSignal
  /** Called when it has to wait (once per holder it waits for). */
  onWait?: (holder: LeaseHolder, dataset: string) => void
  /** A dead or expired holder's lease was taken over. */
  onTakeOver?: (holder: LeaseHolder, why: 'expired' | 'dead') => void
  /** For tests: the clock. */
  now?: () => number
}

export const leaseRef = (dataset: string): string => `${LEASE_PREFIX}${dataset}`

function encode(holder: LeaseHolder): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ format: FORMAT, ...holder }))
}

/** A lease's holder, or `undefined` for a value that is not one (then it is treated as expired). */
export function decodeLease(bytes: Uint8Array): LeaseHolder | undefined {
  try {
    const v = JSON.parse(new TextDecoder().decode(bytes)) as Partial<LeaseHolder> & { format?: string }
    if (
      v.format !== FORMAT ||
      typeof v.host !== 'string' ||
      typeof v.pid !== 'number' ||
      typeof v.token !== 'string' ||
      typeof v.expires !== 'number'
    )
      return undefined
    return {
      host: v.host,
      pid: v.pid,
      token: v.token,
      command: typeof v.command === 'string' ? v.command : '',
      acquired: typeof v.acquired === 'number' ? v.acquired : 0,
      renewed: typeof v.renewed === 'number' ? v.renewed : 0,
      expires: v.expires,
    }
  } catch {
    return undefined
  }
}

/** Whether a process of this host with this pid is gone (EPERM: it exists, owned by another user). */
function deadHere(holder: LeaseHolder): boolean {
  if (holder.host !== hostname()) return false
  if (holder.pid === process.pid) return false
  try {
    process.kill(holder.pid, 0)
    return false
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH'
  }
}

const isCode = (error: unknown, code: string) => (error as { code?: string } | null)?.code === code

/** A lease this process holds: renewed in the background until released. */
export class IngestLease {
  readonly dataset: string
  readonly #store: Store
  readonly #ttl: number
  readonly #now: () => number
  #entry: RefEntry
  #holder: LeaseHolder
  /** Local time by which the lease is surely still ours: the start of the last renewal + ttl. */
  #validUntil: number
  #timer: NodeJS.Timeout | undefined
  #renewing: Promise<void> = Promise.resolve()
  #lost: IngestLeaseLostError | undefined
  readonly #controller = new AbortController()

  /** @internal */
  constructor(
    store: Store,
    dataset: string,
    entry: RefEntry,
    holder: LeaseHolder,
    ttl: number,
    now: () => number,
    since: number,
    renewMs: number,
  ) {
    this.#store = store
    this.dataset = dataset
    this.#entry = entry
    this.#holder = holder
    this.#ttl = ttl
    this.#now = now
    this.#validUntil = since + ttl
    this.#timer = setInterval(
      () => {
        this.#renewing = this.#renewing.then(() => this.#renew()).catch(() => {})
      },
      Math.max(10, renewMs),
    )
    this.#timer.unref()
  }

  get holder(): LeaseHolder {
    return this.#holder
  }

  /** Aborted when the lease is lost (taken over after it expired, or deleted by hand). */
  get signal(): AbortSignal {
    return this.#controller.signal
  }

  /**
   * Throw unless the lease is still surely ours for a while: call it before each commit. A
   * renewal that failed for a transient reason (the store briefly unreachable) is not a
   * loss yet; only time is.
   */
  assertHeld(): void {
    if (this.#lost) throw this.#lost
    if (this.#now() > this.#validUntil - this.#ttl / 2) {
      this.#lose(
        `its last renewal is ${Math.round((this.#now() - (this.#validUntil - this.#ttl)) / 1000)} s old (the lease lives ${this.#ttl / 1000} s)`,
      )
      throw this.#lost
    }
  }

  #lose(why: string): void {
    this.#lost ??= new IngestLeaseLostError(
      `Lost the ingest lease on '${this.dataset}': ${why}; stopped before the next commit`,
      'run the same ingest again: it resumes from the commits made, without duplicates',
    )
    this.#stop()
    this.#controller.abort(this.#lost)
  }

  async #renew(): Promise<void> {
    if (this.#lost || this.#timer === undefined) return
    const started = this.#now()
    const holder = { ...this.#holder, renewed: started, expires: started + this.#ttl }
    try {
      this.#entry = await this.#store.updateRef(leaseRef(this.dataset), encode(holder), this.#entry.version)
      this.#holder = holder
      this.#validUntil = started + this.#ttl
    } catch (error) {
      if (isCode(error, 'ERR_CAS_REF_CONFLICT') || isCode(error, 'ERR_CAS_REF_NOT_FOUND')) {
        const now = await this.#store.readRef(leaseRef(this.dataset)).catch(() => undefined)
        const other = now === undefined ? undefined : decodeLease(now.value)
        this.#lose(other === undefined ? 'it was deleted' : `it was taken over by ${describeHolder(other)}`)
      }
      // Anything else (a timeout, a lost connection): try again at the next tick; assertHeld
      // stops the commits if the lease gets too old meanwhile.
    }
  }

  #stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer)
    this.#timer = undefined
  }

  /** Stop renewing and delete the lease if it is still ours. Never throws. */
  async release(): Promise<void> {
    this.#stop()
    await this.#renewing.catch(() => {})
    if (this.#lost) return
    try {
      await this.#store.deleteRef(leaseRef(this.dataset), this.#entry.version)
    } catch {
      // Taken over, or the store is unreachable: it expires on its own.
    }
  }
}

export function describeHolder(h: LeaseHolder): string {
  return `pid ${h.pid} on ${h.host}${h.acquired ? ` since ${new Date(h.acquired).toISOString()}` : ''}`
}

/**
 * Take the ingest lease of `dataset`: create it if absent; take it over if its holder's
 * lease has expired or its holder was a process of this host that is gone; otherwise wait
 * up to `waitMs` for it, then fail with `IngestLockedError` naming the holder.
 */
export async function acquireIngestLease(
  store: Store,
  dataset: string,
  options: LeaseOptions = {},
): Promise<IngestLease> {
  const ttl = options.ttlMs ?? DEFAULT_LEASE_TTL_MS
  const renewMs = options.renewMs ?? Math.floor(ttl / 4)
  const now = options.now ?? Date.now
  const name = leaseRef(dataset)
  const started = now()
  const token = randomBytes(9).toString('base64url')
  let waitedFor: string | undefined
  for (;;) {
    options.signal?.throwIfAborted()
    const at = now()
    const mine: LeaseHolder = {
      host: hostname(),
      pid: process.pid,
      token,
      command: options.command ?? '',
      acquired: at,
      renewed: at,
      expires: at + ttl,
    }
    const current = await store.readRef(name, options)
    try {
      if (current === undefined) {
        const entry = await store.createRef(name, encode(mine), options)
        return new IngestLease(store, dataset, entry, mine, ttl, now, at, renewMs)
      }
      const holder = decodeLease(current.value)
      const why =
        holder === undefined || holder.expires < at ? 'expired' : deadHere(holder) ? 'dead' : undefined
      if (why !== undefined) {
        // Compare-and-swap on the version we judged: of two takers, one wins.
        const entry = await store.updateRef(name, encode(mine), current.version, options)
        if (holder !== undefined) options.onTakeOver?.(holder, why)
        return new IngestLease(store, dataset, entry, mine, ttl, now, at, renewMs)
      }
      const waited = now() - started
      const waitMs = options.waitMs ?? 0
      if (waited >= waitMs) {
        throw new IngestLockedError(
          dataset,
          holder!,
          waitMs > 0
            ? `waited ${Math.round(waited / 1000)} s; it is still running, or its lease expires at ${new Date(holder!.expires).toISOString()}`
            : `run it again when that one is done, or wait for it (lease.waitMs; dreamdb ingest --wait) (its lease expires at ${new Date(holder!.expires).toISOString()} unless renewed)`,
        )
      }
      if (waitedFor !== holder!.token) {
        waitedFor = holder!.token
        options.onWait?.(holder!, dataset)
      }
      const poll = Math.min(
        options.pollMs ?? Math.min(1000, Math.max(10, ttl / 8)),
        waitMs - waited,
        Math.max(10, holder!.expires - at + 10),
      )
      await delay(poll, undefined, options.signal ? { signal: options.signal } : {})
    } catch (error) {
      // Another taker got there first: look again.
      if (isCode(error, 'ERR_CAS_REF_CONFLICT') || isCode(error, 'ERR_CAS_REF_NOT_FOUND')) continue
      throw error
    }
  }
}
