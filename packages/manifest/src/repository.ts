import { setTimeout as delay } from 'node:timers/promises'
import type { AbortOptions, Store } from '@dreamdb/cas'
import { CID } from 'multiformats/cid'
import { AnchorMinter, DEFAULT_ANCHOR_BLOCK } from './anchors.js'
import { DAG_CBOR, decodeManifest, decodeRefTarget, encodeManifest, encodeRefTarget } from './codec.js'
import {
  CommitConflictError,
  CommitOutcomeUnknownError,
  InvalidChangeError,
  InvalidSchemaError,
  MissingObjectError,
  RefExistsError,
  RefNotFoundError,
  RetriesExhaustedError,
  SnapshotImmutableError,
  SnapshotLabelTakenError,
} from './errors.js'
import { type DeleteRefOptions, deleteRef } from './lifecycle.js'
import { checkMeta } from './meta.js'
import type {
  Bucket,
  Change,
  CommitMeta,
  Field,
  FieldObject,
  Layer,
  Manifest,
  RefKind,
  RefTarget,
  Schema,
  TreeChild,
} from './model.js'
import { assertUserRefName } from './names.js'
import {
  assertUniqueNames,
  type BucketInput,
  checkLayer,
  type FieldInput,
  normalizeBucket,
  normalizeField,
  normalizeSchema,
} from './schema.js'
import {
  assertSummary,
  DEFAULT_FANOUT,
  loadRoot,
  NodeStore,
  spliceTree,
  summarize,
  treeLeaves,
  type WalkOptions,
  walkTree,
} from './tree.js'

/** What a commit does. Data objects must already be in the store. */
export type ChangeRequest =
  | { kind: 'append'; buckets: BucketInput[] }
  | { kind: 'layer'; name: string; parent: string; field: FieldInput; segments: BucketInput[] }
  | { kind: 'schema'; add?: FieldInput[]; replace?: FieldInput[] }
  | { kind: 'compact'; start: number; count: number; replacement: BucketInput[] }
  /**
   * Re-encode one base field: its new definition, and for every bucket in timeline order
   * the objects that replace the field's objects (`<field>` and `<field>/<part>`). Records,
   * anchors and every other field stay as they are.
   */
  | { kind: 'migrate'; field: FieldInput; objects: Record<string, FieldObject>[] }

export interface CommitOptions extends AbortOptions {
  message?: string
  /**
   * Structured metadata kept in the manifest beside the message (see `CommitMeta`); checked
   * before anything is read or written (InvalidMetaError naming the key).
   */
  meta?: CommitMeta
  /** How many times to rebase and retry after losing the race. @default 100 */
  maxAttempts?: number
}

export interface CommitResult {
  manifest: CID
  timeline: CID | null
  /** The head this commit landed on (after any rebase). */
  parent: CID
  /** 1 when the first attempt won. */
  attempts: number
}

/** A ref resolved to its manifest. */
export interface Resolved {
  /** The ref name, when resolved from one. */
  name?: string
  target: RefTarget
  manifest: Manifest
}

/** What `snapshot` returns, as in the seed: `{ label, manifest, timeline }`. */
export interface SnapshotInfo {
  label: string
  manifest: string
  timeline: string | null
}

export interface RefInfo {
  name: string
  kind: RefKind
  manifest: CID
  timeline: CID | null
}

/** A ref as `scanRefs` lists it: readable with its manifest's counts, or damaged. */
export type RefStatus =
  | (RefInfo & { damaged: false; records: number; buckets: number })
  | {
      name: string
      damaged: true
      /** The code of the error reading it (`ERR_CAS_REF_CORRUPT`, `ERR_MANIFEST_CORRUPT`, ...). */
      code: string
      reason: string
    }

/** Errors that mean an object or ref is damaged (as opposed to unreachable or aborted). */
const DAMAGE = new Set([
  'ERR_CAS_REF_CORRUPT',
  'ERR_CAS_INTEGRITY',
  'ERR_CAS_NOT_FOUND',
  'ERR_MANIFEST_CORRUPT',
  'ERR_MANIFEST_INTEGRITY',
  'ERR_MANIFEST_UNSUPPORTED_VERSION',
])

/** Whether `error` says a stored object is damaged, missing or unreadable as DreamDB data. */
export function isDamage(error: unknown): boolean {
  return DAMAGE.has((error as { code?: string } | null)?.code ?? '')
}

function damagedRef(name: string, error: unknown): RefStatus {
  const e = error as { code: string; message: string }
  return { name, damaged: true, code: e.code, reason: e.message }
}

export interface RepositoryInit {
  /** Buckets per timeline leaf and children per node. @default 32 */
  fanout?: number
  /** Anchors reserved per counter update. @default 65536 */
  anchorBlock?: number
  /** @default 100 */
  maxAttempts?: number
}

/** A ref name, or the CID of a manifest. */
export type Source = string | CID

const CONCURRENT_CHECKS = 16

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

/**
 * Datasets, branches and snapshots on a `@dreamdb/cas` store. Every state is an immutable
 * manifest; a ref names one. Commits write objects first, then the manifest, then move
 * the branch by compare-and-swap, rebasing on the newest head when they lose a race and
 * the two changes commute.
 */
export class Repository {
  readonly store: Store
  readonly nodes: NodeStore
  readonly #fanout: number
  readonly #maxAttempts: number
  readonly #minter: AnchorMinter
  readonly #manifests = new Map<string, Manifest>()

  constructor(store: Store, init: RepositoryInit = {}) {
    this.store = store
    this.nodes = new NodeStore(store)
    this.#fanout = init.fanout ?? DEFAULT_FANOUT
    this.#maxAttempts = init.maxAttempts ?? 100
    this.#minter = new AnchorMinter(store, init.anchorBlock ?? DEFAULT_ANCHOR_BLOCK)
  }

  /** Reserve `count` consecutive anchors for new records; returns the first. */
  mintAnchors(count: number, options: AbortOptions = {}): Promise<bigint> {
    return this.#minter.mint(count, options)
  }

  /** Create a dataset: a branch named `name` at an empty manifest with this schema. */
  async createDataset(
    name: string,
    init: { schema: { fields: FieldInput[] }; message?: string; meta?: CommitMeta },
    options: AbortOptions = {},
  ): Promise<RefInfo> {
    assertUserRefName(name)
    const schema = normalizeSchema(init.schema)
    const meta = checkMeta(init.meta)
    // Refuse a taken name before the empty manifest is written, so a refused create
    // leaves nothing behind (a concurrent create can still win between the two).
    const taken = await this.readRef(name, options)
    if (taken !== undefined) throw new RefExistsError(name, taken.kind, taken.manifest.toString())
    const manifest: Manifest = {
      schema,
      timeline: null,
      layers: [],
      parents: [],
      message: init.message ?? `create dataset ${name}`,
      timestamp: Date.now(),
      change: { kind: 'create' },
      stats: { records: 0, buckets: 0, bytes: Object.fromEntries(schema.fields.map((f) => [f.name, 0])) },
      ...(meta === undefined ? {} : { meta }),
    }
    const cid = await this.#putManifest(manifest, options)
    return await this.#createRef(name, { kind: 'branch', manifest: cid, timeline: null }, options)
  }

  /** The ref's target, or `undefined` when there is none. One request. */
  async readRef(
    name: string,
    options: AbortOptions = {},
  ): Promise<(RefTarget & { version: string }) | undefined> {
    assertUserRefName(name)
    const entry = await this.store.readRef(name, options)
    return entry === undefined ? undefined : { ...decodeRefTarget(entry.value, name), version: entry.version }
  }

  /** A ref or manifest CID resolved to its manifest: two requests (ref, manifest). */
  async resolve(source: Source, options: AbortOptions = {}): Promise<Resolved> {
    const cid = CID.asCID(source)
    if (cid !== null) {
      const manifest = await this.loadManifest(cid, options)
      return { target: { kind: 'snapshot', manifest: cid, timeline: manifest.timeline }, manifest }
    }
    const name = source as string
    const target = await this.readRef(name, options)
    if (target === undefined) throw new RefNotFoundError(name, this.store.url)
    const { version: _, ...plain } = target
    return { name, target: plain, manifest: await this.loadManifest(target.manifest, options) }
  }

  async loadManifest(cid: CID, options: AbortOptions = {}): Promise<Manifest> {
    const key = cid.toString()
    const cached = this.#manifests.get(key)
    if (cached !== undefined) return cached
    const manifest = decodeManifest(await this.store.get(cid, options), key)
    this.#manifests.set(key, manifest)
    if (this.#manifests.size > 1024) this.#manifests.delete(this.#manifests.keys().next().value!)
    return manifest
  }

  /**
   * Pin the state of `from` under `label`: create-if-absent of an immutable ref. The same
   * label on the same manifest is a no-op; on another one it is SnapshotLabelTakenError.
   */
  async snapshot(label: string, from: Source, options: AbortOptions = {}): Promise<SnapshotInfo> {
    assertUserRefName(label)
    const target = await this.#targetOf(from, options)
    const info = (t: RefTarget): SnapshotInfo => ({
      label,
      manifest: t.manifest.toString(),
      timeline: t.timeline?.toString() ?? null,
    })
    try {
      await this.#createRef(label, { ...target, kind: 'snapshot' }, options)
      return info(target)
    } catch (error) {
      if ((error as { code?: string }).code !== RefExistsError.code) throw error
      const existing = (await this.readRef(label, options))!
      if (existing.kind === 'snapshot' && existing.manifest.equals(target.manifest)) return info(existing)
      if (existing.kind === 'snapshot') {
        throw new SnapshotLabelTakenError(label, existing.manifest.toString(), target.manifest.toString())
      }
      throw error
    }
  }

  /** Create a branch at the state of `from`: one small write. */
  async branch(name: string, from: Source, options: AbortOptions = {}): Promise<RefInfo> {
    assertUserRefName(name)
    const target = await this.#targetOf(from, options)
    return await this.#createRef(name, { ...target, kind: 'branch' }, options)
  }

  /**
   * Delete a branch by compare-and-swap: a commit that moves it meanwhile is not lost but a
   * `RefMovedError`. Snapshots need `deleteRef(repo, name, { force: true })` (lifecycle.ts).
   */
  async deleteBranch(name: string, options: Omit<DeleteRefOptions, 'kind' | 'force'> = {}): Promise<void> {
    await deleteRef(this, name, { ...options, kind: 'branch' })
  }

  /**
   * Datasets, branches and snapshots whose names start with `prefix`, in name order. A ref
   * whose body is damaged is left out (so one corrupt ref does not fail `log` or `inspect`
   * of the others); `scanRefs` lists it, marked as damaged.
   */
  async *listRefs(prefix = '', options: AbortOptions = {}): AsyncIterable<RefInfo> {
    for await (const entry of this.#refEntries(prefix, false, options)) {
      if (!entry.damaged)
        yield { name: entry.name, kind: entry.kind, manifest: entry.manifest, timeline: entry.timeline }
    }
  }

  /**
   * Every ref under `prefix` with the counts of its manifest, or marked `damaged` with the
   * error's code and message when its body or its manifest cannot be read as DreamDB
   * objects (corrupt, missing, written by a newer version). Other errors (I/O, abort) fail
   * the listing. One ref read and one manifest read per ref.
   */
  async *scanRefs(prefix = '', options: AbortOptions = {}): AsyncIterable<RefStatus> {
    yield* this.#refEntries(prefix, true, options)
  }

  async *#refEntries(prefix: string, withManifest: boolean, options: AbortOptions): AsyncIterable<RefStatus> {
    for await (const name of this.store.listRefs(prefix, options)) {
      if (name.startsWith('_')) continue
      let target: Awaited<ReturnType<Repository['readRef']>>
      try {
        target = await this.readRef(name, options)
      } catch (error) {
        if (!isDamage(error)) throw error
        yield damagedRef(name, error)
        continue
      }
      if (target === undefined) continue
      const info = { name, kind: target.kind, manifest: target.manifest, timeline: target.timeline }
      if (!withManifest) {
        yield { ...info, damaged: false, records: 0, buckets: 0 }
        continue
      }
      try {
        const manifest = await this.loadManifest(target.manifest, options)
        yield { ...info, damaged: false, records: manifest.stats.records, buckets: manifest.stats.buckets }
      } catch (error) {
        if (!isDamage(error)) throw error
        yield damagedRef(name, error)
      }
    }
  }

  /**
   * The buckets of a manifest's timeline in order (metadata only; no record is read). The
   * walk checks every node against its parent's summary and the root against the manifest's
   * counts, and refuses a node reached twice (IntegrityError).
   */
  async *buckets(
    manifest: Manifest,
    options: WalkOptions = {},
  ): AsyncIterable<{ position: number; bucket: Bucket }> {
    yield* walkTree(this.nodes, manifest.timeline, withExpect(manifest, options))
  }

  /**
   * The timeline's leaves (groups of up to `fanout` buckets) as summaries: record counts and
   * time bounds without reading the leaves. Iteration plans an epoch from these.
   */
  async *leaves(
    manifest: Manifest,
    options: WalkOptions = {},
  ): AsyncIterable<{ position: number; leaf: TreeChild }> {
    yield* treeLeaves(this.nodes, manifest.timeline, withExpect(manifest, options))
  }

  /**
   * The buckets of one leaf named by `leaves`. Given the leaf's summary (as `leaves` yields
   * it), the leaf must match it, or IntegrityError.
   */
  async leafBuckets(leaf: CID | TreeChild, options: AbortOptions = {}): Promise<Bucket[]> {
    const cid = CID.asCID(leaf) ?? (leaf as TreeChild).node
    const node = await this.nodes.load(cid, options)
    if (!('buckets' in node))
      throw new InvalidChangeError('leaf', `${cid} is a level-${node.level} node, not a leaf`)
    if (CID.asCID(leaf) === null) {
      assertSummary(cid.toString(), 'the summary its parent keeps', leaf as TreeChild, summarize(cid, node))
    }
    return node.buckets
  }

  /**
   * Apply a change to branch `refName`: objects first (they must already be stored), then
   * the manifest, then a compare-and-swap of the ref. Losing the race re-reads the head
   * and rebases when the changes commute; otherwise CommitConflictError.
   */
  async commit(refName: string, request: ChangeRequest, options: CommitOptions = {}): Promise<CommitResult> {
    const { signal } = options
    assertUserRefName(refName)
    const meta = checkMeta(options.meta)
    const maxAttempts = options.maxAttempts ?? this.#maxAttempts
    const first = await this.#branchHead(refName, options)
    const base = first.target.manifest
    const prepared = this.#prepare(request, first.manifest, Date.now())
    if (options.message !== undefined) prepared.message = options.message
    if (meta !== undefined) prepared.meta = meta
    await this.#assertObjectsStored(prepared.objects, options)
    let head = first
    // Manifests already checked to commute with this change: a retry walks back only to
    // the head it saw last time, not all the way to the base.
    let checkedUpTo = base
    // Every manifest this commit tried to move the branch to. A ref write whose answer was
    // lost may have landed; before rebasing, the walk back from the new head looks for them.
    const tried = new Map<string, { cid: CID; timeline: CID | null; parent: CID }>()
    let unknownInARow = 0
    for (let attempt = 1; ; attempt++) {
      signal?.throwIfAborted()
      const started = Date.now()
      if (!head.target.manifest.equals(checkedUpTo)) {
        const landed = await this.#catchUp(refName, base, checkedUpTo, head, prepared, tried, options)
        if (landed !== undefined) {
          return {
            manifest: landed.cid,
            timeline: landed.timeline,
            parent: landed.parent,
            attempts: attempt - 1,
          }
        }
        checkedUpTo = head.target.manifest
      }
      const next = await this.#apply(prepared, head.manifest, head.target.manifest, options)
      const cid = await this.#putManifest(next, options)
      tried.set(cid.toString(), { cid, timeline: next.timeline, parent: head.target.manifest })
      const target: RefTarget = { kind: 'branch', manifest: cid, timeline: next.timeline }
      try {
        await this.store.updateRef(refName, encodeRefTarget(target), head.version, options)
        return { manifest: cid, timeline: next.timeline, parent: head.target.manifest, attempts: attempt }
      } catch (error) {
        const code = (error as { code?: string }).code
        if (code === 'ERR_CAS_REF_NOT_FOUND') throw new RefNotFoundError(refName, this.store.url)
        if (code === 'ERR_CAS_REF_CONFLICT') {
          unknownInARow = 0
          if (attempt >= maxAttempts) {
            // The last write may be the one that landed (a lost answer, then a 412 against
            // our own write): look before reporting failure.
            const landed = await this.#landedAfterAll(refName, base, checkedUpTo, prepared, tried, options)
            if (landed !== undefined) {
              return {
                manifest: landed.cid,
                timeline: landed.timeline,
                parent: landed.parent,
                attempts: attempt,
              }
            }
            throw new RetriesExhaustedError(refName, attempt, { cause: error })
          }
        } else if (
          signal?.aborted ||
          !OUTCOME_UNKNOWN.has(code ?? '') ||
          (error as { requestSent?: boolean }).requestSent === false
        ) {
          // Aborted, refused for a reason that is certain, or never sent: nothing landed.
          throw error
        } else {
          // The write may or may not have landed. Read the branch back: the walk at the top of
          // the next attempt finds our manifest if it is there; if the branch has not moved,
          // the change is tried again (a few times, then the caller is told).
          unknownInARow++
          let reread: typeof head
          try {
            reread = await this.#branchHead(refName, options)
          } catch (readError) {
            if (signal?.aborted) throw signal.reason
            throw new CommitOutcomeUnknownError(
              refName,
              cid.toString(),
              `the ref write failed (${(error as Error).message}) and reading the branch back failed too (${(readError as Error).message})`,
              { cause: error },
            )
          }
          if (
            reread.target.manifest.equals(checkedUpTo) &&
            (unknownInARow > MAX_UNKNOWN_RETRIES || attempt >= maxAttempts)
          ) {
            throw new CommitOutcomeUnknownError(
              refName,
              cid.toString(),
              `${unknownInARow} ref writes in a row failed without an answer (${(error as Error).message})`,
              { cause: error },
            )
          }
          head = reread
          if (!head.target.manifest.equals(checkedUpTo)) continue
        }
      }
      // Back off for a random time scaled by how long an attempt takes here, so that
      // contenders spread over a window that fits them instead of colliding again.
      const attemptMs = Math.max(1, Date.now() - started)
      await delay(
        Math.random() * attemptMs * 2 ** Math.min(attempt, 5),
        undefined,
        signal ? { signal } : {},
      ).catch((error: unknown) => {
        signal?.throwIfAborted()
        throw error
      })
      head = await this.#branchHead(refName, options)
    }
  }

  /** After the last attempt lost: is one of ours on the branch after all? */
  async #landedAfterAll(
    refName: string,
    base: CID,
    checkedUpTo: CID,
    prepared: PreparedChange,
    tried: Map<string, { cid: CID; timeline: CID | null; parent: CID }>,
    options: AbortOptions,
  ) {
    const head = await this.#branchHead(refName, options)
    if (head.target.manifest.equals(checkedUpTo)) return undefined
    try {
      return await this.#catchUp(refName, base, checkedUpTo, head, prepared, tried, options)
    } catch (error) {
      if ((error as { code?: string }).code === CommitConflictError.code) return undefined
      throw error
    }
  }

  async #branchHead(name: string, options: AbortOptions) {
    const target = await this.readRef(name, options)
    if (target === undefined) throw new RefNotFoundError(name, this.store.url)
    if (target.kind === 'snapshot') throw new SnapshotImmutableError(name, 'commit to')
    const { version, ...plain } = target
    return { target: plain, version, manifest: await this.loadManifest(target.manifest, options) }
  }

  async #targetOf(from: Source, options: AbortOptions): Promise<RefTarget> {
    const cid = CID.asCID(from)
    if (cid !== null)
      return { kind: 'snapshot', manifest: cid, timeline: (await this.loadManifest(cid, options)).timeline }
    const target = await this.readRef(from as string, options)
    if (target === undefined) throw new RefNotFoundError(from as string, this.store.url)
    return { kind: target.kind, manifest: target.manifest, timeline: target.timeline }
  }

  async #createRef(name: string, target: RefTarget, options: AbortOptions): Promise<RefInfo> {
    try {
      await this.store.createRef(name, encodeRefTarget(target), options)
    } catch (error) {
      if ((error as { code?: string }).code !== 'ERR_CAS_REF_CONFLICT') throw error
      const existing = await this.readRef(name, options)
      throw new RefExistsError(name, existing?.kind ?? 'ref', existing?.manifest.toString() ?? 'unknown')
    }
    return { name, ...target }
  }

  async #putManifest(manifest: Manifest, options: AbortOptions): Promise<CID> {
    const bytes = encodeManifest(manifest)
    const cid = await this.store.put(bytes, { codec: DAG_CBOR, ...options })
    this.#manifests.set(cid.toString(), manifest)
    return cid
  }

  /** Validate the request against the head it starts from; nothing is written yet. */
  #prepare(request: ChangeRequest, head: Manifest, now: number): PreparedChange {
    if (typeof request !== 'object' || request === null)
      throw new InvalidChangeError('change', 'a change must be an object')
    const baseNames = head.schema.fields.map((f) => f.name)
    const { kind } = request
    if (request.kind === 'append') {
      if (!Array.isArray(request.buckets) || request.buckets.length === 0) {
        throw new InvalidChangeError('append.buckets', 'an append needs at least one bucket')
      }
      const buckets = request.buckets.map((b, i) =>
        normalizeBucket(b, `append.buckets[${i}]`, baseNames, { anchorsInline: true, now }),
      )
      return { kind: 'append', buckets, objects: objectsOf(buckets, 'append.buckets') }
    }
    if (request.kind === 'layer') {
      const field = checkLayer(head, request)
      if (!Array.isArray(request.segments) || request.segments.length === 0) {
        throw new InvalidChangeError(`layer '${field.name}'`, 'a layer needs at least one segment')
      }
      const segments = request.segments.map((s, i) =>
        normalizeBucket(s, `layer '${field.name}'.segments[${i}]`, [field.name], {
          anchorsInline: false,
          now,
        }),
      )
      return {
        kind: 'layer',
        layer: { name: field.name, parent: request.parent, field },
        segments,
        objects: objectsOf(segments, `layer '${field.name}'`),
      }
    }
    if (request.kind === 'schema') {
      const add = (request.add ?? []).map((f, i) => normalizeField(f, `schema.add[${i}]`))
      const replace = (request.replace ?? []).map((f, i) => normalizeField(f, `schema.replace[${i}]`))
      if (add.length + replace.length === 0)
        throw new InvalidChangeError('schema', 'nothing to add or replace')
      assertUniqueNames(
        [...baseNames, ...head.layers.map((l) => l.name), ...add.map((f) => f.name)],
        'schema.add',
      )
      for (const field of replace) {
        const current = head.schema.fields.find((f) => f.name === field.name)
        if (current === undefined)
          throw new InvalidSchemaError('schema.replace', `there is no field '${field.name}'`)
        if (current.family !== field.family) {
          throw new InvalidSchemaError(
            'schema.replace',
            `'${field.name}' is ${current.family}, not ${field.family}`,
          )
        }
      }
      const extra = [...add, ...replace].flatMap((f) =>
        f.family === 'embedding' ? [f.spatialIndex, f.compressor].filter((c): c is CID => c !== null) : [],
      )
      return { kind: 'schema', add, replace, objects: extra.map((cid) => ({ cid, path: 'schema' })) }
    }
    if (request.kind === 'compact') {
      const { start, count } = request
      if (!Number.isSafeInteger(start) || !Number.isSafeInteger(count) || start < 0 || count < 2) {
        throw new InvalidChangeError(
          'compact',
          `start ${start} and count ${count} must be integers, count >= 2`,
        )
      }
      if (start + count > head.stats.buckets) {
        throw new InvalidChangeError(
          'compact',
          `buckets [${start}, ${start + count}) pass the end (${head.stats.buckets})`,
        )
      }
      const replacement = request.replacement.map((b, i) =>
        normalizeBucket(b, `compact.replacement[${i}]`, baseNames, { anchorsInline: true, now }),
      )
      return {
        kind: 'compact',
        start,
        count,
        replacement,
        objects: objectsOf(replacement, 'compact.replacement'),
      }
    }
    if (request.kind === 'migrate') {
      const field = normalizeField(request.field, 'migrate.field')
      const current = head.schema.fields.find((f) => f.name === field.name)
      if (current === undefined)
        throw new InvalidSchemaError('migrate.field', `there is no base field '${field.name}'`)
      if (current.family !== field.family) {
        throw new InvalidSchemaError(
          'migrate.field',
          `'${field.name}' is ${current.family}, not ${field.family}`,
        )
      }
      if (!Array.isArray(request.objects) || request.objects.length !== head.stats.buckets) {
        throw new InvalidChangeError(
          'migrate.objects',
          `give the new objects of all ${head.stats.buckets} buckets, in order`,
        )
      }
      const replacements = request.objects.map(
        (entry, i) =>
          normalizeBucket(
            { records: 1, anchorMin: 0n, anchorMax: 0n, fields: entry },
            `migrate.objects[${i}]`,
            [field.name],
            {
              anchorsInline: false,
              now,
            },
          ).fields,
      )
      const extra =
        field.family === 'embedding'
          ? [field.spatialIndex, field.compressor].filter((c): c is CID => c !== null)
          : []
      return {
        kind: 'migrate',
        field,
        replacements,
        objects: [
          ...replacements.flatMap((fields, i) =>
            Object.entries(fields).map(([key, o]) => ({
              cid: o.cid,
              path: `migrate.objects[${i}]['${key}']`,
            })),
          ),
          ...extra.map((cid) => ({ cid, path: 'migrate.field' })),
        ],
      }
    }
    throw new InvalidChangeError('change', `unknown change kind ${JSON.stringify(kind)}`)
  }

  async #assertObjectsStored(objects: { cid: CID; path: string }[], options: AbortOptions): Promise<void> {
    for (let i = 0; i < objects.length; i += CONCURRENT_CHECKS) {
      const batch = objects.slice(i, i + CONCURRENT_CHECKS)
      const present = await Promise.all(batch.map((o) => this.store.has(o.cid, options)))
      const missing = batch.find((_, j) => !present[j])
      if (missing !== undefined)
        throw new MissingObjectError(missing.cid.toString(), missing.path, this.store.url)
    }
  }

  /**
   * After losing a race (or not hearing back), walk back parent by parent from the new head
   * to the head this commit tried last (`checkedUpTo`, at first the base). History is linear
   * per branch, so if one of this commit's own manifests (`tried`) landed, it is on that
   * path: then the commit is done and is returned, and nothing is rebased. Otherwise every
   * change on the path must commute with this one. The walk is bounded by the head tried
   * last (where one of ours would sit directly on top) and by MAX_CATCH_UP manifests.
   */
  async #catchUp(
    refName: string,
    base: CID,
    checkedUpTo: CID,
    head: { target: RefTarget; manifest: Manifest },
    mine: PreparedChange,
    tried: Map<string, { cid: CID; timeline: CID | null; parent: CID }>,
    options: AbortOptions,
  ): Promise<{ cid: CID; timeline: CID | null; parent: CID } | undefined> {
    let cursor: CID = head.target.manifest
    let manifest = head.manifest
    const conflict = (reason: string): never => {
      throw new CommitConflictError(refName, base.toString(), head.target.manifest.toString(), reason)
    }
    const theirs: Change[] = []
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
      theirs.push(manifest.change)
      const parent = manifest.parents[0]
      if (parent === undefined) conflict('the branch was reset to an unrelated history')
      cursor = parent!
      manifest = await this.loadManifest(cursor, options)
    }
    for (const change of theirs) {
      const reason = conflictBetween(mine, change)
      if (reason !== undefined) conflict(reason)
    }
    return undefined
  }

  /** Build the next manifest on top of `head` (the rebase is this function applied again). */
  async #apply(
    change: PreparedChange,
    head: Manifest,
    headCid: CID,
    options: AbortOptions,
  ): Promise<Manifest> {
    const now = Date.now()
    const bytes = { ...head.stats.bytes }
    const addBytes = (buckets: Bucket[]): void => {
      for (const bucket of buckets) {
        for (const [key, object] of Object.entries(bucket.fields)) {
          const owner = key.split('/')[0]!
          bytes[owner] = (bytes[owner] ?? 0) + object.bytes
        }
      }
    }
    // The head's meta described the head's commit, not this one.
    const { meta: _theirs, ...kept } = head
    const next: Manifest = {
      ...kept,
      parents: [headCid],
      timestamp: now,
      message: '',
      change: { kind: 'create' },
    }
    const root = await loadRoot(this.nodes, head.timeline, options)
    const total = root?.summary.buckets ?? 0
    const splice = { ...options, fanout: this.#fanout }
    switch (change.kind) {
      case 'append': {
        const updated = await spliceTree(this.nodes, root, total, 0, change.buckets, splice)
        const records = change.buckets.reduce((sum, b) => sum + b.records, 0)
        addBytes(change.buckets)
        Object.assign(next, {
          timeline: updated?.cid ?? null,
          change: { kind: 'append', buckets: change.buckets.length, records },
          message: `append ${records} records`,
          stats: { records: head.stats.records + records, buckets: updated?.summary.buckets ?? 0, bytes },
        })
        break
      }
      case 'layer': {
        const existing = head.layers.find((l) => l.name === change.layer.name)
        const segRoot = await loadRoot(this.nodes, existing?.segments ?? null, options)
        const updated = await spliceTree(
          this.nodes,
          segRoot,
          segRoot?.summary.buckets ?? 0,
          0,
          change.segments,
          splice,
        )
        const records = change.segments.reduce((sum, b) => sum + b.records, 0)
        addBytes(change.segments)
        const layer: Layer = {
          ...change.layer,
          segments: updated?.cid ?? null,
          records: (existing?.records ?? 0) + records,
          bytes: updated?.summary.bytes ?? 0,
        }
        const layers = [...head.layers.filter((l) => l.name !== layer.name), layer].sort((a, b) =>
          a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
        )
        Object.assign(next, {
          layers,
          change: { kind: 'layer', name: layer.name, segments: change.segments.length, records },
          message: `${existing ? 'extend' : 'add'} layer ${layer.name} (${records} records)`,
          stats: { ...head.stats, bytes },
        })
        break
      }
      case 'schema': {
        const fields: Field[] = head.schema.fields.map(
          (f) => change.replace.find((r) => r.name === f.name) ?? f,
        )
        fields.push(...change.add)
        for (const f of change.add) bytes[f.name] = 0
        const schema: Schema = { fields }
        Object.assign(next, {
          schema,
          change: {
            kind: 'schema',
            added: change.add.map((f) => f.name),
            replaced: change.replace.map((f) => f.name),
          },
          message: `schema: ${[...change.add.map((f) => `add ${f.name}`), ...change.replace.map((f) => `change ${f.name}`)].join(', ')}`,
          stats: { ...head.stats, bytes },
        })
        break
      }
      case 'compact': {
        const replaced: Bucket[] = []
        for await (const { bucket } of walkTree(this.nodes, head.timeline, {
          ...options,
          from: change.start,
        })) {
          if (replaced.length === change.count) break
          replaced.push(bucket)
        }
        assertSameRecords(replaced, change.replacement)
        const updated = await spliceTree(
          this.nodes,
          root,
          change.start,
          change.count,
          change.replacement,
          splice,
        )
        addBytes(change.replacement)
        for (const bucket of replaced) {
          for (const [key, object] of Object.entries(bucket.fields)) {
            const owner = key.split('/')[0]!
            bytes[owner] = (bytes[owner] ?? 0) - object.bytes
          }
        }
        Object.assign(next, {
          timeline: updated?.cid ?? null,
          change: {
            kind: 'compact',
            start: change.start,
            replaced: change.count,
            buckets: change.replacement.length,
          },
          message: `compact ${change.count} buckets into ${change.replacement.length}`,
          stats: { records: head.stats.records, buckets: updated?.summary.buckets ?? 0, bytes },
        })
        break
      }
    }
    if (change.kind === 'migrate') {
      const name = change.field.name
      const rewritten: Bucket[] = []
      bytes[name] = 0
      for await (const { position, bucket } of walkTree(this.nodes, head.timeline, options)) {
        const kept = Object.entries(bucket.fields).filter(
          ([key]) => key !== name && !key.startsWith(`${name}/`),
        )
        const fields = { ...Object.fromEntries(kept), ...change.replacements[position]! }
        for (const o of Object.values(change.replacements[position]!)) bytes[name] += o.bytes
        rewritten.push({ ...bucket, fields })
      }
      if (rewritten.length !== change.replacements.length) {
        throw new InvalidChangeError(
          'migrate.objects',
          `the timeline has ${rewritten.length} buckets, not ${change.replacements.length}`,
        )
      }
      const rebuilt = await spliceTree(this.nodes, null, 0, 0, rewritten, splice)
      Object.assign(next, {
        schema: { fields: head.schema.fields.map((f) => (f.name === name ? change.field : f)) },
        timeline: rebuilt?.cid ?? null,
        change: { kind: 'migrate', field: name, buckets: rewritten.length },
        message: `migrate ${name} (${rewritten.length} buckets re-encoded)`,
        stats: { ...head.stats, bytes },
      })
    }
    if (change.message !== undefined) next.message = change.message
    if (change.meta !== undefined) next.meta = change.meta
    return next
  }
}

type PreparedChange = { objects: { cid: CID; path: string }[]; message?: string; meta?: CommitMeta } & (
  | { kind: 'append'; buckets: Bucket[] }
  | { kind: 'layer'; layer: Omit<Layer, 'segments' | 'records' | 'bytes'>; segments: Bucket[] }
  | { kind: 'schema'; add: Field[]; replace: Field[] }
  | { kind: 'compact'; start: number; count: number; replacement: Bucket[] }
  | { kind: 'migrate'; field: Field; replacements: Record<string, FieldObject>[] }
)

/** Walk options that also check the timeline's root against the manifest's counts. */
function withExpect(manifest: Manifest, options: WalkOptions): WalkOptions {
  // Callers may pass a stand-in `{ timeline }` (a layer's segments) without stats.
  const stats = (manifest as Partial<Manifest>).stats
  if (stats === undefined || options.expect !== undefined) return options
  return { ...options, expect: { what: 'manifest', records: stats.records, buckets: stats.buckets } }
}

function objectsOf(buckets: Bucket[], path: string): { cid: CID; path: string }[] {
  return buckets.flatMap((bucket, i) =>
    Object.entries(bucket.fields).map(([key, object]) => ({
      cid: object.cid,
      path: `${path}[${i}].fields['${key}']`,
    })),
  )
}

/** Why `theirs` (already on the branch) does not commute with `mine`, or undefined. */
function conflictBetween(mine: PreparedChange, theirs: Change): string | undefined {
  switch (mine.kind) {
    case 'append':
      if (theirs.kind === 'migrate') return `field ${theirs.field} was re-encoded while this commit appended`
      if (theirs.kind === 'schema' && theirs.replaced.length > 0) {
        return `fields ${theirs.replaced.join(', ')} were redefined while this commit appended`
      }
      if (theirs.kind === 'schema' && theirs.added.length > 0) {
        return `fields ${theirs.added.join(', ')} were added while this commit appended records without them`
      }
      return undefined
    case 'layer':
      if (theirs.kind === 'layer' && theirs.name === mine.layer.name) {
        return `layer '${mine.layer.name}' was written concurrently`
      }
      if (theirs.kind === 'schema')
        return `the schema changed (${[...theirs.added, ...theirs.replaced].join(', ')})`
      return undefined
    case 'schema': {
      if (theirs.kind === 'schema' || theirs.kind === 'migrate') return 'the schema was changed concurrently'
      if (theirs.kind === 'append' && mine.replace.length > 0) {
        return `records were appended with the old definition of ${mine.replace.map((f) => f.name).join(', ')}`
      }
      if (theirs.kind === 'layer' && mine.add.some((f) => f.name === theirs.name)) {
        return `a layer named '${theirs.name}' was added concurrently`
      }
      return undefined
    }
    case 'migrate':
      if (theirs.kind === 'layer') return undefined
      return `a concurrent ${theirs.kind} changed the buckets this migration re-encodes`
    case 'compact':
      if (theirs.kind === 'migrate') return `field ${theirs.field} was migrated concurrently`
      if (theirs.kind === 'compact') return 'the timeline was compacted concurrently'
      if (theirs.kind === 'schema') return 'the schema changed concurrently'
      return undefined
  }
}

/** A compaction must keep every record: the same anchors in the same order, the same times. */
function assertSameRecords(replaced: Bucket[], replacement: Bucket[]): void {
  const flatten = (buckets: Bucket[]): string =>
    buckets
      .flatMap((b) => b.anchorRanges ?? [])
      .reduce<{ start: bigint; count: number }[]>((out, r) => {
        const last = out[out.length - 1]
        if (last !== undefined && last.start + BigInt(last.count) === r.start) last.count += r.count
        else out.push({ ...r })
        return out
      }, [])
      .map((r) => `${r.start}+${r.count}`)
      .join(',')
  if (flatten(replaced) !== flatten(replacement)) {
    throw new InvalidChangeError(
      'compact.replacement',
      'the replacement must hold exactly the same anchors in the same order',
    )
  }
  const span = (buckets: Bucket[]) => [
    Math.min(...buckets.map((b) => b.timeMin)),
    Math.max(...buckets.map((b) => b.timeMax)),
  ]
  const [a, b] = [span(replaced), span(replacement)]
  if (a[0] !== b[0] || a[1] !== b[1]) {
    throw new InvalidChangeError(
      'compact.replacement',
      `the replacement must keep the time range [${a[0]}, ${a[1]}]`,
    )
  }
}
