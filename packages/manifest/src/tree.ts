/**
 * The bucket tree: an immutable B+tree of buckets in append order, used for a dataset's
 * timeline and for each layer's segments. Interior nodes keep a summary of each child
 * (bucket, record and byte counts, anchor and time bounds), so counting, time-range
 * pruning and positional lookups never read the leaves they skip.
 *
 * Every change is a splice: remove `deleteCount` buckets at a position and insert new
 * ones. Only the nodes on the path to the change are rewritten, so an append touches
 * O(fanout x depth) metadata however long the timeline is, and unchanged subtrees keep
 * their CIDs (which is also what makes `diff` cheap).
 */
import type { AbortOptions, Store } from '@dreamdb/cas'
import { LRUCache } from 'lru-cache'
import type { CID } from 'multiformats/cid'
import { DAG_CBOR, decodeTreeNode, encodeTreeNode, MAX_TREE_LEVEL } from './codec.js'
import { IntegrityError } from './errors.js'
import type { Bucket, TreeChild, TreeNode } from './model.js'

/** Buckets per leaf and children per interior node. */
export const DEFAULT_FANOUT = 32

/** Reads and writes tree nodes, remembering decoded nodes by CID (they never change). */
export class NodeStore {
  readonly #store: Store
  /** Nodes are immutable (named by their CID), so a cached one never goes stale. */
  readonly #cache: LRUCache<string, TreeNode> | undefined
  /** Bytes of node objects this instance wrote (dedup hits excluded). */
  bytesWritten = 0
  nodesWritten = 0

  constructor(store: Store, cacheLimit = 4096) {
    this.#store = store
    // 0 keeps nothing (every load reads the store).
    this.#cache = cacheLimit > 0 ? new LRUCache({ max: cacheLimit }) : undefined
  }

  async load(cid: CID, options: AbortOptions = {}): Promise<TreeNode> {
    const key = cid.toString()
    const cached = this.#cache?.get(key)
    if (cached !== undefined) return cached
    const node = decodeTreeNode(await this.#store.get(cid, options), key)
    this.#cache?.set(key, node)
    return node
  }

  /**
   * Load the node a parent's entry names and check it against that entry: one level below
   * the parent, and exactly the summary the parent keeps of it (bucket, record and byte
   * counts, anchor and time bounds). Anything else is IntegrityError naming the parent.
   */
  async loadChild(parent: CID, parentLevel: number, child: TreeChild, options: AbortOptions = {}) {
    const node = await this.load(child.node, options)
    if (node.level !== parentLevel - 1) {
      throw new IntegrityError(
        'Timeline node',
        parent.toString(),
        `its child ${child.node} is at the wrong level`,
        parentLevel - 1,
        node.level,
      )
    }
    assertSummary(parent.toString(), `its summary of child ${child.node}`, child, summarize(child.node, node))
    return node
  }

  async save(node: TreeNode, options: AbortOptions = {}): Promise<CID> {
    const bytes = encodeTreeNode(node)
    let stored = false
    const cid = await this.#store.put(bytes, {
      codec: DAG_CBOR,
      ...options,
      onProgress: (event) => {
        if (event.type === 'dreamdb:cas:put') stored = event.stored
      },
    })
    if (stored) {
      this.bytesWritten += bytes.byteLength
      this.nodesWritten++
    }
    this.#cache?.set(cid.toString(), node)
    return cid
  }
}

function bucketBytes(bucket: Bucket): number {
  let total = 0
  for (const object of Object.values(bucket.fields)) total += object.bytes
  return total
}

/** The summary a parent keeps of a node. */
export function summarize(cid: CID, node: TreeNode): TreeChild {
  const parts: Omit<TreeChild, 'node'>[] =
    'buckets' in node
      ? node.buckets.map((b) => ({
          buckets: 1,
          records: b.records,
          bytes: bucketBytes(b),
          anchorMin: b.anchorMin,
          anchorMax: b.anchorMax,
          timeMin: b.timeMin,
          timeMax: b.timeMax,
        }))
      : node.children
  const [first, ...rest] = parts
  if (first === undefined) throw new IntegrityError('Timeline node', cid.toString(), 'it is empty')
  const summary: TreeChild = {
    node: cid,
    buckets: first.buckets,
    records: first.records,
    bytes: first.bytes,
    anchorMin: first.anchorMin,
    anchorMax: first.anchorMax,
    timeMin: first.timeMin,
    timeMax: first.timeMax,
  }
  for (const part of rest) {
    summary.buckets += part.buckets
    summary.records += part.records
    summary.bytes += part.bytes
    if (part.anchorMin < summary.anchorMin) summary.anchorMin = part.anchorMin
    if (part.anchorMax > summary.anchorMax) summary.anchorMax = part.anchorMax
    summary.timeMin = Math.min(summary.timeMin, part.timeMin)
    summary.timeMax = Math.max(summary.timeMax, part.timeMax)
  }
  return summary
}

const SUMMARY_KEYS = ['buckets', 'records', 'bytes', 'anchorMin', 'anchorMax', 'timeMin', 'timeMax'] as const

/** Throw IntegrityError unless `stated` (what an object says of a subtree) matches `actual`. */
export function assertSummary(
  cid: string,
  what: string,
  stated: Partial<Omit<TreeChild, 'node'>>,
  actual: Omit<TreeChild, 'node'>,
): void {
  for (const key of SUMMARY_KEYS) {
    const value = stated[key]
    if (value !== undefined && value !== actual[key]) {
      throw new IntegrityError(
        'Timeline node',
        cid,
        `${what} disagrees on ${key}`,
        String(value),
        String(actual[key]),
      )
    }
  }
}

/**
 * The nodes one walk has reached, to refuse a node reached twice: a crafted tree whose
 * nodes share children would otherwise be walked an exponential number of times. Keys are
 * 16 bytes of the digest, so a walk of a million nodes keeps tens of megabytes.
 */
class Visited {
  readonly #seen = new Set<string>()
  add(cid: CID, parent: CID | null): void {
    const d = cid.multihash.digest
    let key = ''
    for (let i = 0; i < 16 && i < d.length; i++) key += String.fromCharCode(d[i]!)
    if (this.#seen.has(key)) {
      throw new IntegrityError(
        'Timeline node',
        (parent ?? cid).toString(),
        `node ${cid} is reached twice in one walk (a tree never shares a node)`,
      )
    }
    this.#seen.add(key)
  }
}

/** The root of a walk, with its summary checked against what the manifest says. */
async function loadCheckedRoot(nodes: NodeStore, root: CID, options: WalkOptions): Promise<TreeNode> {
  const node = await nodes.load(root, options)
  if (node.level > MAX_TREE_LEVEL) {
    throw new IntegrityError(
      'Timeline node',
      root.toString(),
      'it nests deeper than the limit',
      MAX_TREE_LEVEL,
      node.level,
    )
  }
  if (options.expect !== undefined) {
    assertSummary(
      root.toString(),
      `the ${options.expect.what} that names it as root`,
      options.expect,
      summarize(root, node),
    )
  }
  return node
}

function chunk<T>(items: T[], size: number): T[][] {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

/** A tree's root and its summary (bucket count etc.); `null` for an empty tree. */
export interface TreeRoot {
  cid: CID
  summary: TreeChild
  level: number
}

export async function loadRoot(
  nodes: NodeStore,
  cid: CID | null,
  options: AbortOptions = {},
): Promise<TreeRoot | null> {
  if (cid === null) return null
  const node = await nodes.load(cid, options)
  return { cid, summary: summarize(cid, node), level: node.level }
}

/**
 * Replace `deleteCount` buckets at position `start` with `insert`, returning the new
 * root. `start` may equal the bucket count (an append).
 */
export async function spliceTree(
  nodes: NodeStore,
  root: TreeRoot | null,
  start: number,
  deleteCount: number,
  insert: Bucket[],
  options: AbortOptions & { fanout?: number } = {},
): Promise<TreeRoot | null> {
  const fanout = options.fanout ?? DEFAULT_FANOUT
  const total = root?.summary.buckets ?? 0
  if (start < 0 || deleteCount < 0 || start + deleteCount > total) {
    throw new RangeError(`splice [${start}, ${start + deleteCount}) is outside a tree of ${total} buckets`)
  }
  let level: TreeChild[]
  let height: number
  if (root === null) {
    level = []
    height = 0
    for (const group of chunk(insert, fanout)) {
      const node: TreeNode = { level: 0, buckets: group }
      level.push(summarize(await nodes.save(node, options), node))
    }
  } else {
    level = await spliceNode(nodes, root.cid, start, deleteCount, insert, fanout, options)
    height = root.level
  }
  // Grow upwards until one node holds everything.
  while (level.length > 1) {
    height++
    const parents: TreeChild[] = []
    for (const group of chunk(level, fanout)) {
      const node: TreeNode = { level: height, children: group }
      parents.push(summarize(await nodes.save(node, options), node))
    }
    level = parents
  }
  if (level.length === 0) return null
  const top = level[0]!
  // Shrink from the top while the root has a single child.
  let cid = top.node
  let node = await nodes.load(cid, options)
  while (!('buckets' in node) && node.children.length === 1) {
    cid = node.children[0]!.node
    node = await nodes.load(cid, options)
  }
  return { cid, summary: summarize(cid, node), level: node.level }
}

/** Splice inside one subtree; returns the summaries of the nodes replacing it (0..n). */
async function spliceNode(
  nodes: NodeStore,
  cid: CID,
  start: number,
  deleteCount: number,
  insert: Bucket[],
  fanout: number,
  options: AbortOptions,
): Promise<TreeChild[]> {
  const node = await nodes.load(cid, options)
  if ('buckets' in node) {
    const buckets = [...node.buckets]
    buckets.splice(start, deleteCount, ...insert)
    const out: TreeChild[] = []
    for (const group of chunk(buckets, fanout)) {
      const leaf: TreeNode = { level: 0, buckets: group }
      out.push(summarize(await nodes.save(leaf, options), leaf))
    }
    return out
  }
  const children: TreeChild[] = []
  let offset = 0
  let pendingInsert: Bucket[] | undefined = insert
  for (const [index, child] of node.children.entries()) {
    const childStart = offset
    const childEnd = offset + child.buckets
    offset = childEnd
    const isLast = index === node.children.length - 1
    // The slice of [start, start + deleteCount) inside this child, and whether the
    // insertion point falls here (the last child also takes an append at the very end).
    const from = Math.max(start, childStart)
    const to = Math.min(start + deleteCount, childEnd)
    const insertsHere =
      pendingInsert !== undefined &&
      start >= childStart &&
      (start < childEnd || (isLast && start === childEnd))
    if (to <= from && !insertsHere) {
      children.push(child)
      continue
    }
    const localInsert = insertsHere ? pendingInsert! : []
    if (insertsHere) pendingInsert = undefined
    // Checked before the splice descends (level and summary), then read from the cache.
    await nodes.loadChild(cid, node.level, child, options)
    children.push(
      ...(await spliceNode(
        nodes,
        child.node,
        Math.max(0, (insertsHere ? start : from) - childStart),
        Math.max(0, to - from),
        localInsert,
        fanout,
        options,
      )),
    )
  }
  const out: TreeChild[] = []
  for (const group of chunk(children, fanout)) {
    const branch: TreeNode = { level: node.level, children: group }
    out.push(summarize(await nodes.save(branch, options), branch))
  }
  return out
}

export interface WalkOptions extends AbortOptions {
  /** First bucket position to yield. @default 0 */
  from?: number
  /** Only buckets whose time range overlaps [timeMin, timeMax]. */
  timeMin?: number
  timeMax?: number
  /**
   * What the object naming this tree says of it (a manifest's record and bucket counts, a
   * layer's records and bytes): the root's summary must agree, or the walk fails with
   * IntegrityError before yielding anything.
   */
  expect?: Partial<Omit<TreeChild, 'node'>> & { what: string }
}

/** Every bucket in order, with its position, reading only the subtrees that can match. */
export async function* walkTree(
  nodes: NodeStore,
  root: CID | null,
  options: WalkOptions = {},
): AsyncGenerator<{ position: number; bucket: Bucket }> {
  if (root === null) return
  const from = options.from ?? 0
  const tMin = options.timeMin ?? Number.NEGATIVE_INFINITY
  const tMax = options.timeMax ?? Number.POSITIVE_INFINITY
  const visited = new Visited()
  async function* walk(
    cid: CID,
    node: TreeNode,
    offset: number,
  ): AsyncGenerator<{ position: number; bucket: Bucket }> {
    if ('buckets' in node) {
      for (const [i, bucket] of node.buckets.entries()) {
        if (offset + i < from || bucket.timeMax < tMin || bucket.timeMin > tMax) continue
        yield { position: offset + i, bucket }
      }
      return
    }
    for (const child of node.children) {
      const skip = offset + child.buckets <= from || child.timeMax < tMin || child.timeMin > tMax
      if (!skip) {
        visited.add(child.node, cid)
        yield* walk(child.node, await nodes.loadChild(cid, node.level, child, options), offset)
      }
      offset += child.buckets
    }
  }
  visited.add(root, null)
  yield* walk(root, await loadCheckedRoot(nodes, root, options), 0)
}

/**
 * The leaves of a tree in order, as the summaries their parents keep, with the position of
 * each leaf's first bucket. Reads only interior nodes (or the root, when it is a leaf), so
 * a plan over a million buckets reads about one node in a thousand. Time bounds prune
 * whole subtrees, as in `walkTree`.
 */
export async function* treeLeaves(
  nodes: NodeStore,
  root: CID | null,
  options: WalkOptions = {},
): AsyncGenerator<{ position: number; leaf: TreeChild }> {
  if (root === null) return
  const tMin = options.timeMin ?? Number.NEGATIVE_INFINITY
  const tMax = options.timeMax ?? Number.POSITIVE_INFINITY
  const visited = new Visited()
  visited.add(root, null)
  const top = await loadCheckedRoot(nodes, root, options)
  if ('buckets' in top) {
    const leaf = summarize(root, top)
    if (!(leaf.timeMax < tMin || leaf.timeMin > tMax)) yield { position: 0, leaf }
    return
  }
  async function* walk(
    cid: CID,
    node: TreeNode,
    offset: number,
  ): AsyncGenerator<{ position: number; leaf: TreeChild }> {
    if ('buckets' in node) return
    for (const child of node.children) {
      const inRange = !(child.timeMax < tMin || child.timeMin > tMax)
      if (inRange) {
        // A leaf is named here but read later (leafBuckets checks it against this summary).
        visited.add(child.node, cid)
        if (node.level === 1) yield { position: offset, leaf: child }
        else yield* walk(child.node, await nodes.loadChild(cid, node.level, child, options), offset)
      }
      offset += child.buckets
    }
  }
  yield* walk(root, top, 0)
}

/** Every node CID of a tree (for inspect and GC), skipping subtrees in `seen`. */
export async function* treeNodes(
  nodes: NodeStore,
  root: CID | null,
  seen: Set<string> = new Set(),
  options: AbortOptions = {},
): AsyncGenerator<{ cid: CID; node: TreeNode }> {
  if (root === null || seen.has(root.toString())) return
  seen.add(root.toString())
  const top = await loadCheckedRoot(nodes, root, options)
  async function* walk(cid: CID, node: TreeNode): AsyncGenerator<{ cid: CID; node: TreeNode }> {
    yield { cid, node }
    if ('buckets' in node) return
    for (const child of node.children) {
      if (seen.has(child.node.toString())) continue
      seen.add(child.node.toString())
      yield* walk(child.node, await nodes.loadChild(cid, node.level, child, options))
    }
  }
  yield* walk(root, top)
}
