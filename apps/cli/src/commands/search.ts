import type { Dataset, SearchOptions } from '@dreamdb/dataset'
import type { Field } from '@dreamdb/manifest'
import { type Context, withRepository } from '../context.js'
import { AnchorNotFoundError, FieldKindError, UsageError } from '../errors.js'
import { table } from '../render/text.js'
import { displayValue, plainValue } from '../render/values.js'
import { fieldsOf, openSource, pickFields } from './head.js'

export interface SearchCommandOptions {
  field: string
  queryJson?: string
  likeAnchor?: string
  k: number
  nprobe?: number
  rerank?: boolean
  filter?: string[]
  /** Scalar fields and layers to print beside each hit (default: every scalar one). */
  fields?: string[]
}

export interface SearchHit {
  rank: number
  anchor: bigint
  distance: number
  values: Record<string, unknown>
}

export interface SearchResult {
  ref: string
  manifest: string
  field: string
  metric: string
  algorithm: string | null
  query: { anchor: bigint | null; vector: number[] }
  k: number
  nprobe: number | null
  rerank: boolean | null
  filter: Record<string, unknown> | null
  hits: SearchHit[]
}

function parseQuery(text: string): number[] {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw new UsageError(
      `--query-json is not JSON: ${(error as Error).message}`,
      "a vector is '[0.1, -0.3, ...]'",
    )
  }
  if (
    !Array.isArray(value) ||
    value.length === 0 ||
    !value.every((x) => typeof x === 'number' && Number.isFinite(x))
  ) {
    throw new UsageError(
      '--query-json must be a non-empty array of finite numbers',
      "a vector is '[0.1, -0.3, ...]'",
    )
  }
  return value as number[]
}

function parseAnchor(text: string): bigint {
  if (!/^\d+$/.test(text.trim()))
    throw new UsageError(`--like-anchor must be a record's anchor (an integer), not '${text}'`)
  return BigInt(text.trim())
}

/** `label=cat,split=train` with each value typed by its field's kind. */
export function parseFilter(
  items: string[],
  known: Map<string, Field>,
): Record<string, string | number | boolean | bigint> {
  const filter: Record<string, string | number | boolean | bigint> = {}
  for (const item of items) {
    const at = item.indexOf('=')
    if (at <= 0)
      throw new UsageError(`--filter '${item}' is not field=value`, 'e.g. --filter label=cat,split=train')
    const name = item.slice(0, at)
    const raw = item.slice(at + 1)
    const field = known.get(name)
    if (field === undefined || field.family !== 'scalar') {
      throw new UsageError(
        `--filter names '${name}', which is not a scalar field`,
        `filters compare scalar fields: ${[...known.values()]
          .filter((f) => f.family === 'scalar')
          .map((f) => f.name)
          .join(', ')}`,
      )
    }
    const bad = (what: string) =>
      new UsageError(`--filter ${name}=${raw}: ${name} is ${field.kind}, so the value must be ${what}`)
    switch (field.kind) {
      case 'int':
        if (!/^-?\d+$/.test(raw)) throw bad('an integer')
        filter[name] = BigInt(raw)
        break
      case 'float':
      case 'timestamp': {
        const n = Number(raw)
        if (raw.trim() === '' || !Number.isFinite(n)) throw bad('a number')
        filter[name] = n
        break
      }
      case 'bool':
        if (raw !== 'true' && raw !== 'false') throw bad('true or false')
        filter[name] = raw === 'true'
        break
      default:
        filter[name] = raw
    }
  }
  return filter
}

/** The vector of one record, by anchor (reads that field's objects until it is found). */
async function vectorOf(ds: Dataset, field: string, anchor: bigint, signal: AbortSignal): Promise<number[]> {
  for await (const batch of ds.iterArrowBatches({ fields: [field], batchSize: 4096, signal })) {
    const anchors = batch.getChild('_anchor')!.toArray() as BigUint64Array
    const at = anchors.indexOf(anchor)
    if (at >= 0) return Array.from((batch.getChild(field)!.get(at) as { toArray(): Float32Array }).toArray())
  }
  throw new AnchorNotFoundError(
    `No record with anchor ${anchor} in this state`,
    'dreamdb head --ref-name <ref> shows some anchors; search output lists them too',
  )
}

/** Values of `fields` for the given anchors (one pass over those columns). */
async function valuesOf(
  ds: Dataset,
  fields: string[],
  known: Map<string, Field>,
  anchors: bigint[],
  signal: AbortSignal,
): Promise<Map<bigint, Record<string, unknown>>> {
  const wanted = new Set(anchors)
  const found = new Map<bigint, Record<string, unknown>>()
  if (fields.length === 0 || wanted.size === 0) return found
  for await (const batch of ds.iterArrowBatches({ fields, batchSize: 8192, signal })) {
    const column = batch.getChild('_anchor')!.toArray() as BigUint64Array
    for (let r = 0; r < batch.numRows; r++) {
      if (!wanted.has(column[r]!)) continue
      const values: Record<string, unknown> = {}
      for (const name of fields)
        values[name] = plainValue(known.get(name), batch.getChild(name)!.get(r), 'count')
      found.set(column[r]!, values)
    }
    if (found.size === wanted.size) break
  }
  return found
}

/** A cell: binary values arrive as `{bytes: N}` (plainValue's count form). */
function cell(field: Field | undefined, value: unknown): string {
  if (value !== null && typeof value === 'object' && 'bytes' in value) return `<${value.bytes} bytes>`
  return displayValue(field, value)
}

export async function search(ctx: Context, ref: string, options: SearchCommandOptions): Promise<void> {
  if ((options.queryJson === undefined) === (options.likeAnchor === undefined)) {
    throw new UsageError(
      options.queryJson === undefined
        ? 'search needs a query: --query-json or --like-anchor'
        : '--query-json and --like-anchor contradict each other',
      "give a vector (--query-json '[0.1, ...]') or a record whose vector to use (--like-anchor 42)",
    )
  }
  const query = options.queryJson !== undefined ? parseQuery(options.queryJson) : undefined
  const likeAnchor = options.likeAnchor !== undefined ? parseAnchor(options.likeAnchor) : undefined
  await withRepository(ctx, async (_repo, store) => {
    const ds = await openSource(ref, { backend: store, signal: ctx.signal })
    const known = fieldsOf(ds.manifest)
    const field = ds.manifest.schema.fields.find((f) => f.name === options.field)
    pickFields(known, [options.field])
    const family = known.get(options.field)?.family
    if (family !== 'embedding') {
      const embeddings = [...known.values()].filter((f) => f.family === 'embedding').map((f) => f.name)
      throw new FieldKindError(
        `search --field '${options.field}' is a ${family} field; search compares embedding vectors`,
        embeddings.length > 0
          ? `the embedding fields of ${ref}: ${embeddings.join(', ')}`
          : `${ref} has no embedding field`,
      )
    }
    const filter = options.filter !== undefined ? parseFilter(options.filter, known) : undefined
    const shown = pickFields(
      known,
      options.fields ?? [...known.values()].filter((f) => f.family === 'scalar').map((f) => f.name),
    )
    const vector = query ?? (await vectorOf(ds, options.field, likeAnchor!, ctx.signal))
    const searchOptions: SearchOptions = { k: options.k, signal: ctx.signal }
    if (options.nprobe !== undefined) searchOptions.nprobe = options.nprobe
    if (options.rerank !== undefined) searchOptions.rerank = options.rerank
    if (filter !== undefined) searchOptions.filter = filter
    const hits = await ds.search(options.field, vector, searchOptions)
    const anchors = Array.from(hits.anchors)
    const values = await valuesOf(ds, shown, known, anchors, ctx.signal)
    const result: SearchResult = {
      ref,
      manifest: ds.currentManifest(),
      field: options.field,
      metric: field?.family === 'embedding' ? field.metric : 'cosine',
      algorithm: field?.family === 'embedding' ? field.algorithm : null,
      query: { anchor: likeAnchor ?? null, vector },
      k: options.k,
      nprobe: options.nprobe ?? null,
      rerank: options.rerank ?? null,
      filter: filter ?? null,
      hits: anchors.map((anchor, i) => ({
        rank: i + 1,
        anchor,
        distance: hits.distances[i]!,
        values: values.get(anchor) ?? {},
      })),
    }
    if (ctx.json) return await ctx.outJson('search', result)
    if (result.hits.length === 0) {
      return await ctx.out(`no records${filter ? ' match the filter' : ''} in ${ref}`)
    }
    const lines = table(
      [
        ['RANK', 'ANCHOR', 'DISTANCE', ...shown],
        ...result.hits.map((h) => [
          String(h.rank),
          String(h.anchor),
          (Math.abs(h.distance) < 5e-5 ? 0 : h.distance).toFixed(4),
          ...shown.map((name) => cell(known.get(name), h.values[name] ?? null)),
        ]),
      ],
      { right: [0, 1, 2], header: (t) => ctx.paint('bold', t) },
    )
    for (const line of lines) await ctx.out(line)
  })
}
