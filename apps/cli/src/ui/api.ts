/**
 * The viewer's JSON API: read-only handlers over one open store, each taking the query of a
 * GET under /api/ and the request's AbortSignal (aborted when the browser goes away). Every
 * answer is a `dreamdb.ui.<name>/1` document, or image bytes; errors are thrown and become
 * `dreamdb.error/1` documents in `server.ts`. Documented in design/0009-viewer.md.
 */

import { cidOf, type Store } from '@dreamdb/cas'
import { Dataset } from '@dreamdb/dataset'
import {
  assertUserRefName,
  type Field,
  inspect as inspectState,
  log,
  diff as manifestDiff,
  type Repository,
} from '@dreamdb/manifest'
import { LRUCache } from 'lru-cache'
import { CID } from 'multiformats/cid'
import { isEmptyDiff } from '../commands/diff.js'
import { describeChange } from '../commands/log.js'
import { sourceOf } from '../context.js'
import { AnchorNotFoundError, CliError, FieldKindError, UsageError } from '../errors.js'
import { plainValue } from '../render/values.js'
import { type Comparison, computeComparison, key } from './compare.js'
import { webImage } from './images.js'
import {
  anchorRuns,
  fieldMap,
  objectCache,
  type Predicate,
  positionsOf,
  type Row,
  readPositions,
  readRange,
  scanPositions,
} from './read.js'

/** A route of the API that does not exist. */
export class RouteNotFoundError extends CliError {
  static readonly code = 'ERR_CLI_UI_NOT_FOUND'
  override readonly name = 'RouteNotFoundError'
  readonly code = RouteNotFoundError.code
}

/** A record position past the end of the state. */
export class PositionError extends CliError {
  static readonly code = 'ERR_CLI_UI_NO_SUCH_RECORD'
  override readonly name = 'PositionError'
  readonly code = PositionError.code
}

export type Reply =
  | { json: object; immutable?: boolean }
  | {
      bytes: Uint8Array
      type: string
      immutable: boolean
      /** The bytes' content address (a quoted CID): a browser revalidating gets 304. */
      etag?: string
    }

export type Handler = (query: URLSearchParams, signal: AbortSignal) => Promise<Reply>

/** Page sizes the API serves at most. */
export const MAX_PAGE = 500
/** Records a filtered page examines at most before answering with a cursor to continue. */
export const SCAN_BUDGET = 2_000_000

// -- parameters ---------------------------------------------------------------------------

function required(q: URLSearchParams, name: string): string {
  const value = q.get(name)
  if (value === null || value === '') throw new UsageError(`the query needs '${name}'`)
  return value
}

/**
 * A ref from the URL: a manifest CID, or a name that passes the same validation as every
 * ref the CLI creates (no '..', no '_' reserved names, only '/'-separated safe segments),
 * so that no URL reaches a path outside the store's refs.
 */
export function refParam(q: URLSearchParams, name = 'ref'): string | CID {
  const value = required(q, name)
  const source = sourceOf(value)
  if (typeof source === 'string') assertUserRefName(source)
  return source
}

function intParam(q: URLSearchParams, name: string, fallback: number, min: number, max: number): number {
  const raw = q.get(name)
  if (raw === null || raw === '') return fallback
  const n = Number(raw)
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max)
    throw new UsageError(`'${name}' must be an integer from ${min} to ${max}, not '${raw}'`)
  return n
}

function listParam(q: URLSearchParams, name: string): string[] | undefined {
  const raw = q.get(name)
  if (raw === null || raw === '') return undefined
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
}

// -- values as JSON -----------------------------------------------------------------------

/** Images up to this size (stored and as sent) are inlined in pages of records. */
const INLINE_BYTES = 8 * 1024

/** How many numbers of a vector a page shows; a record's detail has them all. */
const VECTOR_PREVIEW = 8

function imageUrl(manifest: string, position: number, field: string): string {
  return `/api/image?${new URLSearchParams({ ref: manifest, position: String(position), field })}`
}

/** One value as JSON: binary as its size and URL, vectors cut to a preview unless `full`. */
function jsonValue(
  field: Field | undefined,
  value: unknown,
  at: { manifest: string; position: number; name: string },
  full: boolean,
): unknown {
  if (value instanceof Uint8Array) {
    // Small images (thumbnails, digits) come inline with the page, as data URLs: a grid of
    // 100 is one request instead of 101. The URL serves the bytes either way.
    let inline: string | undefined
    if (!full && field?.family === 'binary' && field.media === 'image' && value.byteLength <= INLINE_BYTES) {
      const image = webImage(value)
      if (image.type.startsWith('image/') && image.bytes.byteLength <= INLINE_BYTES)
        inline = `data:${image.type};base64,${Buffer.from(image.bytes).toString('base64')}`
    }
    return {
      bytes: value.byteLength,
      ...(field?.family === 'binary' ? { media: field.media } : {}),
      url: imageUrl(at.manifest, at.position, at.name),
      ...(inline ? { inline } : {}),
    }
  }
  const plain = plainValue(field, value, 'count')
  if (field?.family === 'embedding' && Array.isArray(plain) && !full) {
    return { dim: plain.length, head: plain.slice(0, VECTOR_PREVIEW) }
  }
  return plain
}

function jsonRow(ds: Dataset, fields: Map<string, Field>, row: Row, full = false) {
  const manifest = ds.currentManifest()
  const values: Record<string, unknown> = {}
  for (const [name, value] of Object.entries(row.values)) {
    values[name] = jsonValue(fields.get(name), value, { manifest, position: row.position, name }, full)
  }
  return { position: row.position, anchor: row.anchor.toString(), values }
}

// -- the API ------------------------------------------------------------------------------

export interface ApiOptions {
  repo: Repository
  store: Store
}

/** Stored bytes of the decoded objects pages keep. */
const OBJECT_BYTES = 256 * 1024 * 1024

/** Bytes the cached comparisons may hold at most (one larger than this is not kept). */
const COMPARISON_BYTES = 512 * 1024 * 1024

/** The memory a comparison keeps alive: the buffers under its columns. */
function heldBytes(c: Comparison): number {
  const buffers = new Set<ArrayBufferLike>([c.anchors.buffer])
  for (const column of [...c.codes, ...(c.labels ?? [])]) buffers.add(column.buffer)
  let bytes = 0
  for (const b of buffers) bytes += b.byteLength
  return Math.max(1, bytes)
}

/** Build the handlers, with their caches (states are immutable: keyed by manifest CID). */
export function createApi({ repo, store }: ApiOptions): Map<string, Handler> {
  // Open datasets by manifest: each keeps its codecs and search indexes for the next request.
  const datasets = new LRUCache<string, Promise<Dataset>>({ max: 16 })
  // Image bytes of records a page has just read: the grid's <img> requests follow at once.
  const images = new LRUCache<string, Uint8Array>({
    maxSize: 64 * 1024 * 1024,
    sizeCalculation: (b) => Math.max(1, b.byteLength),
  })
  // The last comparisons, bounded by the bytes they hold (a run's codes may be a view of the
  // layer object it was read from: 12 bytes a record while cached).
  // Decoded objects of the buckets pages read (columns, images' indexes): the next page of
  // the same bucket reads only its images' bytes.
  const objects = objectCache(OBJECT_BYTES)
  const comparisons = new LRUCache<string, Promise<Comparison>>({ max: 8, maxSize: COMPARISON_BYTES })

  /** The dataset at a ref or manifest; the ref is read on every request, the state cached. */
  async function open(source: string | CID, signal: AbortSignal): Promise<Dataset> {
    const resolved = await repo.resolve(source, { signal })
    const cid = resolved.target.manifest.toString()
    let ds = datasets.get(cid)
    if (ds === undefined) {
      // Not tied to this request's signal: the next request reuses it.
      ds = Dataset.openAt(cid, { backend: store })
      datasets.set(cid, ds)
      ds.catch(() => datasets.delete(cid))
    }
    return await ds
  }

  function keepImages(ds: Dataset, rows: Row[]): void {
    for (const row of rows) {
      for (const [name, value] of Object.entries(row.values)) {
        if (value instanceof Uint8Array) images.set(`${ds.currentManifest()}|${name}|${row.position}`, value)
      }
    }
  }

  function checkFields(known: Map<string, Field>, asked: string[]): void {
    for (const name of asked) {
      if (!known.has(name)) {
        throw Object.assign(
          new UsageError(`unknown field '${name}'`, `the fields are ${[...known.keys()].join(', ')}`),
          {},
        )
      }
    }
  }

  /** `label=3,split=train,prediction!=7`, typed against the fields. */
  function predicate(known: Map<string, Field>, items: string[], differ: string[] | undefined) {
    const tests: ((v: Record<string, unknown>) => boolean)[] = []
    const columns = new Set<string>()
    for (const item of items) {
      const m = /^([^=!]+)(!?=)(.*)$/.exec(item)
      if (m === null) throw new UsageError(`filter '${item}' is not field=value or field!=value`)
      const [, name, op, value] = m as unknown as [string, string, string, string]
      const field = known.get(name)
      if (field === undefined || field.family !== 'scalar')
        throw new FieldKindError(`filter names '${name}', which is not a scalar field or layer`)
      columns.add(name)
      tests.push(op === '=' ? (v) => key(v[name]) === value : (v) => key(v[name]) !== value)
    }
    if (differ !== undefined) {
      if (differ.length !== 2) throw new UsageError(`'differ' takes two fields, e.g. differ=prediction,label`)
      checkFields(known, differ)
      const [a, b] = differ as [string, string]
      columns.add(a).add(b)
      tests.push((v) => key(v[a]) !== null && key(v[b]) !== null && key(v[a]) !== key(v[b]))
    }
    const match: Predicate = (v) => tests.every((t) => t(v))
    return { match, columns: [...columns], active: tests.length > 0 }
  }

  /** The pairwise comparison of `field` across refs (and each against `label`), cached by state. */
  async function comparison(
    refs: string[],
    field: string,
    labelAsked: string | undefined,
    signal: AbortSignal,
  ) {
    const states = await Promise.all(refs.map((r) => open(r, signal)))
    const manifests = states.map((d) => d.currentManifest())
    const hasLabel = (d: Dataset, name: string) => d.manifest.schema.fields.some((f) => f.name === name)
    const label =
      labelAsked === '' ? null : (labelAsked ?? (states.every((d) => hasLabel(d, 'label')) ? 'label' : null))
    if (label !== null) for (const d of states) checkFields(fieldMap(d), [label])
    const id = JSON.stringify([manifests, field, label])
    let entry = comparisons.get(id)
    if (entry === undefined) {
      entry = computeComparison(refs, states, field, label, signal)
      comparisons.set(id, entry, { size: 1 })
      entry.then(
        (done) => {
          if (comparisons.peek(id) === entry) comparisons.set(id, entry, { size: heldBytes(done) })
        },
        () => comparisons.delete(id),
      )
    }
    return { states, result: await entry }
  }

  async function refsFromQuery(q: URLSearchParams, signal: AbortSignal): Promise<string[]> {
    const listed = listParam(q, 'refs')
    const prefix = q.get('prefix')
    if (listed !== undefined && prefix !== null)
      throw new UsageError(`'refs' and 'prefix' contradict each other`)
    if (listed !== undefined) {
      for (const r of listed) assertUserRefName(r)
      if (new Set(listed).size !== listed.length) throw new UsageError('a ref is named twice')
      return listed
    }
    if (prefix === null) throw new UsageError(`the query needs 'refs' or 'prefix'`)
    // A prefix is a ref name in the making: the same characters, a trailing '/' allowed.
    if (prefix !== '') assertUserRefName(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix)
    const refs: string[] = []
    for await (const ref of repo.listRefs(prefix, { signal })) refs.push(ref.name)
    return refs
  }

  const handlers = new Map<string, Handler>()

  handlers.set('refs', async (q, signal) => {
    const prefix = q.get('prefix') ?? ''
    if (prefix !== '') assertUserRefName(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix)
    const refs = []
    for await (const ref of repo.scanRefs(prefix, { signal })) {
      refs.push(
        ref.damaged
          ? { name: ref.name, damaged: true, code: ref.code, message: ref.reason }
          : {
              name: ref.name,
              kind: ref.kind,
              manifest: ref.manifest.toString(),
              records: ref.records,
              damaged: false,
            },
      )
    }
    return { json: { format: 'dreamdb.ui.refs/1', backend: store.url, prefix, refs } }
  })

  // The manifest DAG behind every ref (or one), newest first, at most `limit` states.
  handlers.set('graph', async (q, signal) => {
    const limit = intParam(q, 'limit', 200, 1, 5000)
    const heads: { name: string; kind: string; manifest: CID }[] = []
    if (q.get('ref')) {
      const source = refParam(q)
      const resolved = await repo.resolve(source, { signal })
      heads.push({
        name: String(q.get('ref')),
        kind: resolved.target.kind,
        manifest: resolved.target.manifest,
      })
    }
    const all: { name: string; kind: string; manifest: CID }[] = []
    for await (const ref of repo.listRefs('', { signal })) all.push(ref)
    if (heads.length === 0) heads.push(...all)
    const refsAt = new Map<string, { name: string; kind: string }[]>()
    for (const r of all) {
      const k = r.manifest.toString()
      refsAt.set(k, [...(refsAt.get(k) ?? []), { name: r.name, kind: r.kind }])
    }
    const nodes: object[] = []
    const seen = new Set<string>()
    const queue = heads.map((h) => h.manifest)
    let truncated = false
    while (queue.length > 0) {
      const cid = queue.shift()!
      const k = cid.toString()
      if (seen.has(k)) continue
      if (nodes.length >= limit) {
        truncated = true
        break
      }
      seen.add(k)
      const m = await repo.loadManifest(cid, { signal })
      nodes.push({
        manifest: k,
        parents: m.parents.map(String),
        message: m.message,
        timestamp: m.timestamp,
        change: m.change,
        summary: describeChange(m.change),
        records: m.stats.records,
        refs: refsAt.get(k) ?? [],
      })
      queue.push(...m.parents)
    }
    return { json: { format: 'dreamdb.ui.graph/1', nodes, truncated } }
  })

  handlers.set('history', async (q, signal) => {
    const source = refParam(q)
    const limit = intParam(q, 'limit', 100, 1, 5000)
    return {
      json: {
        format: 'dreamdb.ui.history/1',
        ref: q.get('ref'),
        entries: await log(repo, source, { signal, limit }),
      },
    }
  })

  // A commit's details: schema, layers, sizes, object counts (not every object: a state
  // can reference millions; `objects` groups them by role and field).
  handlers.set('commit', async (q, signal) => {
    const source = refParam(q)
    const inspection = await inspectState(repo, source, { signal })
    const { objects, buckets, ...rest } = inspection
    const byRole: Record<string, { count: number; bytes: number }> = {}
    for (const o of objects) {
      const k = o.field ? `${o.role}:${o.field}` : o.role
      const entry = byRole[k] ?? { count: 0, bytes: 0 }
      byRole[k] = entry
      entry.count++
      entry.bytes += o.bytes ?? 0
    }
    return {
      json: {
        format: 'dreamdb.ui.commit/1',
        ...rest,
        objects: { count: objects.length, bytes: objects.reduce((n, o) => n + (o.bytes ?? 0), 0), byRole },
        buckets: { count: buckets.length, first: buckets.slice(0, 20) },
      },
      immutable: typeof source !== 'string',
    }
  })

  handlers.set('records', async (q, signal) => {
    const ds = await open(refParam(q), signal)
    const known = fieldMap(ds)
    const fields = listParam(q, 'fields') ?? [...known.keys()]
    checkFields(known, fields)
    const limit = intParam(q, 'limit', 50, 1, MAX_PAGE)
    const total = ds.manifest.stats.records
    const filter = predicate(known, listParam(q, 'filter') ?? [], listParam(q, 'differ'))
    let rows: Row[]
    let page: object
    if (!filter.active) {
      const offset = intParam(q, 'offset', 0, 0, Number.MAX_SAFE_INTEGER)
      rows = await readRange(ds, offset, limit, fields, signal, objects)
      page = { offset, next: offset + rows.length < total ? offset + rows.length : null }
    } else {
      // Filtered: scan the filter's columns from the cursor until a page has matched, then
      // read those records' fields; `next` continues the scan.
      const from = intParam(q, 'from', 0, 0, Number.MAX_SAFE_INTEGER)
      const scan = await scanPositions(ds, from, limit, filter.columns, filter.match, signal, SCAN_BUDGET)
      rows = await readPositions(ds, scan.positions, fields, signal, objects)
      page = { from, next: scan.done ? null : scan.next, scanned: scan.scanned }
    }
    keepImages(ds, rows)
    return {
      json: {
        format: 'dreamdb.ui.records/1',
        ref: q.get('ref'),
        manifest: ds.currentManifest(),
        total,
        fields: fields.map((name) => ({
          ...known.get(name)!,
          layer: ds.manifest.layers.some((l) => l.name === name),
        })),
        ...page,
        records: rows.map((r) => jsonRow(ds, known, r)),
      },
    }
  })

  // One record, every field and layer, vectors in full.
  handlers.set('record', async (q, signal) => {
    const ds = await open(refParam(q), signal)
    const known = fieldMap(ds)
    let position: number
    if (q.get('anchor')) {
      const raw = required(q, 'anchor')
      if (!/^\d+$/.test(raw)) throw new UsageError(`'anchor' must be an integer, not '${raw}'`)
      const found = (await positionsOf(ds, [BigInt(raw)], signal)).get(BigInt(raw))
      if (found === undefined) throw new AnchorNotFoundError(`no record has anchor ${raw} in ${q.get('ref')}`)
      position = found
    } else {
      position = intParam(q, 'position', 0, 0, Number.MAX_SAFE_INTEGER)
    }
    if (position >= ds.manifest.stats.records)
      throw new PositionError(
        `${q.get('ref')} has ${ds.manifest.stats.records} records; there is none at ${position}`,
      )
    const [row] = await readPositions(ds, [position], [...known.keys()], signal, objects)
    keepImages(ds, [row!])
    return {
      json: {
        format: 'dreamdb.ui.record/1',
        ref: q.get('ref'),
        manifest: ds.currentManifest(),
        fields: [...known].map(([name, f]) => ({
          ...f,
          layer: ds.manifest.layers.some((l) => l.name === name),
        })),
        record: jsonRow(ds, known, row!, true),
      },
    }
  })

  // A binary value's bytes with their content type (netpbm converted to PNG).
  handlers.set('image', async (q, signal) => {
    const source = refParam(q)
    const ds = await open(source, signal)
    const name = required(q, 'field')
    const field = fieldMap(ds).get(name)
    if (field?.family !== 'binary') throw new FieldKindError(`'${name}' is not a binary field`)
    const position = intParam(q, 'position', 0, 0, Number.MAX_SAFE_INTEGER)
    if (position >= ds.manifest.stats.records) throw new PositionError(`there is no record at ${position}`)
    const cacheKey = `${ds.currentManifest()}|${name}|${position}`
    let bytes = images.get(cacheKey)
    if (bytes === undefined) {
      const [row] = await readPositions(ds, [position], [name], signal, objects)
      bytes = row?.values[name] as Uint8Array | undefined
    }
    if (!(bytes instanceof Uint8Array)) throw new PositionError(`record ${position} has no ${name}`)
    const image = webImage(bytes)
    // The stored bytes' CID, marked when they are served converted (netpbm as PNG).
    const etag = `"${cidOf(bytes)}${image.bytes === bytes ? '' : '.png'}"`
    return { ...image, immutable: typeof source !== 'string', etag }
  })

  handlers.set('compare', async (q, signal) => {
    const refs = await refsFromQuery(q, signal)
    if (refs.length < 2) throw new UsageError(`a comparison needs at least two refs, got ${refs.length}`)
    if (refs.length > 64) throw new UsageError(`at most 64 refs at once, got ${refs.length}`)
    const field = q.get('field') || 'prediction'
    const { result } = await comparison(refs, field, q.get('label') ?? undefined, signal)
    return {
      json: {
        format: 'dreamdb.ui.compare/1',
        ...result.matrix,
        manifests: result.manifests,
        label: result.label,
        accuracy: result.accuracy,
        records: result.records,
      },
    }
  })

  // The records where two refs disagree on the field (a == b: where the ref disagrees with
  // the label), with both values, the label, and the first ref's other scalar fields.
  handlers.set('disagreements', async (q, signal) => {
    const refs = listParam(q, 'refs')
    if (refs === undefined || refs.length < 1 || refs.length > 2)
      throw new UsageError(`'refs' names one or two refs: a,b (or a alone: against the label)`)
    for (const r of refs) assertUserRefName(r)
    const pair = refs.length === 1 ? [refs[0]!, refs[0]!] : refs
    const all = listParam(q, 'context') ?? [...new Set(pair)]
    for (const r of all) assertUserRefName(r)
    if (!pair.every((r) => all.includes(r))) throw new UsageError(`'context' must hold the refs of the pair`)
    const field = q.get('field') || 'prediction'
    const { states, result } = await comparison(all, field, q.get('label') ?? undefined, signal)
    const [i, j] = pair.map((r) => all.indexOf(r)) as [number, number]
    if (i === j && result.labels === null)
      throw new UsageError('comparing a ref with itself needs a label field')
    const a = result.codes[i]!
    const b = i === j ? result.labels![i]! : result.codes[j]!
    const offset = intParam(q, 'offset', 0, 0, Number.MAX_SAFE_INTEGER)
    const limit = intParam(q, 'limit', 48, 1, MAX_PAGE)
    const hits: number[] = []
    let count = 0
    for (let r = 0; r < a.length; r++) {
      const x = a[r]!
      const y = b[r]!
      if (x < 0 || y < 0 || x === y) continue
      if (count >= offset && hits.length < limit) hits.push(r)
      count++
    }
    const ds = states[i]!
    const known = fieldMap(ds)
    const anchors = hits.map((r) => result.anchors[r]!)
    // Positions are the records' indexes when the refs share a timeline; else from the anchors.
    const positions = result.positions
      ? new Map(hits.map((r) => [result.anchors[r]!, r]))
      : await positionsOf(ds, anchors, signal)
    const shown = [...known].filter(([n, f]) => f.family !== 'embedding' && n !== field).map(([n]) => n)
    const rows = await readPositions(ds, [...positions.values()], shown, signal, objects)
    keepImages(ds, rows)
    const byAnchor = new Map(rows.map((row) => [row.anchor, row]))
    const text = (c: number) => (c < 0 ? null : result.dictionary[c]!)
    return {
      json: {
        format: 'dreamdb.ui.disagreements/1',
        field,
        label: result.label,
        refs: pair,
        total: count,
        offset,
        records: hits.map((r) => {
          const anchor = result.anchors[r]!
          const row = byAnchor.get(anchor)
          return {
            anchor: anchor.toString(),
            position: row?.position ?? null,
            a: text(a[r]!),
            b: text(b[r]!),
            label: result.labels ? text(result.labels[i]![r]!) : null,
            values: row ? jsonRow(ds, known, row).values : {},
          }
        }),
        manifest: ds.currentManifest(),
      },
    }
  })

  // What trained this tag: the state, its history and counts per split (one column read).
  handlers.set('inspect', async (q, signal) => {
    const source = refParam(q)
    const inspection = await inspectState(repo, source, { signal })
    const history = await log(repo, source, { signal, limit: intParam(q, 'history', 50, 1, 5000) })
    const ds = await open(sourceOf(inspection.manifest), signal)
    let splits: Record<string, number> | null = null
    const splitField = ds.manifest.schema.fields.find((f) => f.name === 'split')
    if (q.get('splits') !== '0' && splitField?.family === 'scalar') {
      const counts = new Map<string, number>()
      for await (const batch of ds.iterArrowBatches({ fields: ['split'], batchSize: 65_536, signal })) {
        const column = batch.getChild('split')!
        for (let r = 0; r < batch.numRows; r++) {
          const k = String(column.get(r))
          counts.set(k, (counts.get(k) ?? 0) + 1)
        }
      }
      splits = Object.fromEntries([...counts].sort((x, y) => y[1] - x[1]))
    }
    const { objects, buckets, ...rest } = inspection
    return {
      json: {
        format: 'dreamdb.ui.inspect/1',
        ...rest,
        objects: { count: objects.length, bytes: objects.reduce((n, o) => n + (o.bytes ?? 0), 0) },
        buckets: buckets.length,
        splits,
        history: history.map((e) => ({ ...e, summary: describeChange(e.change) })),
      },
    }
  })

  handlers.set('diff', async (q, signal) => {
    const a = refParam(q, 'a')
    const b = refParam(q, 'b')
    const d = await manifestDiff(repo, a, b, { signal })
    // When b is a's history plus appends, the records added are b's positions past a's end.
    const history = await log(repo, b, { signal, limit: 5000 })
    const from = history.find((e) => e.manifest === d.from)
    let appended: object | null = null
    if (from !== undefined && d.records.removed === 0 && d.records.added > 0) {
      // The records added, by anchor: runs of the buckets' anchor ranges (metadata only).
      const ds = await open(sourceOf(d.to), signal)
      const end = from.records + d.records.added
      const anchors = await anchorRuns(ds, from.records, end, signal)
      appended = { ref: q.get('b'), offset: from.records, count: d.records.added, anchors }
    }
    // Values per layer added or changed, from the two manifests.
    const [ma, mb] = await Promise.all([
      repo.loadManifest(CID.parse(d.from), { signal }),
      repo.loadManifest(CID.parse(d.to), { signal }),
    ])
    const layerValues = Object.fromEntries(
      [...d.layers.added, ...d.layers.changed].map((name) => [
        name,
        {
          from: ma.layers.find((l) => l.name === name)?.records ?? 0,
          to: mb.layers.find((l) => l.name === name)?.records ?? 0,
        },
      ]),
    )
    return {
      json: {
        format: 'dreamdb.ui.diff/1',
        a: q.get('a'),
        b: q.get('b'),
        ...d,
        same: isEmptyDiff(d),
        appended,
        layerValues,
      },
    }
  })

  // The nearest records to one record, through the dataset's search (its IVF index if any).
  handlers.set('similar', async (q, signal) => {
    const ds = await open(refParam(q), signal)
    const known = fieldMap(ds)
    const embedding = [...known.values()].find((f) => f.family === 'embedding')
    const name = q.get('field') || embedding?.name
    const field = name === undefined ? undefined : known.get(name)
    if (name === undefined || field?.family !== 'embedding')
      throw new FieldKindError(
        `${name === undefined ? 'this state has no embedding field' : `'${name}' is not an embedding field`}`,
      )
    const position = intParam(q, 'position', 0, 0, Number.MAX_SAFE_INTEGER)
    if (position >= ds.manifest.stats.records) throw new PositionError(`there is no record at ${position}`)
    const k = intParam(q, 'k', 12, 1, 200)
    const [query] = await readPositions(ds, [position], [name], signal, objects)
    const vector = plainValue(field, query!.values[name], 'count') as number[] | null
    if (vector === null) throw new PositionError(`record ${position} has no ${name}`)
    const hits = await ds.search(name, vector, { k, signal })
    const anchors = Array.from(hits.anchors)
    const positions = await positionsOf(ds, anchors, signal)
    const shown = [...known].filter(([, f]) => f.family !== 'embedding').map(([n]) => n)
    const rows = await readPositions(ds, [...positions.values()], shown, signal, objects)
    keepImages(ds, rows)
    const byAnchor = new Map(rows.map((r) => [r.anchor, r]))
    return {
      json: {
        format: 'dreamdb.ui.similar/1',
        ref: q.get('ref'),
        manifest: ds.currentManifest(),
        field: name,
        metric: field.metric,
        position,
        anchor: query!.anchor.toString(),
        hits: anchors.map((anchor, r) => {
          const row = byAnchor.get(anchor)
          return {
            rank: r + 1,
            distance: hits.distances[r],
            ...(row ? jsonRow(ds, known, row) : { position: null, anchor: anchor.toString(), values: {} }),
          }
        }),
      },
    }
  })

  return handlers
}
