/**
 * The commit protocol: objects first (already stored by the caller), then the manifest,
 * then a compare-and-swap of the branch. A commit that loses the race re-reads the head
 * and rebases when the changes commute; a ref write whose answer was lost is found on the
 * branch afterwards instead of being applied twice (design/0003). The kinds of change live
 * in changes/; this module knows none of them.
 */
import { setTimeout as delay } from 'node:timers/promises'
import type { AbortOptions, Store } from '@dreamdb/cas'
import type { CID } from 'multiformats/cid'
import pLimit from 'p-limit'
import pRetry from 'p-retry'
import { type ApplyContext, type ChangeRequest, type PreparedChange, prepareChange } from './changes/index.js'
import { encodeRefTarget } from './codec.js'
import {
  CommitConflictError,
  CommitOutcomeUnknownError,
  MissingObjectError,
  RefNotFoundError,
  RetriesExhaustedError,
} from './errors.js'
import { checkFenced } from './gc.js'
import { checkMeta } from './meta.js'
import type { Change, CommitMeta, Manifest, RefTarget } from './model.js'
import type { NodeStore } from './tree.js'

export interface CommitOptions extends AbortOptions {
  message?: string
  /**
   * Structured metadata kept in the manifest beside the message (see `CommitMeta`); checked
   * before anything is read or written (InvalidMetaError naming the key).
   */
  meta?: CommitMeta
  /** How many times to rebase and retry after losing the race. @default 100 */
  maxAttempts?: number
  /**
   * Objects the caller's own puts have just written to this store (put events with
   * `stored: true`), such as the data objects of the buckets it appends: new objects, so the
   * commit does not ask the store about them again. Leave out dedup hits: such an object may
   * be old garbage a GC is judging right now (design/0008), and the check is what stops a
   * commit naming one the GC deleted. Every other object the change names is checked and
   * freshened, one request each, between two reads of the GC's sweep fence (waiting while a
   * sweep is on).
   */
  written?: Iterable<CID>
  /**
   * A caller's own test of the commits this one lands after: a reason (a string) makes them
   * conflict, and the commit fails with ERR_MANIFEST_CONFLICT, nothing landed. Every commit on
   * the branch after `since` and under this one is tested, whichever head this one was
   * prepared on and however often it rebased, because the test runs in the same walk as the
   * compare-and-swap's own checks. For a writer whose right to commit is something the
   * branch's swap does not cover: an ingest whose shard claim may have been taken over while
   * it was stopped tests for a commit of the same rows (design/0006).
   */
  conflictsWith?: (theirs: Manifest, cid: CID) => string | undefined
  /**
   * With `conflictsWith`: the commit of the branch the test starts after (the head the caller
   * last read: what it knows of). `null`: the branch's whole history. Left out: the head the
   * commit starts from. A `since` the branch no longer holds (it was reset) is a conflict.
   */
  since?: CID | null
  /**
   * The clock, ms since the epoch, by which the commit judges how old its check of those
   * objects is (redone after 20 minutes) and how long it has waited on a GC's sweep (tests:
   * time passing without waiting for it). @default Date.now
   */
  now?: () => number
}

export interface CommitResult {
  manifest: CID
  timeline: CID | null
  /** The head this commit landed on (after any rebase). */
  parent: CID
  /** 1 when the first attempt won. */
  attempts: number
}

/** A branch as a commit sees it: where it points, the version to swap against, its manifest. */
export interface BranchHead {
  target: RefTarget
  version: string
  generation: number
  manifest: Manifest
}

/** What the protocol needs from the repository it commits in. */
export interface CommitHost {
  store: Store
  nodes: NodeStore
  fanout: number
  maxAttempts: number
  loadManifest(cid: CID, options: AbortOptions): Promise<Manifest>
  putManifest(manifest: Manifest, options: AbortOptions): Promise<CID>
  /** The branch as stored now (one ref read, and its manifest unless cached). */
  readBranch(name: string, options: AbortOptions): Promise<BranchHead>
  /**
   * The branch as this repository last read or moved it, if it remembers: the first
   * attempt swaps against it without reading the ref (a stale one costs a failed swap).
   */
  knownBranch(name: string, options: AbortOptions): Promise<BranchHead | undefined>
  /**
   * Remember where the branch is after this commit moved it, and whether the commit met
   * another writer (then the next commit reads the branch first instead of trusting it).
   */
  moved(name: string, head: Omit<BranchHead, 'manifest'>, contended: boolean): void
}

const CONCURRENT_CHECKS = 16

/**
 * A check older than this is done again before the ref write: the objects it freshened must
 * still be young to any GC when the commit lands (design/0008: within the grace period less
 * 10 minutes; the grace is at least an hour).
 */
const RECHECK_AFTER_MS = 20 * 60_000

/**
 * How many manifests a commit walks back from a new head, looking for its own manifest and
 * checking that the others commute. A writer that falls further behind between two of its
 * own attempts stops with CommitOutcomeUnknownError instead of guessing.
 */
const MAX_CATCH_UP = 10_000

/** Ref writes in a row that may fail without an answer while the branch stays where it was. */
const MAX_UNKNOWN_RETRIES = 3

/**
 * Errors of a ref write that leave its outcome open: the request may have been applied.
 * `@dreamdb/cas` already re-reads the ref after such an error and reports success when it
 * finds its own write; these reach a commit when that re-read found another writer's
 * commit on top (or failed).
 */
const OUTCOME_UNKNOWN = new Set([
  'ERR_CAS_STORAGE',
  'ERR_CAS_TIMEOUT',
  'ERR_CAS_UNREACHABLE',
  'ERR_CAS_OUTCOME_UNKNOWN',
])

/** Every attempt lost the race (`lost`: the last conflict). */
class OutOfAttempts extends Error {
  constructor(readonly lost: unknown) {
    super('out of attempts')
  }
}

/** Where a commit stands, as the walk back from a new head needs it. */
interface Progress {
  refName: string
  /** The head the change was prepared on. */
  base: CID
  /** The newest head already checked to commute with the change. */
  checkedUpTo: CID
  mine: PreparedChange
  /** Every manifest this commit tried to move the branch to, by CID. */
  tried: Map<string, Landed>
  /** The caller's own test of theirs (`CommitOptions.conflictsWith`). */
  test: CommitOptions['conflictsWith']
}

type Landed = { cid: CID; timeline: CID | null; parent: CID }

const codeOf = (error: unknown): string | undefined => (error as { code?: string } | null)?.code

/** Apply `request` to branch `refName` (see `Repository.commit`). */
export async function commit(
  host: CommitHost,
  refName: string,
  request: ChangeRequest,
  options: CommitOptions = {},
): Promise<CommitResult> {
  const { signal, now = Date.now } = options
  const meta = checkMeta(options.meta)
  const maxAttempts = options.maxAttempts ?? host.maxAttempts
  const { conflictsWith: test } = options
  const testing = test !== undefined && options.since !== undefined
  // A test from `since` starts from the branch as stored: a remembered head may be older
  // than `since` (another writer's commits the caller has read), and the walk back from it
  // would never meet `since`.
  const known = testing ? undefined : await host.knownBranch(refName, options)
  // Swapping against a remembered head that turns out stale costs one failed write; that
  // attempt is then not counted and the commit starts over from the branch as it is.
  let remembered = known !== undefined
  let head = known ?? (await host.readBranch(refName, options))
  // The commits between the caller's `since` and the head this commit is prepared on: the
  // walks after a lost race cover only those above that head.
  if (testing) await testSince(host, refName, head, options.since!, test!, options)
  let prepared = prepareChange(request, head.manifest, Date.now())
  const written = new Set([...(options.written ?? [])].map(String))
  const toCheck = () => prepared.objects.filter((o) => !written.has(o.cid.toString()))
  await assertObjectsStored(host, toCheck(), options)
  let checkedAt = now()
  let base = head.target.manifest
  // Manifests already checked to commute with this change: a retry walks back only to
  // the head it saw last time, not all the way to the base.
  let checkedUpTo = base
  // Every manifest this commit tried to move the branch to. A ref write whose answer was
  // lost may have landed; before rebasing, the walk back from the new head looks for them.
  const tried = new Map<string, Landed>()
  let unknownInARow = 0
  let attempts = 0
  // Whether a remembered head turned out stale (another writer is on this branch).
  let metOthers = false
  let started = 0
  // Whether the attempt failed in its ref write (the only failure tried again).
  let writing = false
  const context: ApplyContext = { ...options, nodes: host.nodes, fanout: host.fanout }
  const progress = (): Progress => ({ refName, base, checkedUpTo, mine: prepared, tried, test })

  const attempt = async (): Promise<CommitResult> => {
    signal?.throwIfAborted()
    attempts++
    started = Date.now()
    writing = false
    if (!head.target.manifest.equals(checkedUpTo)) {
      const landed = await catchUp(host, progress(), head, options)
      if (landed !== undefined)
        return {
          manifest: landed.cid,
          timeline: landed.timeline,
          parent: landed.parent,
          attempts: attempts - 1,
        }
      checkedUpTo = head.target.manifest
    }
    if (now() - checkedAt > RECHECK_AFTER_MS) {
      await assertObjectsStored(host, toCheck(), options)
      checkedAt = now()
    }
    const next = await nextManifest(prepared, head, context, options.message, meta)
    const cid = await host.putManifest(next, options)
    tried.set(cid.toString(), { cid, timeline: next.timeline, parent: head.target.manifest })
    const target: RefTarget = { kind: 'branch', manifest: cid, timeline: next.timeline }
    writing = true
    // Swap against the entry as read: the store need not read the ref again first.
    const expected = { version: head.version, generation: head.generation }
    const entry = await host.store.updateRef(refName, encodeRefTarget(target), expected, options)
    host.moved(
      refName,
      { target, version: entry.version, generation: entry.generation },
      metOthers || attempts > 1,
    )
    return { manifest: cid, timeline: next.timeline, parent: head.target.manifest, attempts }
  }

  /** Between attempts: decide from the error whether and how to try again (or throw). */
  const afterFailure = async (error: unknown): Promise<void> => {
    const code = codeOf(error)
    const wasRemembered = remembered
    remembered = false
    if (!writing) throw error
    if (code === 'ERR_CAS_REF_NOT_FOUND') throw new RefNotFoundError(refName, host.store.url)
    if (code === 'ERR_CAS_REF_CONFLICT') {
      unknownInARow = 0
      if (wasRemembered) {
        // The remembered head was stale: the swap was refused, so nothing landed. Start
        // over as a fresh commit would, validating against the branch as it is.
        head = await host.readBranch(refName, options)
        prepared = prepareChange(request, head.manifest, Date.now())
        base = checkedUpTo = head.target.manifest
        tried.clear()
        attempts--
        metOthers = true
        return
      }
      if (attempts >= maxAttempts) throw new OutOfAttempts(error)
      await backOff()
      head = await host.readBranch(refName, options)
      return
    }
    if (
      signal?.aborted ||
      !OUTCOME_UNKNOWN.has(code ?? '') ||
      (error as { requestSent?: boolean }).requestSent === false
    ) {
      // Aborted, refused for a reason that is certain, or never sent: nothing landed.
      throw error
    }
    // The write may or may not have landed. Read the branch back: the walk at the top of
    // the next attempt finds our manifest if it is there; if the branch has not moved,
    // the change is tried again (a few times, then the caller is told).
    unknownInARow++
    const last = [...tried.values()].pop()!.cid.toString()
    let reread: BranchHead
    try {
      reread = await host.readBranch(refName, options)
    } catch (readError) {
      if (signal?.aborted) throw signal.reason
      throw new CommitOutcomeUnknownError(
        refName,
        last,
        `the ref write failed (${(error as Error).message}) and reading the branch back failed too (${(readError as Error).message})`,
        { cause: error },
      )
    }
    if (
      reread.target.manifest.equals(checkedUpTo) &&
      (unknownInARow > MAX_UNKNOWN_RETRIES || attempts >= maxAttempts)
    ) {
      throw new CommitOutcomeUnknownError(
        refName,
        last,
        `${unknownInARow} ref writes in a row failed without an answer (${(error as Error).message})`,
        { cause: error },
      )
    }
    head = reread
    if (!head.target.manifest.equals(checkedUpTo)) return
    await backOff()
    head = await host.readBranch(refName, options)
  }

  // Back off for a random time scaled by how long an attempt takes here, so that
  // contenders spread over a window that fits them instead of colliding again.
  const backOff = async (): Promise<void> => {
    const attemptMs = Math.max(1, Date.now() - started)
    await delay(
      Math.random() * attemptMs * 2 ** Math.min(attempts, 5),
      undefined,
      signal ? { signal } : {},
    ).catch((error: unknown) => {
      signal?.throwIfAborted()
      throw error
    })
  }

  try {
    return await pRetry(attempt, {
      // afterFailure decides: it throws what ends the commit, OutOfAttempts included
      // (attempts that start over from a stale remembered head are not counted).
      retries: Number.POSITIVE_INFINITY,
      // The wait is ours (backOff, scaled to this store), taken in afterFailure.
      minTimeout: 0,
      onFailedAttempt: ({ error }) => afterFailure(error),
      // No signal here: p-retry would turn a commit that landed just as the signal fired
      // into an abort. Each attempt and each wait checks the signal itself.
    })
  } catch (error) {
    if (!(error instanceof OutOfAttempts)) throw error
    // The last write may be the one that landed (a lost answer, then a 412 against our
    // own write): look before reporting failure.
    const landed = await landedAfterAll(host, progress(), options)
    if (landed !== undefined)
      return { manifest: landed.cid, timeline: landed.timeline, parent: landed.parent, attempts }
    throw new RetriesExhaustedError(refName, attempts, { cause: error.lost })
  }
}

/** The next manifest: the change applied on `head`, with this commit's message and meta. */
async function nextManifest(
  prepared: PreparedChange,
  head: BranchHead,
  context: ApplyContext,
  message: string | undefined,
  meta: CommitMeta | undefined,
): Promise<Manifest> {
  // The head's meta described the head's commit, not this one.
  const { meta: _theirs, ...kept } = head.manifest
  const { merged, ...update } = await prepared.apply(head.manifest, context)
  const parents = merged === undefined ? [head.target.manifest] : [head.target.manifest, merged]
  const next: Manifest = { ...kept, ...update, parents, timestamp: Date.now() }
  if (message !== undefined) next.message = message
  if (meta !== undefined) next.meta = meta
  return next
}

async function assertObjectsStored(
  host: CommitHost,
  objects: { cid: CID; path: string }[],
  options: CommitOptions,
): Promise<void> {
  if (objects.length === 0) return
  const limit = pLimit(CONCURRENT_CHECKS)
  const missing = await checkFenced(
    host.store,
    objects,
    (cid) => limit(() => host.store.has(cid, { ...options, freshen: true })),
    options,
  )
  const first = missing[0] === undefined ? undefined : objects[missing[0]]
  if (first !== undefined) throw new MissingObjectError(first.cid.toString(), first.path, host.store.url)
}

/**
 * After losing a race (or not hearing back), walk back parent by parent from the new head
 * to the head this commit tried last (`checkedUpTo`, at first the base). History is linear
 * per branch, so if one of this commit's own manifests (`tried`) landed, it is on that
 * path: then the commit is done and is returned, and nothing is rebased. Otherwise every
 * change on the path must commute with this one. The walk is bounded by the head tried
 * last (where one of ours would sit directly on top) and by MAX_CATCH_UP manifests.
 */
async function catchUp(
  host: CommitHost,
  { refName, base, checkedUpTo, mine, tried, test }: Progress,
  head: BranchHead,
  options: AbortOptions,
): Promise<Landed | undefined> {
  let cursor: CID = head.target.manifest
  let manifest = head.manifest
  const conflict = (reason: string): never => {
    throw new CommitConflictError(refName, base.toString(), head.target.manifest.toString(), reason)
  }
  const theirs: { change: Change; reason: string | undefined }[] = []
  for (let steps = 0; !cursor.equals(checkedUpTo); steps++) {
    const ours = tried.get(cursor.toString())
    if (ours !== undefined) return ours
    if (steps >= MAX_CATCH_UP) {
      const last = [...tried.values()].pop()
      throw new CommitOutcomeUnknownError(
        refName,
        last?.cid.toString() ?? 'none',
        `the branch moved by more than ${MAX_CATCH_UP} commits since this commit last read it`,
      )
    }
    theirs.push({ change: manifest.change, reason: test?.(manifest, cursor) })
    const parent = manifest.parents[0]
    if (parent === undefined) conflict('the branch was reset to an unrelated history')
    cursor = parent!
    manifest = await host.loadManifest(cursor, options)
  }
  for (const { change, reason: theirReason } of theirs) {
    // A restore replaces the whole state (schema included): no change prepared before it
    // can be assumed to fit the state it brought back.
    const reason =
      theirReason ??
      (change.kind === 'restore'
        ? 'the branch was restored to another state concurrently'
        : mine.conflict(change))
    if (reason !== undefined) conflict(reason)
  }
  return undefined
}

/**
 * The caller's test (`CommitOptions.conflictsWith`) of every commit from `head` back to
 * `since` (exclusive; `null`: to the first commit), the ones a commit prepared on `head`
 * does not walk over again. Throws the conflict the test names.
 */
async function testSince(
  host: CommitHost,
  refName: string,
  head: BranchHead,
  since: CID | null,
  test: NonNullable<CommitOptions['conflictsWith']>,
  options: AbortOptions,
): Promise<void> {
  let cursor: CID | undefined = head.target.manifest
  let manifest = head.manifest
  const conflict = (reason: string): never => {
    throw new CommitConflictError(
      refName,
      (since ?? 'none').toString(),
      head.target.manifest.toString(),
      reason,
    )
  }
  for (let steps = 0; cursor !== undefined && !(since !== null && cursor.equals(since)); steps++) {
    if (steps >= MAX_CATCH_UP)
      conflict(`the branch moved by more than ${MAX_CATCH_UP} commits since ${since}`)
    const reason = test(manifest, cursor)
    if (reason !== undefined) conflict(reason)
    cursor = manifest.parents[0]
    if (cursor !== undefined) manifest = await host.loadManifest(cursor, options)
  }
  if (cursor === undefined && since !== null) conflict(`the branch no longer holds ${since}`)
}

/** After the last attempt: is one of ours on the branch after all? */
async function landedAfterAll(
  host: CommitHost,
  progress: Progress,
  options: AbortOptions,
): Promise<Landed | undefined> {
  const head = await host.readBranch(progress.refName, options)
  if (head.target.manifest.equals(progress.checkedUpTo)) return undefined
  try {
    return await catchUp(host, progress, head, options)
  } catch (error) {
    if (codeOf(error) === CommitConflictError.code) return undefined
    throw error
  }
}
