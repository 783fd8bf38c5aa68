import { Dataset, UnknownFieldError } from '@dreamdb/dataset'
import type { Field, Manifest } from '@dreamdb/manifest'
import { type Context, sourceOf, withRepository } from '../context.js'
import { table } from '../render/text.js'
import { batchRows, displayValue } from '../render/values.js'

/** Base fields and layers by name. */
export function fieldsOf(manifest: Manifest): Map<string, Field> {
  return new Map([
    ...manifest.schema.fields.map((f) => [f.name, f] as const),
    ...manifest.layers.map((l) => [l.name, l.field] as const),
  ])
}

/** The fields asked for, checked before anything is read; all of them when none are named. */
export function pickFields(known: Map<string, Field>, asked: string[] | undefined): string[] {
  for (const name of asked ?? []) if (!known.has(name)) throw new UnknownFieldError(name, [...known.keys()])
  return asked ?? [...known.keys()]
}

/** The dataset at a ref (a branch, a snapshot) or a manifest CID. */
export async function openSource(
  ref: string,
  backend: Parameters<typeof Dataset.openRef>[1],
): Promise<Dataset> {
  const source = sourceOf(ref)
  return typeof source === 'string'
    ? await Dataset.openRef(source, backend)
    : await Dataset.openAt(source, backend)
}

export interface HeadOptions {
  n: number
  fields?: string[]
}

export async function head(ctx: Context, ref: string, options: HeadOptions): Promise<void> {
  await withRepository(ctx, async (_repo, store) => {
    const ds = await openSource(ref, { backend: store, signal: ctx.signal })
    const known = fieldsOf(ds.manifest)
    const fields = pickFields(known, options.fields)
    const rows: Record<string, unknown>[] = []
    if (ds.manifest.stats.records > 0) {
      // One small window, nothing fetched ahead: only the first records' objects are read.
      const stream = ds.iterArrowBatches({
        fields,
        batchSize: options.n,
        shuffleWindow: options.n,
        prefetch: 0,
        signal: ctx.signal,
      })
      for await (const batch of stream) {
        rows.push(...batchRows(batch, known, 'count', options.n - rows.length))
        if (rows.length >= options.n) break
      }
    }
    if (ctx.json) {
      return await ctx.outJson('head', { ref, manifest: ds.currentManifest(), fields, records: rows })
    }
    if (rows.length === 0) return await ctx.out(`${ref} has no records`)
    // Display from the plain values: binary shows as a byte count, vectors abbreviated.
    const display = (name: string, value: unknown): string => {
      const field = known.get(name)
      if (value !== null && typeof value === 'object' && 'bytes' in value) return `<${value.bytes} bytes>`
      return name === '_anchor' ? String(value) : displayValue(field, value)
    }
    const columns = ['_anchor', ...fields]
    const lines = table([columns, ...rows.map((row) => columns.map((c) => display(c, row[c])))], {
      header: (t) => ctx.paint('bold', t),
    })
    for (const line of lines) await ctx.out(line)
  })
}
