import { anchorColumn, arrowTypeOf } from '@dreamdb/arrow'
import { openStore, type Store } from '@dreamdb/cas'
import type { Field } from '@dreamdb/manifest'
import { Table as ArrowTable, type Vector, vectorFromArray } from 'apache-arrow'
import { loadCodecs } from './codecs.js'
import { Dataset } from './dataset.js'
import { InvalidOptionError, UnknownFieldError } from './errors.js'
import { loadLayer } from './iterate.js'

export interface CompareOptions {
  refs: string[]
  fields: string[]
  backend: string | Store
  signal?: AbortSignal
}

/** Values of one field of one ref, by anchor. */
async function valuesByAnchor(
  ds: Dataset,
  name: string,
  signal?: AbortSignal,
): Promise<{ field: Field; values: Map<bigint, unknown> }> {
  const layer = ds.manifest.layers.find((l) => l.name === name)
  if (layer !== undefined) {
    const codecs = await loadCodecs(ds.store, [layer.field], new Map(), signal ? { signal } : {})
    return { field: layer.field, values: await loadLayer(ds.repository, layer, signal, codecs) }
  }
  const field = ds.manifest.schema.fields.find((f) => f.name === name)
  if (field === undefined) {
    throw new UnknownFieldError(name, [
      ...ds.manifest.schema.fields.map((f) => f.name),
      ...ds.manifest.layers.map((l) => l.name),
    ])
  }
  const values = new Map<bigint, unknown>()
  for await (const batch of ds.iterArrowBatches({
    fields: [name],
    batchSize: 4096,
    ...(signal ? { signal } : {}),
  })) {
    const anchors = batch.getChild('_anchor')!
    const column = batch.getChild(name)!
    for (let i = 0; i < batch.numRows; i++) values.set(anchors.get(i) as bigint, column.get(i))
  }
  return { field, values }
}

/**
 * Join fields of many refs by anchor into one wide table: `_anchor`, then `field@ref` for
 * each field and ref, one row per anchor any ref has a value for (null where it has none),
 * in anchor order. The seed's `compare_refs`.
 */
export async function compareRefs(options: CompareOptions): Promise<ArrowTable> {
  const { refs, fields, backend, signal } = options
  if (!Array.isArray(refs) || refs.length === 0)
    throw new InvalidOptionError('refs', refs, 'name at least one ref')
  if (!Array.isArray(fields) || fields.length === 0)
    throw new InvalidOptionError('fields', fields, 'name at least one field')
  const columns: { name: string; field: Field; values: Map<bigint, unknown> }[] = []
  // One store for every ref: a URL opened once, not once per ref.
  const store = typeof backend === 'string' ? await openStore(backend, signal ? { signal } : {}) : backend
  for (const ref of refs) {
    const ds = await Dataset.openRef(ref, { backend: store, ...(signal ? { signal } : {}) })
    for (const name of fields)
      columns.push({ name: `${name}@${ref}`, ...(await valuesByAnchor(ds, name, signal)) })
  }
  const all = new Set<bigint>()
  for (const c of columns) for (const anchor of c.values.keys()) all.add(anchor)
  const anchors = BigUint64Array.from([...all].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)))
  const out: Record<string, Vector> = { _anchor: anchorColumn(anchors) }
  for (const c of columns) {
    const picked = Array.from(anchors, (a) => c.values.get(a) ?? null)
    out[c.name] = vectorFromArray(
      c.field.family === 'embedding'
        ? picked.map((v) => (v === null ? null : [...(v as Iterable<number>)]))
        : picked,
      arrowTypeOf(c.field),
    )
  }
  return new ArrowTable(out)
}

export interface AgreementMatrix {
  field: string
  refs: string[]
  /** `agreement[i][j]`: share of anchors where refs i and j both have a value and it is equal. */
  agreement: number[][]
  /** `overlap[i][j]`: anchors where both have a value. */
  overlap: number[][]
  /** Values per ref. */
  counts: number[]
}

/** The pairwise agreement of one field across refs, from a `compareRefs` table. */
export function agreementMatrix(table: ArrowTable, field: string, refs: string[]): AgreementMatrix {
  const columns = refs.map((ref) => {
    const column = table.getChild(`${field}@${ref}`)
    if (column === null)
      throw new UnknownFieldError(
        `${field}@${ref}`,
        table.schema.fields.map((f) => f.name),
      )
    return Array.from({ length: column.length }, (_, i) => {
      const v = column.get(i)
      return v === null || v === undefined
        ? null
        : typeof v === 'object'
          ? JSON.stringify([...(v as Iterable<number>)])
          : v
    })
  })
  const n = refs.length
  const agreement = Array.from({ length: n }, () => new Array<number>(n).fill(0))
  const overlap = Array.from({ length: n }, () => new Array<number>(n).fill(0))
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      let both = 0
      let same = 0
      const a = columns[i]!
      const b = columns[j]!
      for (let r = 0; r < a.length; r++) {
        if (a[r] === null || b[r] === null) continue
        both++
        if (a[r] === b[r]) same++
      }
      overlap[i]![j] = overlap[j]![i] = both
      agreement[i]![j] = agreement[j]![i] = both === 0 ? 0 : same / both
    }
  }
  return { field, refs, agreement, overlap, counts: columns.map((c) => c.filter((v) => v !== null).length) }
}
