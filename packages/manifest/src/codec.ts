/**
 * Strict DAG-CBOR codecs for every object the manifest layer stores. Decoding accepts
 * exactly one canonical encoding per value: unknown versions, unknown or missing keys,
 * wrong types, non-integers where integers belong, NaN, duplicate keys, trailing bytes
 * and non-canonical encodings are all rejected, so a state always has one CID.
 */
import {
  DAG_CBOR_CODEC,
  decodeStrict,
  encodeStrict,
  ObjectShapeError,
  type StrictMap,
  shape,
} from '@dreamdb/cas'
import { CorruptObjectError, UnsupportedVersionError } from './errors.js'
import { readMeta } from './meta.js'
import {
  type AnchorRange,
  BINARY_MEDIA,
  type Bucket,
  type Change,
  type Field,
  type FieldObject,
  type Layer,
  type Manifest,
  METRICS,
  type RefTarget,
  SCALAR_KINDS,
  type Schema,
  type TreeChild,
  type TreeNode,
} from './model.js'

export const FORMAT_VERSION = 1
/**
 * The deepest a bucket tree may nest: a root at level 48 holds at least 2^48 buckets even at
 * the smallest fanout (2), far more than any store; deeper is refused as corrupt.
 */
export const MAX_TREE_LEVEL = 48
export const DAG_CBOR = DAG_CBOR_CODEC
const UINT64_MAX = 2n ** 64n - 1n

type Kind = 'manifest' | 'tree' | 'ref'
const WHAT: Record<Kind, string> = { manifest: 'Manifest', tree: 'Timeline node', ref: 'Ref' }

const { map, string, oneOf, count, uint64, bool, link, nullable, list, record } = shape

export function readField(value: unknown, path: string): Field {
  const family = (value as StrictMap | null)?.family
  if (family === 'binary') {
    const f = map(value, path, ['name', 'family', 'media'])
    return {
      name: string(f.name, `${path}.name`),
      family,
      media: oneOf(f.media, `${path}.media`, BINARY_MEDIA),
    }
  }
  if (family === 'scalar') {
    const f = map(value, path, ['name', 'family', 'kind'])
    return { name: string(f.name, `${path}.name`), family, kind: oneOf(f.kind, `${path}.kind`, SCALAR_KINDS) }
  }
  if (family === 'embedding') {
    const f = map(value, path, [
      'name',
      'family',
      'dim',
      'metric',
      'algorithm',
      'spatialIndex',
      'compressor',
      'rerank',
    ])
    return {
      name: string(f.name, `${path}.name`),
      family,
      dim: count(f.dim, `${path}.dim`),
      metric: oneOf(f.metric, `${path}.metric`, METRICS),
      algorithm: nullable(f.algorithm, (v) => string(v, `${path}.algorithm`)),
      spatialIndex: nullable(f.spatialIndex, (v) => link(v, `${path}.spatialIndex`)),
      compressor: nullable(f.compressor, (v) => link(v, `${path}.compressor`)),
      rerank: bool(f.rerank, `${path}.rerank`),
    }
  }
  throw new ObjectShapeError(`${path}.family must be binary, embedding or scalar`)
}

function readSchema(value: unknown, path: string): Schema {
  const s = map(value, path, ['fields'])
  return { fields: list(s.fields, `${path}.fields`, readField) }
}

function readFieldObject(value: unknown, path: string): FieldObject {
  const o = map(value, path, ['cid', 'bytes'])
  return { cid: link(o.cid, `${path}.cid`), bytes: count(o.bytes, `${path}.bytes`) }
}

function readAnchorRange(value: unknown, path: string): AnchorRange {
  if (!Array.isArray(value) || value.length !== 2)
    throw new ObjectShapeError(`${path} must be [start, count]`)
  return { start: uint64(value[0], `${path}[0]`), count: count(value[1], `${path}[1]`) }
}

export function readBucket(value: unknown, path: string): Bucket {
  return checkBucket(readBucketFields(value, path), path)
}

/**
 * What every bucket holds by construction: at least one record, ordered bounds, and for a
 * timeline bucket anchor ranges that cover exactly its records and span exactly its bounds.
 */
function checkBucket(bucket: Bucket, path: string): Bucket {
  if (bucket.records < 1) throw new ObjectShapeError(`${path}.records must be at least 1`)
  if (bucket.anchorMin > bucket.anchorMax) throw new ObjectShapeError(`${path}.anchorMin is above anchorMax`)
  if (bucket.timeMin > bucket.timeMax) throw new ObjectShapeError(`${path}.timeMin is after timeMax`)
  const ranges = bucket.anchorRanges
  if (ranges === null) return bucket
  if (ranges.length === 0) throw new ObjectShapeError(`${path}.anchorRanges is empty`)
  let covered = 0
  let min = ranges[0]!.start
  let max = 0n
  for (const [i, range] of ranges.entries()) {
    if (range.count < 1) throw new ObjectShapeError(`${path}.anchorRanges[${i}] covers no anchor`)
    const last = range.start + BigInt(range.count) - 1n
    if (last > UINT64_MAX) throw new ObjectShapeError(`${path}.anchorRanges[${i}] passes the uint64 range`)
    covered += range.count
    if (range.start < min) min = range.start
    if (last > max) max = last
  }
  if (covered !== bucket.records) {
    throw new ObjectShapeError(`${path}.anchorRanges cover ${covered} anchors for ${bucket.records} records`)
  }
  if (min !== bucket.anchorMin || max !== bucket.anchorMax) {
    throw new ObjectShapeError(
      `${path} says anchors ${bucket.anchorMin}..${bucket.anchorMax}, its anchorRanges span ${min}..${max}`,
    )
  }
  return bucket
}

function readBucketFields(value: unknown, path: string): Bucket {
  const b = map(value, path, [
    'records',
    'anchorMin',
    'anchorMax',
    'anchorRanges',
    'timeMin',
    'timeMax',
    'fields',
  ])
  return {
    records: count(b.records, `${path}.records`),
    anchorMin: uint64(b.anchorMin, `${path}.anchorMin`),
    anchorMax: uint64(b.anchorMax, `${path}.anchorMax`),
    anchorRanges: nullable(b.anchorRanges, (v) => list(v, `${path}.anchorRanges`, readAnchorRange)),
    timeMin: count(b.timeMin, `${path}.timeMin`),
    timeMax: count(b.timeMax, `${path}.timeMax`),
    fields: record(b.fields, `${path}.fields`, readFieldObject),
  }
}

function readLayer(value: unknown, path: string): Layer {
  const l = map(value, path, ['name', 'parent', 'field', 'segments', 'records', 'bytes'])
  return {
    name: string(l.name, `${path}.name`),
    parent: string(l.parent, `${path}.parent`),
    field: readField(l.field, `${path}.field`),
    segments: nullable(l.segments, (v) => link(v, `${path}.segments`)),
    records: count(l.records, `${path}.records`),
    bytes: count(l.bytes, `${path}.bytes`),
  }
}

function readChange(value: unknown, path: string): Change {
  const kind = (value as StrictMap | null)?.kind
  switch (kind) {
    case 'create':
      map(value, path, ['kind'])
      return { kind }
    case 'append': {
      const c = map(value, path, ['kind', 'buckets', 'records'])
      return {
        kind,
        buckets: count(c.buckets, `${path}.buckets`),
        records: count(c.records, `${path}.records`),
      }
    }
    case 'layer': {
      const c = map(value, path, ['kind', 'name', 'segments', 'records'])
      return {
        kind,
        name: string(c.name, `${path}.name`),
        segments: count(c.segments, `${path}.segments`),
        records: count(c.records, `${path}.records`),
      }
    }
    case 'schema': {
      const c = map(value, path, ['kind', 'added', 'replaced'])
      return {
        kind,
        added: list(c.added, `${path}.added`, string),
        replaced: list(c.replaced, `${path}.replaced`, string),
      }
    }
    case 'compact': {
      const c = map(value, path, ['kind', 'start', 'replaced', 'buckets'])
      return {
        kind,
        start: count(c.start, `${path}.start`),
        replaced: count(c.replaced, `${path}.replaced`),
        buckets: count(c.buckets, `${path}.buckets`),
      }
    }
    case 'migrate': {
      const c = map(value, path, ['kind', 'field', 'buckets'])
      return { kind, field: string(c.field, `${path}.field`), buckets: count(c.buckets, `${path}.buckets`) }
    }
    case 'drop': {
      const c = map(value, path, ['kind', 'layer', 'records'])
      return { kind, layer: string(c.layer, `${path}.layer`), records: count(c.records, `${path}.records`) }
    }
    case 'drop-field': {
      const c = map(value, path, ['kind', 'field', 'buckets'])
      return { kind, field: string(c.field, `${path}.field`), buckets: count(c.buckets, `${path}.buckets`) }
    }
    case 'merge': {
      const c = map(value, path, ['kind', 'from', 'buckets', 'records', 'layers'])
      return {
        kind,
        from: link(c.from, `${path}.from`),
        buckets: count(c.buckets, `${path}.buckets`),
        records: count(c.records, `${path}.records`),
        layers: list(c.layers, `${path}.layers`, string),
      }
    }
    case 'restore': {
      const c = map(value, path, ['kind', 'from'])
      return { kind, from: link(c.from, `${path}.from`) }
    }
    default:
      throw new ObjectShapeError(`${path}.kind is not a known change`)
  }
}

function readManifest(m: StrictMap): Manifest {
  map(
    m,
    'manifest',
    ['v', 'type', 'schema', 'timeline', 'layers', 'parents', 'message', 'timestamp', 'change', 'stats'],
    ['meta'],
  )
  const stats = map(m.stats, 'stats', ['records', 'buckets', 'bytes'])
  const manifest: Manifest = {
    schema: readSchema(m.schema, 'schema'),
    timeline: nullable(m.timeline, (v) => link(v, 'timeline')),
    layers: list(m.layers, 'layers', readLayer),
    parents: list(m.parents, 'parents', link),
    message: string(m.message, 'message'),
    timestamp: count(m.timestamp, 'timestamp'),
    change: readChange(m.change, 'change'),
    stats: {
      records: count(stats.records, 'stats.records'),
      buckets: count(stats.buckets, 'stats.buckets'),
      bytes: record(stats.bytes, 'stats.bytes', count),
    },
  }
  if ('meta' in m) manifest.meta = readMeta(m.meta, 'meta')
  const { timeline, parents, layers } = manifest
  if ((timeline === null) !== (manifest.stats.buckets === 0)) {
    throw new ObjectShapeError(
      `stats.buckets is ${manifest.stats.buckets} with timeline ${timeline === null ? 'null' : 'set'}`,
    )
  }
  if (manifest.stats.records < manifest.stats.buckets)
    throw new ObjectShapeError('stats has fewer records than buckets')
  if (new Set(parents.map(String)).size !== parents.length)
    throw new ObjectShapeError('parents lists a manifest twice')
  for (const [i, layer] of layers.entries()) {
    if (layer.name !== layer.field.name)
      throw new ObjectShapeError(`layers[${i}].name differs from its field's name`)
    if (i > 0 && !(layers[i - 1]!.name < layer.name))
      throw new ObjectShapeError('layers are not sorted by unique name')
    if ((layer.segments === null) !== (layer.records === 0)) {
      throw new ObjectShapeError(
        `layers[${i}] has ${layer.records} records with segments ${layer.segments === null ? 'null' : 'set'}`,
      )
    }
  }
  return manifest
}

function readTreeChild(value: unknown, path: string): TreeChild {
  const c = map(value, path, [
    'node',
    'buckets',
    'records',
    'bytes',
    'anchorMin',
    'anchorMax',
    'timeMin',
    'timeMax',
  ])
  const child: TreeChild = {
    node: link(c.node, `${path}.node`),
    buckets: count(c.buckets, `${path}.buckets`),
    records: count(c.records, `${path}.records`),
    bytes: count(c.bytes, `${path}.bytes`),
    anchorMin: uint64(c.anchorMin, `${path}.anchorMin`),
    anchorMax: uint64(c.anchorMax, `${path}.anchorMax`),
    timeMin: count(c.timeMin, `${path}.timeMin`),
    timeMax: count(c.timeMax, `${path}.timeMax`),
  }
  if (child.buckets < 1) throw new ObjectShapeError(`${path}.buckets must be at least 1`)
  if (child.records < child.buckets) throw new ObjectShapeError(`${path} has fewer records than buckets`)
  if (child.anchorMin > child.anchorMax) throw new ObjectShapeError(`${path}.anchorMin is above anchorMax`)
  if (child.timeMin > child.timeMax) throw new ObjectShapeError(`${path}.timeMin is after timeMax`)
  return child
}

function readTree(t: StrictMap): TreeNode {
  const level = count(t.level, 'level')
  if (level > MAX_TREE_LEVEL)
    throw new ObjectShapeError(`level ${level} is deeper than the limit (${MAX_TREE_LEVEL})`)
  if (level === 0) {
    map(t, 'node', ['v', 'type', 'level', 'buckets'])
    const buckets = list(t.buckets, 'buckets', readBucket)
    if (buckets.length === 0) throw new ObjectShapeError('a leaf must hold at least one bucket')
    return { level: 0, buckets }
  }
  map(t, 'node', ['v', 'type', 'level', 'children'])
  const children = list(t.children, 'children', readTreeChild)
  if (children.length === 0) throw new ObjectShapeError('an interior node must have at least one child')
  const distinct = new Set(children.map((c) => c.node.toString()))
  if (distinct.size !== children.length)
    throw new ObjectShapeError('an interior node lists the same child twice')
  return { level, children }
}

function readRef(r: StrictMap): RefTarget {
  map(r, 'ref', ['v', 'type', 'kind', 'manifest', 'timeline'])
  return {
    kind: oneOf(r.kind, 'kind', ['branch', 'snapshot'] as const),
    manifest: link(r.manifest, 'manifest'),
    timeline: nullable(r.timeline, (v) => link(v, 'timeline')),
  }
}

const anchorRange = (r: AnchorRange): [bigint, number] => [r.start, r.count]
const fieldObjects = (fields: Record<string, FieldObject>) =>
  Object.fromEntries(Object.entries(fields).map(([k, o]) => [k, { cid: o.cid, bytes: o.bytes }]))

function bucketForm(b: Bucket): StrictMap {
  return {
    records: b.records,
    anchorMin: b.anchorMin,
    anchorMax: b.anchorMax,
    anchorRanges: b.anchorRanges === null ? null : b.anchorRanges.map(anchorRange),
    timeMin: b.timeMin,
    timeMax: b.timeMax,
    fields: fieldObjects(b.fields),
  }
}

/** The plain data model of one object, as stored. */
function form(kind: Kind, value: Manifest | TreeNode | RefTarget): StrictMap {
  const head = { v: FORMAT_VERSION, type: kind }
  if (kind === 'ref') {
    const r = value as RefTarget
    return { ...head, kind: r.kind, manifest: r.manifest, timeline: r.timeline }
  }
  if (kind === 'tree') {
    const t = value as TreeNode
    return 'buckets' in t
      ? { ...head, level: 0, buckets: t.buckets.map(bucketForm) }
      : { ...head, level: t.level, children: t.children.map((c) => ({ ...c })) }
  }
  const m = value as Manifest
  return {
    ...head,
    schema: { fields: m.schema.fields.map((f) => ({ ...f })) },
    timeline: m.timeline,
    layers: m.layers.map((l) => ({ ...l, field: { ...l.field } })),
    parents: m.parents,
    message: m.message,
    timestamp: m.timestamp,
    change: { ...m.change },
    stats: { records: m.stats.records, buckets: m.stats.buckets, bytes: { ...m.stats.bytes } },
    // Absent, not null, without meta: manifests written before meta existed keep their CIDs.
    ...(m.meta === undefined ? {} : { meta: m.meta }),
  }
}

export function encodeManifest(manifest: Manifest): Uint8Array {
  return encodeStrict(form('manifest', manifest))
}

export function encodeTreeNode(node: TreeNode): Uint8Array {
  return encodeStrict(form('tree', node))
}

export function encodeRefTarget(target: RefTarget): Uint8Array {
  return encodeStrict(form('ref', target))
}

function decode(kind: Kind, id: string, bytes: Uint8Array): unknown {
  return decodeStrict(bytes, {
    check(value) {
      const obj = value as StrictMap | null
      if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
        throw new CorruptObjectError(WHAT[kind], id, 'the top level is not a map')
      }
      if (obj.type !== kind) {
        throw new CorruptObjectError(
          WHAT[kind],
          id,
          `it is a ${JSON.stringify(obj.type)} object, not a ${kind}`,
        )
      }
      if (obj.v !== FORMAT_VERSION) throw new UnsupportedVersionError(WHAT[kind], id, obj.v)
    },
    read: (value) => {
      const obj = value as StrictMap
      return kind === 'manifest' ? readManifest(obj) : kind === 'tree' ? readTree(obj) : readRef(obj)
    },
    form: (parsed) => form(kind, parsed),
    corrupt: (reason, options) => new CorruptObjectError(WHAT[kind], id, reason, options),
  })
}

export function decodeManifest(bytes: Uint8Array, id: string): Manifest {
  return decode('manifest', id, bytes) as Manifest
}

export function decodeTreeNode(bytes: Uint8Array, id: string): TreeNode {
  return decode('tree', id, bytes) as TreeNode
}

export function decodeRefTarget(bytes: Uint8Array, refName: string): RefTarget {
  return decode('ref', `'${refName}'`, bytes) as RefTarget
}
