/**
 * Audit over the manifest DAG: `log`, `inspect` and `diff`. All three return plain data
 * (CIDs as strings, anchors as decimal strings) ready for `--json`, and read only
 * metadata: manifests and tree nodes, never a record.
 */
import type { AbortOptions } from '@dreamdb/cas'
import type { CID } from 'multiformats/cid'
import type { Bucket, Change, CommitMeta, Field, Manifest, RefKind } from './model.js'
import { isDamage } from './refs.js'
import type { Repository, Source } from './repository.js'
import { treeNodes, walkTree } from './tree.js'

export interface LogEntry {
  manifest: string
  parents: string[]
  message: string
  timestamp: number
  change: Change
  /** The commit's structured metadata; present only when it had some. */
  meta?: CommitMeta
  records: number
  buckets: number
  /** Refs that point at exactly this manifest. */
  refs: { name: string; kind: RefKind }[]
}

/** Refs by the manifest they point at (one listing plus one read per ref). */
async function refsByManifest(repo: Repository, options: AbortOptions) {
  const byManifest = new Map<string, { name: string; kind: RefKind }[]>()
  for await (const ref of repo.listRefs('', options)) {
    const key = ref.manifest.toString()
    byManifest.set(key, [...(byManifest.get(key) ?? []), { name: ref.name, kind: ref.kind }])
  }
  return byManifest
}

/** The history behind a ref or manifest, newest first, walking every parent. */
export async function log(
  repo: Repository,
  from: Source,
  options: AbortOptions & { limit?: number } = {},
): Promise<LogEntry[]> {
  const start = await repo.resolve(from, options)
  const refs = await refsByManifest(repo, options)
  const entries: LogEntry[] = []
  const queue: CID[] = [start.target.manifest]
  const seen = new Set<string>()
  while (queue.length > 0 && entries.length < (options.limit ?? Number.POSITIVE_INFINITY)) {
    const cid = queue.shift()!
    if (seen.has(cid.toString())) continue
    seen.add(cid.toString())
    const manifest = await repo.loadManifest(cid, options)
    entries.push({
      manifest: cid.toString(),
      parents: manifest.parents.map(String),
      message: manifest.message,
      timestamp: manifest.timestamp,
      change: manifest.change,
      ...(manifest.meta === undefined ? {} : { meta: manifest.meta }),
      records: manifest.stats.records,
      buckets: manifest.stats.buckets,
      refs: refs.get(cid.toString()) ?? [],
    })
    queue.push(...manifest.parents)
  }
  return entries
}

export interface InspectedBucket {
  position: number
  records: number
  anchors: { min: string; max: string; ranges: [string, number][] | null }
  time: [number, number]
  objects: Record<string, { cid: string; bytes: number }>
}

export interface InspectedObject {
  cid: string
  role:
    | 'manifest'
    | 'timeline-node'
    | 'field'
    | 'layer-node'
    | 'layer-object'
    | 'spatial-index'
    | 'compressor'
  /** The field or layer it belongs to. */
  field?: string
  bytes?: number
}

export interface Inspection {
  ref: { name: string; kind: RefKind } | null
  manifest: string
  timeline: string | null
  message: string
  /** The commit's structured metadata; present only when it had some. */
  meta?: CommitMeta
  timestamp: number
  parents: string[]
  /** Length of the history behind this state (this manifest included). */
  depth: number
  schema: { fields: PlainField[] }
  layers: {
    name: string
    parent: string
    field: PlainField
    records: number
    bytes: number
    segments: number
  }[]
  stats: Manifest['stats']
  buckets: InspectedBucket[]
  /** Every object this state references, each once. */
  objects: InspectedObject[]
  /** Other refs whose history contains this manifest. */
  referencedBy: { name: string; kind: RefKind; manifest: string }[]
}

type PlainField = Record<string, string | number | boolean | null>

function plainField(field: Field): PlainField {
  return field.family === 'embedding'
    ? {
        ...field,
        spatialIndex: field.spatialIndex?.toString() ?? null,
        compressor: field.compressor?.toString() ?? null,
      }
    : { ...field }
}

function plainBucket(position: number, bucket: Bucket): InspectedBucket {
  return {
    position,
    records: bucket.records,
    anchors: {
      min: bucket.anchorMin.toString(),
      max: bucket.anchorMax.toString(),
      ranges: bucket.anchorRanges?.map((r) => [r.start.toString(), r.count]) ?? null,
    },
    time: [bucket.timeMin, bucket.timeMax],
    objects: Object.fromEntries(
      Object.entries(bucket.fields).map(([k, o]) => [k, { cid: o.cid.toString(), bytes: o.bytes }]),
    ),
  }
}

/** Everything about one state: what `dreamdb inspect --ref-name` prints. */
export async function inspect(
  repo: Repository,
  from: Source,
  options: AbortOptions = {},
): Promise<Inspection> {
  const resolved = await repo.resolve(from, options)
  const { manifest } = resolved
  const manifestCid = resolved.target.manifest.toString()
  const objects: InspectedObject[] = [{ cid: manifestCid, role: 'manifest' }]
  const seen = new Set<string>([manifestCid])
  const add = (object: InspectedObject): void => {
    if (seen.has(object.cid)) return
    seen.add(object.cid)
    objects.push(object)
  }
  for await (const { cid } of treeNodes(repo.nodes, manifest.timeline, new Set(), options)) {
    add({ cid: cid.toString(), role: 'timeline-node' })
  }
  const buckets: InspectedBucket[] = []
  const timelineWalk = {
    ...options,
    expect: { what: 'manifest', records: manifest.stats.records, buckets: manifest.stats.buckets },
  }
  for await (const { position, bucket } of walkTree(repo.nodes, manifest.timeline, timelineWalk)) {
    buckets.push(plainBucket(position, bucket))
    for (const [key, o] of Object.entries(bucket.fields)) {
      add({ cid: o.cid.toString(), role: 'field', field: key.split('/')[0]!, bytes: o.bytes })
    }
  }
  const layers: Inspection['layers'] = []
  for (const layer of manifest.layers) {
    let segments = 0
    for await (const { cid } of treeNodes(repo.nodes, layer.segments, new Set(), options)) {
      add({ cid: cid.toString(), role: 'layer-node', field: layer.name })
    }
    const layerWalk = {
      ...options,
      expect: { what: `layer '${layer.name}'`, records: layer.records, bytes: layer.bytes },
    }
    for await (const { bucket } of walkTree(repo.nodes, layer.segments, layerWalk)) {
      segments++
      for (const o of Object.values(bucket.fields)) {
        add({ cid: o.cid.toString(), role: 'layer-object', field: layer.name, bytes: o.bytes })
      }
    }
    layers.push({
      name: layer.name,
      parent: layer.parent,
      field: plainField(layer.field),
      records: layer.records,
      bytes: layer.bytes,
      segments,
    })
  }
  for (const field of [...manifest.schema.fields, ...manifest.layers.map((l) => l.field)]) {
    if (field.family !== 'embedding') continue
    if (field.spatialIndex)
      add({ cid: field.spatialIndex.toString(), role: 'spatial-index', field: field.name })
    if (field.compressor) add({ cid: field.compressor.toString(), role: 'compressor', field: field.name })
  }
  const history = await log(repo, resolved.target.manifest, options)
  const ancestors = new Set(history.map((e) => e.manifest))
  const referencedBy: Inspection['referencedBy'] = []
  const cannotReach = new Set<string>()
  for await (const ref of repo.listRefs('', options)) {
    if (ref.name === resolved.name) continue
    let reached: boolean
    try {
      reached = await reaches(repo, ref.manifest, manifestCid, cannotReach, options)
    } catch (error) {
      // Another ref's damaged history does not fail the inspection of this one.
      if (isDamage(error)) continue
      throw error
    }
    if (reached) {
      referencedBy.push({ name: ref.name, kind: ref.kind, manifest: ref.manifest.toString() })
    }
  }
  return {
    ref: resolved.name === undefined ? null : { name: resolved.name, kind: resolved.target.kind },
    manifest: manifestCid,
    timeline: manifest.timeline?.toString() ?? null,
    message: manifest.message,
    ...(manifest.meta === undefined ? {} : { meta: manifest.meta }),
    timestamp: manifest.timestamp,
    parents: manifest.parents.map(String),
    depth: ancestors.size,
    schema: { fields: manifest.schema.fields.map(plainField) },
    layers,
    stats: manifest.stats,
    buckets,
    objects,
    referencedBy,
  }
}

/**
 * Whether `target` is `from` or one of its ancestors. Walks learn which manifests cannot
 * reach the target (`cannotReach`), so checking many refs costs each manifest once.
 */
async function reaches(
  repo: Repository,
  from: CID,
  target: string,
  cannotReach: Set<string>,
  options: AbortOptions,
): Promise<boolean> {
  const walked: string[] = []
  const queue = [from]
  const seen = new Set<string>()
  while (queue.length > 0) {
    const next = queue.shift()!
    const key = next.toString()
    if (key === target) return true
    if (seen.has(key) || cannotReach.has(key)) continue
    seen.add(key)
    walked.push(key)
    queue.push(...(await repo.loadManifest(next, options)).parents)
  }
  for (const key of walked) cannotReach.add(key)
  return false
}

export interface Diff {
  from: string
  to: string
  fields: { added: string[]; removed: string[]; changed: string[] }
  layers: { added: string[]; removed: string[]; changed: string[] }
  buckets: { added: number; removed: number }
  records: { added: number; removed: number }
}

/**
 * What changed from `a` to `b`: fields and layers added, removed or redefined, and the
 * buckets and records only one side holds. Leaves both timelines share (same CID) hold the
 * same buckets, so only the leaves unique to one side are compared bucket by bucket, by
 * their anchors and the objects of the fields both sides have: a field dropped or added
 * shows in `fields`, not as every record removed and added again.
 */
export async function diff(
  repo: Repository,
  a: Source,
  b: Source,
  options: AbortOptions = {},
): Promise<Diff> {
  const [ra, rb] = await Promise.all([repo.resolve(a, options), repo.resolve(b, options)])
  const compareFields = (x: Field[], y: Field[]) => {
    const byName = (fields: Field[]) => new Map(fields.map((f) => [f.name, JSON.stringify(plainField(f))]))
    const [mx, my] = [byName(x), byName(y)]
    return {
      added: [...my.keys()].filter((n) => !mx.has(n)),
      removed: [...mx.keys()].filter((n) => !my.has(n)),
      changed: [...my.keys()].filter((n) => mx.has(n) && mx.get(n) !== my.get(n)),
    }
  }
  const layerDiff = compareFields(
    ra.manifest.layers.map((l) => l.field),
    rb.manifest.layers.map((l) => l.field),
  )
  const layerSegments = (m: Manifest) =>
    new Map(m.layers.map((l) => [l.name, l.segments?.toString() ?? null]))
  const [sa, sb] = [layerSegments(ra.manifest), layerSegments(rb.manifest)]
  for (const [name, segments] of sb) {
    if (sa.has(name) && sa.get(name) !== segments && !layerDiff.changed.includes(name))
      layerDiff.changed.push(name)
  }
  const [onlyA, onlyB] = await uniqueBuckets(repo, ra.manifest.timeline, rb.manifest.timeline, options)
  const namesB = new Set(rb.manifest.schema.fields.map((f) => f.name))
  const shared = new Set(ra.manifest.schema.fields.map((f) => f.name).filter((n) => namesB.has(n)))
  const keysA = new Map(onlyA.map((x) => [bucketKey(x, shared), x]))
  const keysB = new Map(onlyB.map((x) => [bucketKey(x, shared), x]))
  const added = [...keysB].filter(([k]) => !keysA.has(k)).map(([, v]) => v)
  const removed = [...keysA].filter(([k]) => !keysB.has(k)).map(([, v]) => v)
  return {
    from: ra.target.manifest.toString(),
    to: rb.target.manifest.toString(),
    fields: compareFields(ra.manifest.schema.fields, rb.manifest.schema.fields),
    layers: layerDiff,
    buckets: { added: added.length, removed: removed.length },
    records: {
      added: added.reduce((sum, x) => sum + x.records, 0),
      removed: removed.reduce((sum, x) => sum + x.records, 0),
    },
  }
}

/** A bucket's anchors and its objects of the fields `shared` names (`<field>`, `<field>/<part>`). */
function bucketKey(bucket: Bucket, shared: ReadonlySet<string>): string {
  const objects = Object.entries(bucket.fields)
    .filter(([key]) => shared.has(key.split('/')[0]!))
    .sort(([x], [y]) => (x < y ? -1 : 1))
    .map(([k, o]) => `${k}=${o.cid}`)
  return `${bucket.anchorMin}-${bucket.anchorMax}:${objects.join(',')}`
}

/** Buckets in leaves that only one of two trees reaches. */
async function uniqueBuckets(repo: Repository, a: CID | null, b: CID | null, options: AbortOptions) {
  const nodesOf = async (root: CID | null) => {
    const leaves = new Map<string, Bucket[]>()
    for await (const { cid, node } of treeNodes(repo.nodes, root, new Set(), options)) {
      leaves.set(cid.toString(), 'buckets' in node ? node.buckets : [])
    }
    return leaves
  }
  const [na, nb] = await Promise.all([nodesOf(a), nodesOf(b)])
  const only = (x: Map<string, Bucket[]>, y: Map<string, Bucket[]>) =>
    [...x].filter(([cid]) => !y.has(cid)).flatMap(([, buckets]) => buckets)
  return [only(na, nb), only(nb, na)] as const
}
