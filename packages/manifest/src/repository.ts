import type { AbortOptions, Store } from '@dreamdb/cas'
import { LRUCache } from 'lru-cache'
import { CID } from 'multiformats/cid'
import { AnchorMinter, DEFAULT_ANCHOR_BLOCK } from './anchors.js'
import type { ChangeRequest } from './changes/index.js'
import { DAG_CBOR, decodeManifest, decodeRefTarget, encodeManifest } from './codec.js'
import { type BranchHead, type CommitHost, type CommitOptions, type CommitResult, commit } from './commit.js'
import { InvalidChangeError, RefExistsError, RefNotFoundError, SnapshotImmutableError } from './errors.js'
import { type DeleteRefOptions, deleteRef } from './lifecycle.js'
import { checkMeta } from './meta.js'
import type { Bucket, CommitMeta, Manifest, RefTarget, TreeChild } from './model.js'
import { assertUserRefName } from './names.js'
import {
  createRef,
  type RefInfo,
  type RefStatus,
  refEntries,
  type SnapshotInfo,
  snapshot,
  targetOf,
} from './refs.js'
import { type FieldInput, normalizeSchema } from './schema.js'
import {
  assertSummary,
  DEFAULT_FANOUT,
  NodeStore,
  summarize,
  treeLeaves,
  type WalkOptions,
  walkTree,
} from './tree.js'

/** A ref resolved to its manifest. */
export interface Resolved {
  /** The ref name, when resolved from one. */
  name?: string
  target: RefTarget
  manifest: Manifest
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

/** Manifests and branch heads remembered per repository. */
const CACHED = 1024

/**
 * Datasets, branches and snapshots on a `@dreamdb/cas` store. Every state is an immutable
 * manifest; a ref names one. Commits write objects first, then the manifest, then move
 * the branch by compare-and-swap, rebasing on the newest head when they lose a race and
 * the two changes commute (commit.ts; the kinds of change are in changes/).
 */
export class Repository {
  readonly store: Store
  readonly nodes: NodeStore
  readonly #fanout: number
  readonly #maxAttempts: number
  readonly #minter: AnchorMinter
  /** Manifests by CID: immutable, so a cached one never goes stale. */
  readonly #manifests = new LRUCache<string, Manifest>({ max: CACHED })
  /**
   * Branches as this repository last read or moved them. A commit swaps against the one it
   * remembers without reading the ref first; the swap itself checks it (a stale one fails
   * and the commit starts over from the branch as it is). A branch where the last commit
   * met another writer is `contended`: commits read it first, until one wins at once.
   */
  readonly #branches = new LRUCache<string, Omit<BranchHead, 'manifest'> & { contended?: boolean }>({
    max: CACHED,
  })
  readonly #commitHost: CommitHost

  constructor(store: Store, init: RepositoryInit = {}) {
    this.store = store
    this.nodes = new NodeStore(store)
    this.#fanout = init.fanout ?? DEFAULT_FANOUT
    this.#maxAttempts = init.maxAttempts ?? 100
    this.#minter = new AnchorMinter(store, init.anchorBlock ?? DEFAULT_ANCHOR_BLOCK)
    this.#commitHost = {
      store,
      nodes: this.nodes,
      fanout: this.#fanout,
      maxAttempts: this.#maxAttempts,
      loadManifest: (cid, options) => this.loadManifest(cid, options),
      putManifest: (manifest, options) => this.#putManifest(manifest, options),
      readBranch: (name, options) => this.#readBranch(name, options),
      knownBranch: async (name, options) => {
        const known = this.#branches.get(name)
        // A branch other writers commit to is read first: a stale swap costs more than a read.
        if (known === undefined || known.contended === true) return undefined
        const { contended: _, ...head } = known
        return { ...head, manifest: await this.loadManifest(known.target.manifest, options) }
      },
      moved: (name, head, contended) => this.#branches.set(name, { ...head, contended }),
    }
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
    return await this.#createBranch(name, { kind: 'branch', manifest: cid, timeline: null }, options)
  }

  /** The ref's target, or `undefined` when there is none. One request. */
  async readRef(
    name: string,
    options: AbortOptions = {},
  ): Promise<(RefTarget & { version: string }) | undefined> {
    const entry = await this.#readEntry(name, options)
    return entry === undefined ? undefined : { ...entry.target, version: entry.version }
  }

  /** The ref as stored, remembered when it is a branch. */
  async #readEntry(name: string, options: AbortOptions): Promise<Omit<BranchHead, 'manifest'> | undefined> {
    assertUserRefName(name)
    const entry = await this.store.readRef(name, options)
    if (entry === undefined) {
      this.#branches.delete(name)
      return undefined
    }
    const head = {
      target: decodeRefTarget(entry.value, name),
      version: entry.version,
      generation: entry.generation,
    }
    // A read keeps what commits learned about other writers on the branch.
    if (head.target.kind === 'branch')
      this.#branches.set(name, { ...head, contended: this.#branches.get(name)?.contended === true })
    else this.#branches.delete(name)
    return head
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
    return manifest
  }

  /**
   * Pin the state of `from` under `label`: create-if-absent of an immutable ref. The same
   * label on the same manifest is a no-op; on another one it is SnapshotLabelTakenError.
   */
  snapshot(label: string, from: Source, options: AbortOptions = {}): Promise<SnapshotInfo> {
    return snapshot(this, label, from, options)
  }

  /** Create a branch at the state of `from`: one small write. */
  async branch(name: string, from: Source, options: AbortOptions = {}): Promise<RefInfo> {
    assertUserRefName(name)
    const target = await targetOf(this, from, options)
    return await this.#createBranch(name, { ...target, kind: 'branch' }, options)
  }

  /**
   * Delete a branch by compare-and-swap: a commit that moves it meanwhile is not lost but a
   * `RefMovedError`. Snapshots need `deleteRef(repo, name, { force: true })` (lifecycle.ts).
   */
  async deleteBranch(name: string, options: Omit<DeleteRefOptions, 'kind' | 'force'> = {}): Promise<void> {
    await deleteRef(this, name, { ...options, kind: 'branch' })
    this.#branches.delete(name)
  }

  /**
   * Datasets, branches and snapshots whose names start with `prefix`, in name order. A ref
   * whose body is damaged is left out (so one corrupt ref does not fail `log` or `inspect`
   * of the others); `scanRefs` lists it, marked as damaged.
   */
  async *listRefs(prefix = '', options: AbortOptions = {}): AsyncIterable<RefInfo> {
    for await (const entry of refEntries(this, prefix, false, options)) {
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
    yield* refEntries(this, prefix, true, options)
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
   * and rebases when the changes commute; otherwise CommitConflictError. A repository
   * remembers the branches it read or moved, so an append costs its new tree nodes, the
   * manifest and one ref write (objects in `written` are not checked again).
   */
  commit(refName: string, request: ChangeRequest, options: CommitOptions = {}): Promise<CommitResult> {
    assertUserRefName(refName)
    return commit(this.#commitHost, refName, request, options)
  }

  async #readBranch(name: string, options: AbortOptions): Promise<BranchHead> {
    const head = await this.#readEntry(name, options)
    if (head === undefined) throw new RefNotFoundError(name, this.store.url)
    if (head.target.kind === 'snapshot') throw new SnapshotImmutableError(name, 'commit to')
    return { ...head, manifest: await this.loadManifest(head.target.manifest, options) }
  }

  async #createBranch(name: string, target: RefTarget, options: AbortOptions): Promise<RefInfo> {
    const entry = await createRef(this, name, target, options)
    this.#branches.set(name, { target, version: entry.version, generation: entry.generation })
    return { name, ...target }
  }

  async #putManifest(manifest: Manifest, options: AbortOptions): Promise<CID> {
    const bytes = encodeManifest(manifest)
    const cid = await this.store.put(bytes, { codec: DAG_CBOR, ...options })
    this.#manifests.set(cid.toString(), manifest)
    return cid
  }
}

/** Walk options that also check the timeline's root against the manifest's counts. */
function withExpect(manifest: Manifest, options: WalkOptions): WalkOptions {
  // Callers may pass a stand-in `{ timeline }` (a layer's segments) without stats.
  const stats = (manifest as Partial<Manifest>).stats
  if (stats === undefined || options.expect !== undefined) return options
  return { ...options, expect: { what: 'manifest', records: stats.records, buckets: stats.buckets } }
}
