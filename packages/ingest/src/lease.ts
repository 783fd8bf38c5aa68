/**
 * Leases and shard claims of ingest (design/0006): refs of the store that name a holder and
 * when it expires, moved only by the store's compare-and-swap (taken with create-if-absent,
 * renewed and taken over with update-if-unchanged, released with delete-if-unchanged), so
 * two holders can never both believe they hold one, on a folder or on S3, in one process or
 * on two machines.
 *
 * - A **shard claim**, `_dreamdb/leases/ingest-shards/<dataset key>/<shard key>`, is what an
 *   ingest holds while it writes the rows of one shard; any number of ingests of a dataset
 *   run at once, each on the shards it claimed ({@link takeShardClaim}).
 * - The **ingest lease**, `_dreamdb/leases/ingest/<dataset>`, is what ingests before issue
 *   #13 took for a whole dataset ({@link acquireIngestLease}). Ingest no longer takes it; it
 *   only waits while a live one is held, since such an ingest does not know claims.
 *
 * The holder renews what it holds every `ttl / 4`; a holder that stops renewing (killed, its
 * machine gone) loses it when it expires, and a holder on this host whose process is gone
 * loses it at once. Before each commit the holder checks that its last renewal is recent
 * enough (`ttl / 2`), so that a process paused for longer than that (a laptop lid, a stopped
 * container) stops instead of committing beside the ingest that took its claim over.
 */
import { createHash, randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { setTimeout as delay } from 'node:timers/promises'
import type { RefEntry, Store } from '@dreamdb/cas'
import { IngestLeaseLostError, IngestLockedError } from './errors.js'

export const LEASE_PREFIX = '_dreamdb/leases/ingest/'
/** Where shard claims live (not under LEASE_PREFIX: a lease ref there is a file, not a folder). */
export const CLAIM_PREFIX = '_dreamdb/leases/ingest-shards/'
const FORMAT = 'dreamdb.ingest-lease/1'
const CLAIM_FORMAT = 'dreamdb.ingest-claim/1'
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

const key16 = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 16)
/**
 * The claim ref of one shard of a dataset. Both names are hashed: a dataset name may have
 * up to 200 characters and `/`s (`a` and `a/b` must not collide, nor overflow the ref name
 * limit); the claim's value names both in full.
 */
export const claimRef = (dataset: string, shard: string): string =>
  `${CLAIM_PREFIX}${key16(dataset)}/${key16(shard)}`

/** What a claim says besides its holder. */
interface ClaimSubject {
  dataset: string
  shard: string
}

function encode(holder: LeaseHolder, subject?: ClaimSubject): Uint8Array {
  return new TextEncoder().encode(
    JSON.stringify(
      subject === undefined ? { format: FORMAT, ...holder } : { format: CLAIM_FORMAT, ...subject, ...holder },
    ),
  )
}

/** A lease's holder, or `undefined` for a value that is not one (then it is treated as expired). */
export function decodeLease(bytes: Uint8Array): LeaseHolder | undefined {
  return decodeHolder(bytes, FORMAT)
}

/** A shard claim's holder, or `undefined` for a value that is not one (then it is treated as expired). */
export function decodeClaim(bytes: Uint8Array): LeaseHolder | undefined {
  return decodeHolder(bytes, CLAIM_FORMAT)
}

function decodeHolder(bytes: Uint8Array, format: string): LeaseHolder | undefined {
  try {
    const v = JSON.parse(new TextDecoder().decode(bytes)) as Partial<LeaseHolder> & { format?: string }
    if (
      v.format !== format ||
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

/** What a held ref is, for the holder record and the messages when it is lost. */
interface Held {
  ref: string
  subject: ClaimSubject | undefined
  /** `the ingest lease on 'x'`, `the claim on shard s of 'x'`. */
  what: string
}

/** A lease or a shard claim this process holds: renewed in the background until released. */
export class IngestLease {
  readonly dataset: string
  /** The shard, for a shard claim. */
  readonly shard: string | undefined
  readonly #store: Store
  readonly #held: Held
  readonly #ttl: number
  readonly #now: () => number
  #entry: RefEntry
  #holder: LeaseHolder
  /** Local time by which the lease is surely still ours: the start of the last renewal + ttl. */
  #validUntil: number
  #timer: NodeJS.Timeout | undefined
  #renewing: Promise<void> = Promise.resolve()
  #lost: IngestLeaseLostError | undefined
  #released = false
  readonly #controller = new AbortController()

  /** @internal */
  constructor(
    store: Store,
    dataset: string,
    held: Held,
    entry: RefEntry,
    holder: LeaseHolder,
    timing: { ttl: number; now: () => number; since: number; renewMs: number },
  ) {
    this.#store = store
    this.dataset = dataset
    this.shard = held.subject?.shard
    this.#held = held
    this.#entry = entry
    this.#holder = holder
    this.#ttl = timing.ttl
    this.#now = timing.now
    this.#validUntil = timing.since + timing.ttl
    this.#timer = setInterval(
      () => {
        this.#renewing = this.#renewing.then(() => this.#renew()).catch(() => {})
      },
      Math.max(10, timing.renewMs),
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
        `its last renewal is ${Math.round((this.#now() - (this.#validUntil - this.#ttl)) / 1000)} s old (it lives ${this.#ttl / 1000} s)`,
      )
      throw this.#lost
    }
  }

  /**
   * Give the lease up as lost for a reason found elsewhere than its renewals (a commit found
   * its rows already committed by the ingest that took it over): it stops as on a failed
   * renewal. The error to throw.
   */
  lose(why: string): IngestLeaseLostError {
    this.#lose(why)
    return this.#lost!
  }

  #lose(why: string): void {
    this.#lost ??= new IngestLeaseLostError(
      `Lost ${this.#held.what}: ${why}; stopped before the next commit`,
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
      this.#entry = await this.#store.updateRef(
        this.#held.ref,
        encode(holder, this.#held.subject),
        this.#entry.version,
      )
      this.#holder = holder
      this.#validUntil = started + this.#ttl
    } catch (error) {
      if (isCode(error, 'ERR_CAS_REF_CONFLICT') || isCode(error, 'ERR_CAS_REF_NOT_FOUND')) {
        const now = await this.#store.readRef(this.#held.ref).catch(() => undefined)
        const other = now === undefined ? undefined : decodeHolder(now.value, formatOf(this.#held))
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

  /** Stop renewing and delete the lease if it is still ours. Never throws; a second call does nothing. */
  async release(): Promise<void> {
    if (this.#released) return
    this.#released = true
    this.#stop()
    await this.#renewing.catch(() => {})
    if (this.#lost) return
    try {
      await this.#store.deleteRef(this.#held.ref, this.#entry.version)
    } catch {
      // Taken over, or the store is unreachable: it expires on its own.
    }
  }
}

const formatOf = (held: Held) => (held.subject === undefined ? FORMAT : CLAIM_FORMAT)

export function describeHolder(h: LeaseHolder): string {
  return `pid ${h.pid} on ${h.host}${h.acquired ? ` since ${new Date(h.acquired).toISOString()}` : ''}`
}

/** Options of one attempt at a lease or claim. */
type TakeOptions = Pick<LeaseOptions, 'ttlMs' | 'renewMs' | 'command' | 'signal' | 'onTakeOver' | 'now'> & {
  /**
   * Try to create the ref before reading it: for a taker that has seen no other holder at
   * work (an ingest alone on its dataset), whose claims are nearly always of free shards.
   */
  createFirst?: boolean
}

/**
 * One look at a lease or claim: create it if absent; take it over if its holder's lease
 * has expired or its holder was a process of this host that is gone; otherwise say who
 * holds it. A lost compare-and-swap (another taker was first) looks again.
 */
async function tryTake(
  store: Store,
  dataset: string,
  held: Held,
  token: string,
  options: TakeOptions,
): Promise<{ lease: IngestLease } | { busy: LeaseHolder }> {
  const ttl = options.ttlMs ?? DEFAULT_LEASE_TTL_MS
  const renewMs = options.renewMs ?? Math.floor(ttl / 4)
  const now = options.now ?? Date.now
  // Where no one else is likely to hold it, create-if-absent first and read the ref only
  // when that is refused: one request less per claim (the same compare-and-swap). A refused
  // create costs more than a read (the store reads the ref back), so not by default.
  let create = options.createFirst === true
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
    const timing = { ttl, now, since: at, renewMs }
    const signal = options.signal ? { signal: options.signal } : {}
    if (create) {
      create = false
      try {
        const entry = await store.createRef(held.ref, encode(mine, held.subject), signal)
        return { lease: new IngestLease(store, dataset, held, entry, mine, timing) }
      } catch (error) {
        // Held, or left behind by a holder that is gone: judged below.
        if (!isCode(error, 'ERR_CAS_REF_CONFLICT')) throw error
      }
    }
    const current = await store.readRef(held.ref, signal)
    try {
      if (current === undefined) {
        const entry = await store.createRef(held.ref, encode(mine, held.subject), signal)
        return { lease: new IngestLease(store, dataset, held, entry, mine, timing) }
      }
      const holder = decodeHolder(current.value, formatOf(held))
      const why =
        holder === undefined || holder.expires < at ? 'expired' : deadHere(holder) ? 'dead' : undefined
      if (why === undefined) return { busy: holder! }
      // Compare-and-swap on the version we judged: of two takers, one wins.
      const entry = await store.updateRef(held.ref, encode(mine, held.subject), current.version, signal)
      if (holder !== undefined) options.onTakeOver?.(holder, why)
      return { lease: new IngestLease(store, dataset, held, entry, mine, timing) }
    } catch (error) {
      // Another taker got there first: look again.
      if (isCode(error, 'ERR_CAS_REF_CONFLICT') || isCode(error, 'ERR_CAS_REF_NOT_FOUND')) continue
      throw error
    }
  }
}

/**
 * Claim one shard of `dataset` for this ingest: the claim, or who holds it (a live ingest
 * that is writing that shard). Claims of the same holder share `token`.
 */
export async function takeShardClaim(
  store: Store,
  dataset: string,
  shard: string,
  token: string,
  options: TakeOptions = {},
): Promise<{ lease: IngestLease } | { busy: LeaseHolder }> {
  return await tryTake(
    store,
    dataset,
    {
      ref: claimRef(dataset, shard),
      subject: { dataset, shard },
      what: `the claim on ${shard} of '${dataset}'`,
    },
    token,
    options,
  )
}

/** A random token for a holder (a run): the same host and pid in a later run is another holder. */
export const holderToken = (): string => randomBytes(9).toString('base64url')

/**
 * Who holds the ingest lease of `dataset` (an ingest from before shard claims), if it is
 * live: not expired, and not a process of this host that is gone.
 */
export async function liveLease(
  store: Store,
  dataset: string,
  options: { signal?: AbortSignal; now?: () => number } = {},
): Promise<LeaseHolder | undefined> {
  const current = await store.readRef(leaseRef(dataset), options.signal ? { signal: options.signal } : {})
  if (current === undefined) return undefined
  const holder = decodeLease(current.value)
  if (holder === undefined || holder.expires < (options.now ?? Date.now)() || deadHere(holder))
    return undefined
  return holder
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
  const now = options.now ?? Date.now
  const started = now()
  const token = holderToken()
  const held: Held = { ref: leaseRef(dataset), subject: undefined, what: `the ingest lease on '${dataset}'` }
  let waitedFor: string | undefined
  for (;;) {
    const taken = await tryTake(store, dataset, held, token, options)
    if ('lease' in taken) return taken.lease
    const holder = taken.busy
    const at = now()
    const waited = at - started
    const waitMs = options.waitMs ?? 0
    if (waited >= waitMs) {
      throw new IngestLockedError(
        dataset,
        holder,
        waitMs > 0
          ? `waited ${Math.round(waited / 1000)} s; it is still running, or its lease expires at ${new Date(holder.expires).toISOString()}`
          : `run it again when that one is done, or wait for it (lease.waitMs; dreamdb ingest --wait) (its lease expires at ${new Date(holder.expires).toISOString()} unless renewed)`,
      )
    }
    if (waitedFor !== holder.token) {
      waitedFor = holder.token
      options.onWait?.(holder, dataset)
    }
    const poll = Math.min(
      options.pollMs ?? Math.min(1000, Math.max(10, ttl / 8)),
      waitMs - waited,
      Math.max(10, holder.expires - at + 10),
    )
    await delay(poll, undefined, options.signal ? { signal: options.signal } : {})
  }
}
