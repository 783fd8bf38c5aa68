/**
 * The one walker of everything a store's refs reach (design/0008). `fsck` and garbage
 * collection both mark with it, so a kind of reference it missed would show up as damage in
 * fsck before GC could ever delete by it.
 *
 * It is driven by the object model, in one table (`EDGES` below, mirrored in design/0008):
 *
 * | from | to |
 * | --- | --- |
 * | ref (user or hidden) that holds a ref target | its manifest |
 * | hidden JSON ref (an ingest lease, ...) | every CID string in it |
 * | manifest | its parents, its timeline root, each layer's segment root, the `spatialIndex` and `compressor` of every embedding field (base fields and layer fields) |
 * | tree node (timeline or segments) | its children; a leaf: every object of every bucket, `<field>` and `<field>/<part>` (codes, rerank vectors, fragment index, layer anchors), labelled by the schema's family |
 *
 * Each object is visited once per walk however many manifests share it, so the cost grows
 * with the number of objects, never with records. Manifests and tree nodes are read,
 * verified against their CID and decoded strictly; data objects (field objects, indexes,
 * compressors) are only named, unless `verify` reads and hashes them too.
 */
import type { AbortOptions, Store } from '@dreamdb/cas'
import { CID } from 'multiformats/cid'
import pLimit from 'p-limit'
import { ANCHOR_COUNTER_REF } from './anchors.js'
import { DAG_CBOR, decodeManifest, decodeRefTarget, decodeTreeNode } from './codec.js'
import type { Field, Manifest, TreeNode } from './model.js'

/** What an object is, as the walk reached it. */
export type ReachedKind =
  | 'manifest'
  | 'timeline-node'
  | 'segment-node'
  | 'field'
  | 'spatial-index'
  | 'compressor'
  | 'ref-object'

/** One object the walk reached. */
export interface Reached {
  cid: CID
  kind: ReachedKind
  /** How it was first reached: `<ref> > manifest <cid> > timeline <cid> > bucket 3 > embedding/codes`. */
  via: string
  /** For field objects: the field, its family (from the schema; `unknown` if not in it) and part. */
  field?: { name: string; family: Field['family'] | 'unknown'; part: string | null }
}

/** A ref as the walk started from it. */
export interface WalkedRef {
  name: string
  hidden: boolean
  /** `branch`/`snapshot` (a ref target), `json` (a hidden JSON value such as a lease), `anchor-counter`. */
  kind: 'branch' | 'snapshot' | 'json' | 'anchor-counter'
  manifest?: CID
}

/** A ref whose value cannot be read: fsck reports it, GC refuses to run. */
export interface UnreadableRef {
  name: string
  code: string
  reason: string
}

/** A reachable object that is missing, or damaged (wrong digest, not decodable as its kind). */
export interface WalkProblem {
  cid: CID
  kind: ReachedKind
  via: string
  problem: 'missing' | 'corrupt'
  code: string
  reason: string
}

export interface WalkOptions extends AbortOptions {
  /** Read and hash data objects too (fsck); without it only manifests and tree nodes are read. */
  verify?: boolean
  /** Objects known reachable from an earlier walk: not read again, nor what they reach (GC's re-mark). */
  visited?: ReadonlyMap<string, Reached>
  /** Requests in flight. @default 16 */
  concurrency?: number
}

export interface WalkResult {
  refs: WalkedRef[]
  unreadableRefs: UnreadableRef[]
  /** Every object reached, by the hex sha2-256 digest that keys it in the store. */
  reached: Map<string, Reached>
  problems: WalkProblem[]
  /** Objects read (manifests, nodes, and data objects under `verify`). */
  objectsRead: number
  bytesRead: number
}

/** The hex digest that keys a CID's object in the store (codecs share objects). */
export function digestKey(cid: CID): string {
  return Buffer.from(cid.multihash.digest).toString('hex')
}

const codeOf = (error: unknown): string => {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : 'ERR_UNKNOWN'
}

/** Errors that say an object is missing or damaged (anything else, an I/O failure, stops the walk). */
const MISSING = new Set(['ERR_CAS_NOT_FOUND'])
const CORRUPT = new Set([
  'ERR_CAS_INTEGRITY',
  'ERR_MANIFEST_CORRUPT',
  'ERR_MANIFEST_UNSUPPORTED_VERSION',
  'ERR_CAS_INVALID_CID',
])

interface Task {
  cid: CID
  kind: ReachedKind
  via: string
  /** The schema fields that label a tree's bucket objects. */
  fields?: readonly Field[]
  field?: Reached['field']
}

/** The edges of the object model: what each kind of object reaches. */
const EDGES = {
  manifest(manifest: Manifest, cid: CID, via: string): Task[] {
    const here = `${via} > manifest ${cid}`
    const out: Task[] = []
    for (const parent of manifest.parents)
      out.push({ cid: parent, kind: 'manifest', via: `${here} > parent` })
    if (manifest.timeline !== null)
      out.push({
        cid: manifest.timeline,
        kind: 'timeline-node',
        via: `${here} > timeline`,
        fields: manifest.schema.fields,
      })
    const vectorObjects = (field: Field, where: string): void => {
      if (field.family !== 'embedding') return
      if (field.spatialIndex !== null)
        out.push({ cid: field.spatialIndex, kind: 'spatial-index', via: `${where} > spatial index` })
      if (field.compressor !== null)
        out.push({ cid: field.compressor, kind: 'compressor', via: `${where} > compressor` })
    }
    for (const field of manifest.schema.fields) vectorObjects(field, `${here} > field ${field.name}`)
    for (const layer of manifest.layers) {
      vectorObjects(layer.field, `${here} > layer ${layer.name}`)
      if (layer.segments !== null)
        out.push({
          cid: layer.segments,
          kind: 'segment-node',
          via: `${here} > layer ${layer.name} segments`,
          fields: [layer.field],
        })
    }
    return out
  },
  node(node: TreeNode, task: Task): Task[] {
    const out: Task[] = []
    if ('children' in node) {
      for (const child of node.children)
        out.push({
          cid: child.node,
          kind: task.kind,
          via: `${task.via} > node`,
          ...(task.fields ? { fields: task.fields } : {}),
        })
      return out
    }
    node.buckets.forEach((bucket, i) => {
      for (const [key, object] of Object.entries(bucket.fields)) {
        const slash = key.indexOf('/')
        const name = slash === -1 ? key : key.slice(0, slash)
        const family = task.fields?.find((f) => f.name === name)?.family ?? 'unknown'
        out.push({
          cid: object.cid,
          kind: 'field',
          via: `${task.via} > ${task.cid} bucket ${i} > ${key}`,
          field: { name, family, part: slash === -1 ? null : key.slice(slash + 1) },
        })
      }
    })
    return out
  },
}

/** Every CID named by a string anywhere in a JSON value. */
function cidsInJson(value: unknown, out: CID[] = []): CID[] {
  if (typeof value === 'string') {
    if (value.length >= 46 && /^[bBzQ]/.test(value)) {
      try {
        const cid = CID.parse(value)
        if (cid.multihash.code === 0x12) out.push(cid)
      } catch {}
    }
  } else if (Array.isArray(value)) {
    for (const item of value) cidsInJson(item, out)
  } else if (typeof value === 'object' && value !== null) {
    for (const item of Object.values(value)) cidsInJson(item, out)
  }
  return out
}

/**
 * Read every ref of the store, user and hidden (`_dreamdb/...`), and say what each points
 * at. A user ref must hold a ref target; a hidden one may hold a ref target, a JSON value (an
 * ingest lease: every CID in it is followed), or the anchor counter's number. Anything else
 * is unreadable.
 */
export async function readRoots(
  store: Store,
  options: AbortOptions = {},
): Promise<{ refs: WalkedRef[]; roots: Task[]; unreadable: UnreadableRef[] }> {
  const refs: WalkedRef[] = []
  const roots: Task[] = []
  const unreadable: UnreadableRef[] = []
  for await (const name of store.listRefs('', options)) {
    const hidden = name.startsWith('_')
    let entry: Awaited<ReturnType<Store['readRef']>>
    try {
      entry = await store.readRef(name, options)
    } catch (error) {
      if (codeOf(error) !== 'ERR_CAS_REF_CORRUPT') throw error
      unreadable.push({ name, code: codeOf(error), reason: (error as Error).message })
      continue
    }
    if (entry === undefined) continue // deleted since it was listed
    try {
      const target = decodeRefTarget(entry.value, name)
      refs.push({ name, hidden, kind: target.kind, manifest: target.manifest })
      roots.push({ cid: target.manifest, kind: 'manifest', via: `ref ${name}` })
      continue
    } catch (error) {
      if (!hidden) {
        unreadable.push({ name, code: codeOf(error), reason: (error as Error).message })
        continue
      }
    }
    const text = new TextDecoder().decode(entry.value)
    if (name === ANCHOR_COUNTER_REF && /^\d+$/.test(text)) {
      refs.push({ name, hidden, kind: 'anchor-counter' })
      continue
    }
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      unreadable.push({
        name,
        code: 'ERR_MANIFEST_UNKNOWN_REF',
        reason: `hidden ref '${name}' holds neither a ref target, JSON nor the anchor counter; a newer DreamDB may have written it`,
      })
      continue
    }
    refs.push({ name, hidden, kind: 'json' })
    // A DAG-CBOR CID in a DreamDB JSON ref names a manifest (the only DAG-CBOR objects a ref
    // would pin); anything else is an opaque object.
    for (const cid of cidsInJson(json))
      roots.push({ cid, kind: cid.code === DAG_CBOR ? 'manifest' : 'ref-object', via: `ref ${name}` })
  }
  return { refs, roots, unreadable }
}

/**
 * Walk everything reachable from every ref. Damage (a missing or corrupt object, an
 * unreadable ref) is collected, not thrown: fsck reports it and GC refuses to delete. I/O
 * failures and aborts are thrown.
 */
export async function walkReachable(store: Store, options: WalkOptions = {}): Promise<WalkResult> {
  const { signal, verify = false, visited, concurrency = 16 } = options
  const { refs, roots, unreadable } = await readRoots(store, { signal })
  const reached = new Map<string, Reached>()
  const problems: WalkProblem[] = []
  let objectsRead = 0
  let bytesRead = 0
  // A failure clears the slots' queue; what was waiting rejects and is dropped below.
  const limit = pLimit({ concurrency, rejectOnClear: true })
  // Visits in flight or waiting for a slot; a visit adds the ones it finds.
  const pending: Promise<void>[] = []
  let failure: unknown
  const readsKind = (kind: ReachedKind) =>
    kind === 'manifest' || kind === 'timeline-node' || kind === 'segment-node'
  const enqueue = (task: Task): void => {
    const key = digestKey(task.cid)
    const known = reached.get(key) ?? visited?.get(key)
    // Reached before as something that is not read (a CID in a lease): now it is known to be
    // metadata, so read it and follow what it names.
    if (known !== undefined && (readsKind(known.kind) || !readsKind(task.kind))) return
    reached.set(key, {
      cid: task.cid,
      kind: task.kind,
      via: task.via,
      ...(task.field ? { field: task.field } : {}),
    })
    pending.push(
      limit(() => (failure === undefined ? visit(task) : undefined)).catch((error: unknown) => {
        failure ??= error
        limit.clearQueue()
      }),
    )
  }

  const visit = async (task: Task): Promise<void> => {
    const reads = readsKind(task.kind)
    if (!reads && !verify) return
    let bytes: Uint8Array
    try {
      bytes = await store.get(task.cid, { signal })
    } catch (error) {
      const code = codeOf(error)
      if (!MISSING.has(code) && !CORRUPT.has(code)) throw error
      problems.push({
        cid: task.cid,
        kind: task.kind,
        via: task.via,
        problem: MISSING.has(code) ? 'missing' : 'corrupt',
        code,
        reason: (error as Error).message,
      })
      return
    }
    objectsRead++
    bytesRead += bytes.byteLength
    if (!reads) return
    try {
      if (task.kind === 'manifest') {
        for (const next of EDGES.manifest(decodeManifest(bytes, task.cid.toString()), task.cid, task.via))
          enqueue(next)
      } else {
        for (const next of EDGES.node(decodeTreeNode(bytes, task.cid.toString()), task)) enqueue(next)
      }
    } catch (error) {
      const code = codeOf(error)
      if (!CORRUPT.has(code)) throw error
      problems.push({
        cid: task.cid,
        kind: task.kind,
        via: task.via,
        problem: 'corrupt',
        code,
        reason: (error as Error).message,
      })
    }
  }

  for (const root of roots) enqueue(root)
  while (pending.length > 0) await Promise.all(pending.splice(0))
  if (failure !== undefined) throw failure
  signal?.throwIfAborted()
  return { refs, unreadableRefs: unreadable, reached, problems, objectsRead, bytesRead }
}
